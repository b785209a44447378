"""`run_search`: one worker of an Optuna study (see `nas.discrete.worker`) run to the end, and the
results table it leaves."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

from trainer.loop import train
from trainer.typed_config import ConfigError

from nas.discrete.config import OptunaSearchConfig
from nas.discrete.results import ResultsTable, write_results
from nas.discrete.storage import default_storage_url, open_storage
from nas.discrete.worker import StudyWorker, log
from nas.objective import TrainFn


@dataclass
class OptunaSearchResult:
    study_name: str
    storage: str
    out_dir: Path
    table: ResultsTable
    states: dict[str, int]
    seconds: float


def run_search(
    cfg: OptunaSearchConfig,
    storage: str | None = None,
    study_name: str | None = None,
    n_trials: int | None = None,
    train_fn: TrainFn = train,
) -> OptunaSearchResult:
    """Run one worker of the study until it holds `n_trials` finished trials; returns the results.

    `storage`, `study_name` and `n_trials` override the config. `train_fn` is the trainer's `train`
    (replaceable to inject faults in tests).
    """
    cfg = copy.copy(cfg)
    if study_name is not None:
        cfg.study_name = study_name
    if n_trials is not None:
        if n_trials < len(cfg.baselines):
            raise ConfigError(f"--n-trials {n_trials} is fewer than the {len(cfg.baselines)} baselines it includes; raise it")
        cfg.n_trials = n_trials
    url = storage or cfg.storage or default_storage_url(cfg.run_root)
    hb = cfg.heartbeat
    handle = open_storage(url, hb.interval, hb.grace_period, hb.max_retry)
    start = time.perf_counter()
    worker = StudyWorker(cfg, handle, train_fn)
    log(f"study {cfg.study_name!r} in {handle.display_url}: {cfg.n_trials} trials, sampler {cfg.sampler_kind}, "
         f"pruner {cfg.pruner_kind}, runs in {worker.root}")
    worker.run()
    with worker.lock:
        table = write_results(worker.study, worker.metric, worker.root)
    states: dict[str, int] = {}
    for t in worker.study.get_trials(deepcopy=False):
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return OptunaSearchResult(cfg.study_name, handle.display_url, worker.root, table, states, time.perf_counter() - start)
