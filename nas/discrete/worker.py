"""The Optuna search over fixed sharing layouts: one worker of a (possibly parallel) study.

Each worker loops: under the study lock (`nas.discrete.storage`), fail trials whose heartbeat stopped (they
are queued again), enqueue the missing baselines, and start a trial if the study holds fewer than
`n_trials` (or has a queued one); the trial then trains without the lock. When the budget is used
up, the worker waits for trials still running elsewhere, so a trial of a dead worker is retried
before the study is declared done. Re-running with the same study name resumes.

What counts towards `n_trials`: every trial except those that FAILed without a recorded reason
(killed workers, whose retry takes their place, and interrupted runs). A trial that raises (NaN,
out of memory, ...) is FAIL with `fail_reason`, counts, and the search goes on; only an
`objective.metric` missing from the evaluation metrics stops it, since every trial would fail alike.
Baseline trials have one parameter, `baseline` (the preset name).

Per trial: `out_dir/trial_XXXX/` holds `policy.json`, the training run and `arch.json`; the trial's
user attributes hold `policy`, `policy_name`, `params` (counts), `params_total`, `metrics`,
`run_dir`, `seconds`, `baseline` (baselines only), `duplicate_of` (a policy already trained by a
completed trial reuses its result) or `fail_reason`; `arch.json` is also an Optuna artifact.
"""
from __future__ import annotations

import datetime
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import FrozenTrial, TrialState

from search_spaces import ARCH_FILE, POLICY_FILE, LayoutSpace, ParamCount, SharingPolicy, get_preset, get_size
from trainer import atomic
from trainer.config import TrainConfig
from trainer.distributed import pick_device
from trainer.typed_config import ConfigError

from nas.discrete.config import OptunaSearchConfig
from nas.discrete.results import write_results
from nas.discrete.samplers import build_pruner, build_sampler, grid_order
from nas.discrete.storage import StorageHandle, StudyLock
from nas.discrete.records import (
    ARTIFACT_DIR, arch_record, baseline_params, counts_toward_budget, describe_trial, diff_keys,
    exception_reason, fingerprint, reference_point,
)
from nas.pareto.objectives import measure_costs
from nas.pareto.study import REFERENCE_ATTR
from nas.objective import MetricNotFound, TrainFn, TrialObjective


def log(message: str) -> None:
    print(f"[search] {message}", file=sys.stderr, flush=True)


