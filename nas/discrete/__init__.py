"""The discrete search with Optuna over the layout space of `search_spaces/layout_space.py`: its config
(`config.py`), samplers, pruners and grid order (`samplers.py`), study storage (`storage.py`), the worker
loop (`worker.py`) and what it records per trial (`records.py`), one worker run to the end
(`search.py`), the results table (`results.py`) and the optuna-dashboard launcher (`dashboard.py`)."""
