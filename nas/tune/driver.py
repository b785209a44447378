"""`sharenas tune`: search sharing policies with Ray Tune on a cluster (or this machine).

Optuna experiments: `OptunaSearch` on the same Optuna storage and study as `sharenas search optuna`
(so optuna-dashboard shows Ray-run trials beside the others), a define-by-run space that records each
trial's policy exactly as the Optuna driver does, the baselines enqueued first as baseline trials, an
ASHA scheduler over the trial's evaluations, and one function trainable around the shared trial
objective (`nas.tune.trainables`). A failed trial is retried from its last checkpoint
(`FailureConfig(max_failures)`); `--resume` continues an interrupted experiment from Tune's last
snapshot, reconciled with the study (`nas.tune.reconcile`): a trial the study has finished is not run
again. Trials that ASHA stops are COMPLETE in Optuna with their last value; they get `stopped_early`
and `evaluations` attributes and the results table lists them apart. Gumbel experiments run one
supernet search per grid point; a retried one continues from its saved state. Fault injection for
testing all this: `nas.tune.faults`.
"""
from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.config import TrainConfig
from trainer.typed_config import ConfigError, to_dict

from nas.tune.config import TuneConfig, load_tune_config
from nas.tune.faults import Faults
from nas.tune.trainables import gumbel_trial, json_metrics, optuna_trial

RAY_RESULTS = "ray_results.csv"


@dataclass
class TuneResult:
    experiment_path: str
    frame: Any
    """Ray's `ResultGrid.get_dataframe()`: one row per trial with its last result."""
    out_dir: Path | None = None
    storage: str | None = None
    study: str | None = None


def _progress_callback(storage_url: str, study_name: str, root: Path, evaluations: int) -> Any:
    """A Tune callback that records each Ray result on its Optuna trial (run directory, metrics, how
    many evaluations ran): Optuna refuses attributes once a trial has finished, and OptunaSearch
    finishes it right after the result that ends it, so the record is kept current per result. A
    trial whose last record says fewer than `evaluations` was stopped early by the scheduler."""
    from ray.tune import Callback

    class OptunaProgress(Callback):
        def __init__(self) -> None:
            self.url, self.study_name, self.root, self.evaluations = storage_url, study_name, str(root), evaluations
            self.storage: Any = None
            self.study_id: int | None = None

        def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks with the experiment
            return {**self.__dict__, "storage": None}

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            from nas.discrete.storage import open_storage

            number = trial.config.get("optuna_trial")
            if number is None:
                return
            if self.storage is None:
                self.storage = open_storage(self.url).storage
                self.study_id = self.storage.get_study_id_from_name(self.study_name)
            storage = self.storage
            trial_id = storage.get_trial_id_from_study_id_trial_number(self.study_id, int(number))
            if storage.get_trial(trial_id).state.is_finished():  # a trial settled before --resume replays its result
                return
            done = int(result.get("training_iteration", 0))
            attrs = {"run_dir": str(Path(self.root) / f"trial_{int(number):04d}"), "evaluations": f"{done}/{self.evaluations}",
                     "stopped_early": done < self.evaluations, "ray_trial": trial.trial_id, "metrics": json_metrics(result)}
            for key, value in attrs.items():
                storage.set_trial_user_attr(trial_id, key, value)

    return OptunaProgress()


