"""Ray Tune orchestration: trials of the discrete or the Gumbel search scheduled on a Ray cluster."""
