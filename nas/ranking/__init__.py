"""How well a ranking of policies agrees with the ground truth (`nas/bench/`): the rank statistics
(`statistics.py`: Kendall tau, Spearman rho, top-k overlap with bootstrap intervals, which the bench's
noise ceiling uses too), the rank check of proxies (`rank_check.py`, its config `config.py`, its record `rank_record.py`, the
supernet proxy `supernet_proxy.py`, the picks within a budget `picks.py`, the markdown `render.py`),
how one bench ranks another's policies (`agreement.py`) and the training-length study across benches
(`lengths.py`)."""