class TrialSpace:
    """Ray's define-by-run space over the Optuna search's space. Picklable (Tune checkpoints its
    searcher): it keeps the config and rebuilds the space where it is called."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def __call__(self, trial: Any) -> dict[str, Any]:
        from nas.discrete.records import describe_trial
        from search_spaces import LayoutSpace

        describe_trial(self.cfg, LayoutSpace(self.cfg.space, self.cfg.train_template.model.size), trial)
        return {"optuna_trial": trial.number}


def _local_token(address: str | None) -> None:
    """A local Ray instance is a cluster too: give it a token, and keep it on 127.0.0.1 (Ray's local-only
    mode, as on macOS and Windows: with a loopback node address every Ray server binds loopback; on Linux
    it would take the interface address). Ray reads these variables when it is imported, so this runs
    before any Ray import."""
    if address is not None or "ray" in sys.modules:
        return
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if os.environ["RAY_AUTH_MODE"] == "token" and not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


LOCAL_START_ATTEMPTS = 3


def _init_ray(address: str | None) -> None:
    """Connect to `address`, or start a local Ray. Ray gives a local node a fixed 30 s to register
    with its GCS (not configurable); on an overloaded machine the first start can miss that, so a
    local start that times out is shut down and tried again."""
    import ray

    if address is not None:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
        return
    for attempt in range(1, LOCAL_START_ATTEMPTS + 1):
        try:
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
            return
        except Exception as exc:  # Ray raises a bare Exception for this
            if "timed out during startup" not in str(exc) or attempt == LOCAL_START_ATTEMPTS:
                raise
            print(f"tune: the local Ray node did not register within Ray's 30 s (attempt {attempt} of {LOCAL_START_ATTEMPTS}); starting it again",
                  file=sys.stderr)
            ray.shutdown()


def _storage_path(cfg: TuneConfig, address: str | None) -> str:
    path = cfg.storage_path
    if "://" in path:
        return path
    resolved = Path(path) if Path(path).is_absolute() else Path.cwd() / path
    if address not in (None, "auto", "local"):
        print(f"tune: the cluster at {address} writes trial results to storage_path {resolved} on its own nodes: it must be a "
              "filesystem every node shares (NFS) or an object store URI (s3://..., gs://...)", file=sys.stderr)
    return str(resolved)


def _evaluations(template: TrainConfig) -> int:
    """How many evaluations a trial that runs to the end reports (ASHA's max_t)."""
    from search_spaces import get_size
    from trainer.data import build_data
    from trainer.sampler import BatchPlan, total_steps

    t, e = template.train, template.eval
    size = get_size(template.model.size)
    bundle = build_data(template.data, size.image_size, size.context_length)
    spe = BatchPlan(len(bundle.train), t.batch_size, t.accum_steps, 1, t.seed).steps_per_epoch
    total = total_steps(t, spe)
    due = {total}
    for step in range(1, total + 1):
        if (e.every_steps is not None and step % e.every_steps == 0) or (e.every_epochs is not None and step % (e.every_epochs * spe) == 0):
            due.add(step)
    return len(due)


def _trial_scale(cfg: TuneConfig, path: str) -> dict[str, Any]:
    """How a trial runs: its resources, and for a trial on Ray Train workers how often they are started
    again after a failure and where the Train runs keep their state (beside the experiment)."""
    return {"resources": cfg.resources, "max_failures": cfg.max_failures, "train_storage": f"{path}-train"}


def _tuner(cfg: TuneConfig, trainable: Any, path: str, resume: bool, tune_config: Any, param_space: dict[str, Any] | None = None,
           callbacks: list[Any] | None = None) -> Any:
    from ray import tune

    if resume:
        if not tune.Tuner.can_restore(path):
            raise ConfigError(f"--resume: no Ray Tune experiment at {path}; run without --resume to start it")
        # Errored trials stay errored: their Optuna trials are FAIL, finished like any other.
        return tune.Tuner.restore(path, trainable=trainable)
    if Path(path).exists() and "://" not in path:
        raise ConfigError(f"{path} already holds an experiment: pass --resume to continue it, or change `experiment`")
    run_config = tune.RunConfig(
        name=Path(path).name, storage_path=str(Path(path).parent), failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2), verbose=1, callbacks=callbacks,
    )
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


