"""The Gumbel supernet search over the gate space of `search_spaces/gate_space.py`: the supernet model
(`model.py`), the gate math (`gates.py`: Gumbel sampling, temperatures, the budget term), the search
loop (`search.py`) with its config (`config.py`), per-epoch diagnostics (`diagnostics.py`), the
derivation of the policy (`derive.py`, fine-tuned scoring in `finetune.py`) and the run directory
(`rundir.py`)."""
