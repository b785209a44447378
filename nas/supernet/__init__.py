"""The Gumbel supernet search: its space of gates (`space`), the supernet model (`model`), the gate
math (`gates`), the search loop (`search`) with its config (`config`), diagnostics and derivation."""