def run_optuna_experiment(cfg: TuneConfig, search_path: Path, address: str | None, resume: bool) -> TuneResult:
    from nas.discrete.config import load_search_config

    search = load_search_config(search_path, cfg.sets())  # a config error stops here, before Ray is imported

    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter

    from nas.discrete.samplers import build_sampler
    from nas.discrete.worker import StudyWorker
    from nas.discrete.results import write_results
    from nas.discrete.storage import default_storage_url, open_storage
    from nas.tune.reconcile import ReconciledOptunaSearch, experiment_id, settled_trials

    url = search.storage or default_storage_url(search.run_root)
    handle = open_storage(url)
    worker = StudyWorker(search, handle, train_fn=lambda *a, **k: None)  # opens/checks the study and enqueues the baselines
    study = worker.study
    o = search.objective
    theirs = [d.name.lower() for d in study.directions]
    if theirs != o.directions:
        raise ConfigError(f"study {search.study_name!r} optimizes {', '.join(theirs)} but the config says {', '.join(o.directions)}; use another --study")
    modes = ["min" if d == "minimize" else "max" for d in o.directions]
    mode = modes[0]
    # A multi-objective study takes the loss and every cost from each result; ASHA (below) stops on the loss alone.
    metrics: str | list[str] = ["objective", *(f"cost/{name}" for name in o.costs)] if o.kind == "multi" else "objective"
    searcher = ReconciledOptunaSearch(
        space=TrialSpace(search), metric=metrics, mode=modes if o.kind == "multi" else mode, sampler=build_sampler(search, search.sampler.seed),
        study_name=search.study_name,
        storage=handle.storage, experiment=experiment_id(cfg.experiment), num_samples=cfg.num_samples, max_retry=search.heartbeat.max_retry,
    )
    evaluations = _evaluations(search.train_template)
    s = cfg.scheduler
    scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=evaluations, grace_period=min(s.grace_period, evaluations),
                               reduction_factor=s.reduction_factor) if s.kind == "asha" else FIFOScheduler())
    root = search.run_root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    path = str(Path(_storage_path(cfg, address)) / cfg.experiment)
    trainable = tune.with_resources(
        tune.with_parameters(optuna_trial, template=to_dict(search.train_template), space=search.space, metric=search.objective.metric,
                             root=str(root), faults=Faults.from_env(root), settled=settled_trials(study) if resume else {},
                             objective=o, **_trial_scale(cfg, path)),
        {"cpu": cfg.resources.cpu, "gpu": cfg.resources.gpu},
    )
    _init_ray(address)
    tune_config = tune.TuneConfig(metric="objective", mode=mode, search_alg=ConcurrencyLimiter(searcher, cfg.max_concurrent),
                                  scheduler=scheduler, num_samples=cfg.num_samples)
    callbacks = [_progress_callback(url, search.study_name, root, evaluations)]
    results = _tuner(cfg, trainable, path, resume, tune_config, callbacks=callbacks).fit()
    frame = results.get_dataframe()
    frame.to_csv(root / RAY_RESULTS, index=False)
    write_results(study, search.objective.metric, root)
    return TuneResult(path, frame, root, handle.display_url, search.study_name)


def run_gumbel_experiment(cfg: TuneConfig, search_path: Path, address: str | None, resume: bool) -> TuneResult:
    from ray import tune

    from nas.supernet.config import GumbelConfig

    path = str(Path(_storage_path(cfg, address)) / cfg.experiment)
    root = Path(f"{path}-searches") if "://" not in path else Path("runs").resolve() / f"{cfg.experiment}-searches"
    root.mkdir(parents=True, exist_ok=True)
    trainable = tune.with_resources(
        tune.with_parameters(gumbel_trial, search=str(search_path.resolve()), sets=cfg.sets(GumbelConfig), root=str(root),
                             faults=Faults.from_env(root), **_trial_scale(cfg, path)),
        {"cpu": cfg.resources.cpu, "gpu": cfg.resources.gpu},
    )
    _init_ray(address)
    tune_config = tune.TuneConfig(metric="objective", mode="min", max_concurrent_trials=cfg.max_concurrent, num_samples=1)
    param_space = {key: tune.grid_search(values) for key, values in cfg.grid.items()}
    results = _tuner(cfg, trainable, path, resume, tune_config, param_space).fit()
    frame = results.get_dataframe()
    frame.to_csv(root / RAY_RESULTS, index=False)
    return TuneResult(path, frame, root)


def run_tune(config: str | Path, address: str | None = None, resume: bool = False, overrides: list[str] = ()) -> TuneResult:
    cfg, search_path = load_tune_config(config, list(overrides))
    _local_token(address)
    # A function trainable that a scheduler stops only notices at its next report, i.e. its next
    # evaluation; Tune waits 600 s by default before killing it, holding its CPUs/GPUs all along.
    os.environ.setdefault("TUNE_FORCE_TRIAL_CLEANUP_S", "10")
    if cfg.kind == "optuna":
        return run_optuna_experiment(cfg, search_path, address, resume)
    return run_gumbel_experiment(cfg, search_path, address, resume)