class StudyWorker:
    """One worker of a study: opens (or checks) the study, enqueues the baselines and claims trials."""

    def __init__(self, cfg: OptunaSearchConfig, handle: StorageHandle, train_fn: TrainFn) -> None:
        self.cfg, self.handle = cfg, handle
        self.objective = TrialObjective(cfg.train_template, cfg.objective.metric, train_fn)
        self.root = cfg.run_root.resolve()
        self.size = cfg.train_template.model.size
        self.space = LayoutSpace(cfg.space, self.size)
        for name in cfg.baselines:
            get_preset(name, self.size).check_size(get_size(self.size))
        self.lock: StudyLock = handle.lock(cfg.study_name)
        self.metric = cfg.objective.metric
        self.multi = cfg.objective.kind == "multi"
        self.fatal: MetricNotFound | None = None
        self.grid: list[dict[str, Any]] | None = None
        self.grid_done = False
        if cfg.sampler_kind == "grid":
            self.grid = grid_order(self.space, cfg.sampler.seed, cfg.sampler.grid_limit)
        self.artifacts = FileSystemArtifactStore(str(self._mkdir(self.root / ARTIFACT_DIR)))
        self.study = self._open_study()

    @staticmethod
    def _mkdir(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        return path

    # study setup (under the lock) ------------------------------------------------------------------

    def _open_study(self) -> optuna.Study:
        cfg = self.cfg
        directions = cfg.objective.directions
        with self.lock:
            exists = cfg.study_name in optuna.get_all_study_names(storage=self.handle.storage)
            if not exists and any(self.root.glob("trial_*")):
                raise ConfigError(
                    f"out_dir {self.root} holds trial directories of another study but study {cfg.study_name!r} is new "
                    f"in {self.handle.display_url}; remove them or choose another out_dir / --study"
                )
            study = optuna.create_study(
                storage=self.handle.storage, study_name=cfg.study_name, directions=directions,
                pruner=build_pruner(cfg), load_if_exists=True,
            )
            mine = fingerprint(cfg)
            if not exists:
                study.set_user_attr("sharenas_config", mine)
                study.set_user_attr("artifact_dir", str(self.root / ARTIFACT_DIR))
                study.set_user_attr("out_dir", str(self.root))
                if self.multi:
                    study.set_user_attr(REFERENCE_ATTR, reference_point(cfg))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    study.set_metric_names(cfg.objective.names)
            else:
                theirs = study.user_attrs.get("sharenas_config")
                if theirs is None:
                    raise ConfigError(f"study {cfg.study_name!r} in {self.handle.display_url} was not created by sharenas; choose another --study")
                changed = diff_keys(theirs, mine)
                if changed:
                    raise ConfigError(
                        f"study {cfg.study_name!r} was created with different settings ({', '.join(changed[:5])}); "
                        "resume it with its own config or start a new study with --study NAME"
                    )
            # A distinct sampler seed per worker start: parallel workers do not propose the same points.
            worker = int(study.user_attrs.get("sharenas_workers", 0))
            study.set_user_attr("sharenas_workers", worker + 1)
            self._enqueue_baselines(study)
        study.sampler = build_sampler(cfg, cfg.sampler.seed + 1000 * worker)
        return study

    def _enqueue_baselines(self, study: optuna.Study) -> None:
        present = {t.user_attrs.get("baseline") for t in study.get_trials(deepcopy=False) if counts_toward_budget(t)}
        for name in self.cfg.baselines:
            if name not in present:
                study.enqueue_trial(baseline_params(self.space, name), user_attrs={"baseline": name})
                log(f"enqueued baseline {name}")

    # the claim loop ------------------------------------------------------------------------------

    def run(self) -> None:
        poll = self.cfg.heartbeat.interval
        while True:
            self.lock.acquire()
            try:
                if self.handle.heartbeat:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                        optuna.storages.fail_stale_trials(self.study)
                self._enqueue_baselines(self.study)
                trials = self.study.get_trials(deepcopy=False)
                waiting = any(t.state == TrialState.WAITING for t in trials)
                claimed = sum(counts_toward_budget(t) for t in trials)
                if not waiting and claimed < self.cfg.n_trials and self.grid is not None:
                    waiting = self._enqueue_grid_point(trials)
                if waiting or (claimed < self.cfg.n_trials and self.grid is None):
                    # The objective releases the lock once the trial is claimed.
                    self.study.optimize(self._objective, n_trials=1, catch=(Exception,), callbacks=[self._after_trial], gc_after_trial=True)
                    if self.fatal is not None:
                        raise self.fatal
                    continue
                running = any(t.state == TrialState.RUNNING for t in trials)
            finally:
                if self.lock.held:
                    self.lock.release()
            if not (running and self.handle.heartbeat):
                return
            time.sleep(poll)

    def _enqueue_grid_point(self, trials: list[FrozenTrial]) -> bool:
        assert self.grid is not None
        # A trial popped from the queue has its parameters in `fixed_params` until it suggests them.
        seen = {json.dumps(t.params or t.system_attrs.get("fixed_params", {}), sort_keys=True) for t in trials if counts_toward_budget(t)}
        for params in self.grid:
            if json.dumps(params, sort_keys=True) not in seen:
                self.study.enqueue_trial(params)
                return True
        if not self.grid_done:
            log(f"the grid's {len(self.grid)} configurations have all been claimed")
            self.grid_done = True
        return False

    def _after_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        with self.lock:
            write_results(study, self.metric, self.root)

    # one trial -----------------------------------------------------------------------------------

    def _objective(self, trial: optuna.Trial) -> float | tuple[float, float]:
        if self.lock.held:
            self.lock.release()
        start = time.perf_counter()
        try:
            return self._run_trial(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            trial.set_user_attr("fail_reason", exception_reason(exc))
            if isinstance(exc, MetricNotFound):
                self.fatal = exc
            import torch

            if isinstance(exc, torch.OutOfMemoryError) and torch.cuda.is_available():
                torch.cuda.empty_cache()
            raise
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 2))

    def describe(self, trial: optuna.Trial) -> tuple[SharingPolicy, ParamCount]:
        return describe_trial(self.cfg, self.space, trial)

    def _run_trial(self, trial: optuna.Trial) -> float | tuple[float, float]:
        policy, counts = self.describe(trial)
        key = trial.user_attrs["policy_key"]
        run_dir = self.root / f"trial_{trial.number:04d}"
        baseline = trial.user_attrs.get("baseline")
        log(f"trial {trial.number}: {policy.name}{f' (baseline {baseline})' if baseline else ''}, "
             f"{counts.total / 1e6:.3f}M parameters -> {run_dir}")
        duplicate = self._completed_with(key, trial.number)
        if duplicate is not None:
            return self._reuse(trial, duplicate, policy, counts, run_dir)
        if run_dir.exists():
            raise ConfigError(f"{run_dir} already exists; remove it or choose another out_dir")
        trial.set_user_attr("run_dir", str(run_dir))
        costs = self._costs(trial, policy)
        result, value = self.objective.run(policy, run_dir, self._reporter(trial))
        trial.set_user_attr("metrics", result.metrics)
        cfg = self.objective.config_for(run_dir / POLICY_FILE)
        self._write_arch(trial, run_dir, policy, cfg, counts, result.metrics, {"run_dir": str(run_dir), "step": result.step})
        return (value, *costs) if self.multi else value

    def _costs(self, trial: optuna.Trial, policy: SharingPolicy) -> list[float]:
        """The cost objectives, measured before training on a fresh model, in the study's order."""
        if not self.multi:
            return []
        o = self.cfg.objective
        device = pick_device(self.cfg.train_template.train.device)
        values, latency = measure_costs(policy, self.size, o.costs, o.latency, device)
        trial.set_user_attr("costs", values)
        if latency:
            trial.set_user_attr("latency", latency)
        return [values[name] for name in o.costs]

    def _reporter(self, trial: optuna.Trial) -> Callable[[int, float, dict[str, float]], None]:
        """Intermediate values feed the dashboard's learning curves and the pruner (Optuna takes them
        from single-objective studies only). With `train.steps` set, the last evaluation is never
        pruned: its training is done and its value is the result."""
        prune = self.cfg.pruner_kind != "none"
        last = self.cfg.train_template.train.steps

        def on_eval(step: int, value: float, metrics: dict[str, float]) -> None:
            trial.set_user_attr("metrics", metrics)
            if self.multi:
                return
            trial.report(value, step)
            if prune and step != last and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step}: {self.metric} = {value:.3f}")

        return on_eval

    def _completed_with(self, key: str, number: int) -> FrozenTrial | None:
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get("policy_key") == key and t.number != number:
                return t
        return None

    def _reuse(self, trial: optuna.Trial, done: FrozenTrial, policy: SharingPolicy, counts: ParamCount, run_dir: Path) -> float | tuple[float, float]:
        log(f"trial {trial.number}: same policy as trial {done.number}; reusing its result")
        metrics = done.user_attrs.get("metrics", {})
        trial.set_user_attr("duplicate_of", done.number)
        trial.set_user_attr("metrics", metrics)
        if "run_dir" in done.user_attrs:
            trial.set_user_attr("run_dir", done.user_attrs["run_dir"])
        for name in ("costs", "latency"):
            if name in done.user_attrs:
                trial.set_user_attr(name, done.user_attrs[name])
        run_dir.mkdir(parents=True, exist_ok=True)
        self._write_arch(trial, run_dir, policy, self.cfg.train_template, counts, metrics,
                         {"duplicate_of": done.number, "run_dir": done.user_attrs.get("run_dir")})
        return tuple(done.values) if self.multi else done.values[0]

    def _write_arch(self, trial: optuna.Trial, run_dir: Path, policy: SharingPolicy, cfg: TrainConfig, counts: ParamCount,
                    metrics: dict[str, float], extra: dict[str, Any]) -> None:
        provenance = {
            "search": "optuna", "study": self.cfg.study_name, "trial": trial.number,
            "baseline": trial.user_attrs.get("baseline"), "params": trial.params, "objective": self.metric,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **extra,
        }
        path = run_dir / ARCH_FILE
        atomic.write_with(path, arch_record(policy, cfg, counts, metrics, provenance).save)
        upload_artifact(artifact_store=self.artifacts, file_path=str(path), study_or_trial=trial, mimetype="application/json")
