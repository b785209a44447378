"""`sharenas tune`: search sharing policies with Ray Tune on a cluster (or this machine).

Optuna experiments: `OptunaSearch` on the same Optuna storage and study as `sharenas search optuna`
(so optuna-dashboard shows Ray-run trials beside the others), a define-by-run space that records each
trial's policy exactly as the Optuna driver does, the baselines enqueued first as baseline trials, an
ASHA scheduler over the trial's evaluations, and one function trainable around the shared trial
objective (`nas.trial`). The trainable reports each evaluation with the trainer's checkpoint of that
step, so a failed trial is retried from there (`FailureConfig(max_failures)`) and `--resume`
continues an interrupted experiment without re-running finished trials. Trials that ASHA stops are
COMPLETE in Optuna with their last value; they get `stopped_early` and `evaluations` attributes and
the results table lists them apart. Gumbel experiments run one supernet search per grid point.

Failure injection for testing fault tolerance: `SHARENAS_TUNE_FAIL_ONCE=TRIAL:STEP` in the driver's
environment makes Optuna trial TRIAL raise once at its evaluation of STEP.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search_spaces import SharingPolicy
from trainer import atomic
from trainer.config import ConfigError, TrainConfig, load_config, to_dict

from nas.tune.config import TuneConfig, load_tune_config

FAIL_ONCE_ENV = "SHARENAS_TUNE_FAIL_ONCE"
RAY_RESULTS = "ray_results.csv"


@dataclass
class TuneResult:
    experiment_path: str
    frame: Any
    """Ray's `ResultGrid.get_dataframe()`: one row per trial with its last result."""
    out_dir: Path | None = None
    storage: str | None = None
    study: str | None = None


def _json_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


# ---- the trainable (runs in Ray workers) ---------------------------------------------------------


def _pack(run_dir: Path, into: Path) -> None:
    """The run's config, policy, metrics and latest trainer checkpoint: what a retry resumes from."""
    from trainer.checkpoint import CHECKPOINTS, LATEST, latest_checkpoint

    for name in ("config.yaml", "policy.json", "metrics.jsonl"):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, into / name)
    latest = latest_checkpoint(run_dir)
    if latest is not None:
        shutil.copytree(latest, into / CHECKPOINTS / latest.name)
        atomic.write_text(into / CHECKPOINTS / LATEST, latest.name)


def _maybe_fail(wanted: str | None, trial: int, step: int, root: Path) -> None:
    if not wanted or wanted != f"{trial}:{step}":
        return
    marker = root / f".failed-once-{trial}-{step}"
    if not marker.exists():
        marker.write_text("injected")
        raise RuntimeError(f"injected failure ({FAIL_ONCE_ENV}={wanted})")


def trial_policy(config: dict[str, Any], space: Any, size: str) -> SharingPolicy:
    """The policy of a Ray trial's sampled parameters: a baseline's preset, else the space's point
    (replayed with Optuna's FixedTrial, so it equals what the define-by-run space recorded)."""
    import optuna

    from search_spaces import get_preset

    from nas.discrete.space import SearchSpace

    params = {k: v for k, v in config.items() if k != "optuna_trial"}
    if "baseline" in params:
        return get_preset(params["baseline"], size)
    return SearchSpace(space, size).suggest(optuna.trial.FixedTrial(params))


def optuna_trial(config: dict[str, Any], *, template: dict[str, Any], space: Any, metric: str, root: str, fail_once: str | None = None) -> None:
    """Train the trial's policy with the shared objective, reporting every evaluation to Tune."""
    from ray import tune

    from nas.trial import TrialObjective

    from search_spaces import count_params

    number = int(config["optuna_trial"])
    train_cfg = load_config(template, TrainConfig)
    policy = trial_policy(config, space, train_cfg.model.size)
    params = count_params(policy, train_cfg.model.size).total
    run_dir = Path(root) / f"trial_{number:04d}"
    checkpoint = tune.get_checkpoint()
    resume = checkpoint is not None
    if resume:
        with checkpoint.as_directory() as saved:
            if run_dir.exists():
                shutil.rmtree(run_dir)
            shutil.copytree(saved, run_dir)
    elif run_dir.exists():
        shutil.rmtree(run_dir)  # an attempt that failed before its first checkpoint: start over

    def report(step: int, value: float, metrics: dict[str, float]) -> None:
        _maybe_fail(fail_once, number, step, Path(root))
        with tempfile.TemporaryDirectory() as tmp:
            _pack(run_dir, Path(tmp))
            tune.report({"objective": value, "step": step, "run_dir": str(run_dir), "params_total": params, **_json_metrics(metrics)},
                        checkpoint=tune.Checkpoint.from_directory(tmp))

    train_cfg.train.checkpoint_on_eval = True  # every report carries the checkpoint of its own step
    TrialObjective(train_cfg, metric).run(policy, run_dir, report, resume=resume)


def gumbel_trial(config: dict[str, Any], *, search: str, root: str) -> None:
    """One Gumbel supernet search with the grid point's overrides; reports the derived policy's scores."""
    from ray import tune

    from nas.supernet.config import GumbelConfig
    from nas.supernet.search import run_gumbel_search

    overrides = [f"{key}={json.dumps(value)}" for key, value in sorted(config.items())]
    name = "_".join(f"{k.split('.')[-1]}={v}" for k, v in sorted(config.items()))
    out = Path(root) / name
    if out.exists():
        shutil.rmtree(out)  # the search has no mid-run resume yet: a retry searches again
    result = run_gumbel_search(load_config(search, GumbelConfig, overrides), out, retrain=False)
    metrics = _json_metrics(result.arch.get("metrics", {}))
    tune.report({"objective": metrics.get("inherited/val_loss", float("nan")), "search_seconds": result.seconds,
                 "params": float(result.arch["params"]["total"]), "run_dir": str(out), **metrics})


# ---- the driver ----------------------------------------------------------------------------------


def _progress_callback(storage_url: str, study_name: str, root: Path, evaluations: int) -> Any:
    """A Tune callback that records each Ray result on its Optuna trial (run directory, metrics, how
    many evaluations ran): Optuna refuses attributes once a trial has finished, and OptunaSearch
    finishes it right after the result that ends it, so the record is kept current per result. A
    trial whose last record says fewer than `evaluations` was stopped early by the scheduler."""
    from ray.tune import Callback

    class OptunaProgress(Callback):
        def __init__(self) -> None:
            self.url, self.study_name, self.root, self.evaluations = storage_url, study_name, str(root), evaluations
            self._study: Any = None

        def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks with the experiment
            return {**self.__dict__, "_study": None}

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            import optuna

            from nas.discrete.storage import open_storage

            number = trial.config.get("optuna_trial")
            if number is None:
                return
            if self._study is None:
                self._study = optuna.load_study(study_name=self.study_name, storage=open_storage(self.url).storage)
            storage, study_id = self._study._storage, self._study._study_id
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(number))
            done = int(result.get("training_iteration", 0))
            attrs = {"run_dir": str(Path(self.root) / f"trial_{int(number):04d}"), "evaluations": f"{done}/{self.evaluations}",
                     "stopped_early": done < self.evaluations, "ray_trial": trial.trial_id, "metrics": _json_metrics(result)}
            for key, value in attrs.items():
                storage.set_trial_user_attr(trial_id, key, value)

    return OptunaProgress()


class TrialSpace:
    """Ray's define-by-run space over the Optuna search's space. Picklable (Tune checkpoints its
    searcher): it keeps the config and rebuilds the space where it is called."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def __call__(self, trial: Any) -> dict[str, Any]:
        from nas.discrete.trials import describe_trial
        from nas.discrete.space import SearchSpace

        describe_trial(self.cfg, SearchSpace(self.cfg.space, self.cfg.train_template.model.size), trial)
        return {"optuna_trial": trial.number}


def _local_token(address: str | None) -> None:
    """A local Ray instance is a cluster too (its port listens on every interface): give it a token.
    Ray reads these variables when it is imported, so this runs before any Ray import."""
    if address is not None or "ray" in sys.modules:
        return
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if os.environ["RAY_AUTH_MODE"] == "token" and not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def _init_ray(address: str | None) -> None:
    import ray

    if address is None:
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    else:
        ray.init(address=address, log_to_driver=False, configure_logging=False)


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


def _tuner(cfg: TuneConfig, trainable: Any, path: str, resume: bool, tune_config: Any, param_space: dict[str, Any] | None = None,
           callbacks: list[Any] | None = None) -> Any:
    from ray import tune

    if resume:
        if not tune.Tuner.can_restore(path):
            raise ConfigError(f"--resume: no Ray Tune experiment at {path}; run without --resume to start it")
        return tune.Tuner.restore(path, trainable=trainable, resume_errored=True)
    if Path(path).exists() and "://" not in path:
        raise ConfigError(f"{path} already holds an experiment: pass --resume to continue it, or change `experiment`")
    run_config = tune.RunConfig(
        name=Path(path).name, storage_path=str(Path(path).parent), failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2), verbose=1, callbacks=callbacks,
    )
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


def run_optuna_experiment(cfg: TuneConfig, search_path: Path, address: str | None, resume: bool) -> TuneResult:
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from nas.discrete.config import load_search_config
    from nas.discrete.samplers import build_sampler
    from nas.discrete.worker import StudyWorker
    from nas.discrete.results import write_results
    from nas.discrete.storage import default_storage_url, open_storage

    search = load_search_config(search_path)
    if search.objective.kind != "single":
        raise ConfigError("objective.kind: multi-objective studies are not supported by `sharenas tune` yet; use objective.kind single")
    url = search.storage or default_storage_url(search.run_root)
    handle = open_storage(url)
    worker = StudyWorker(search, handle, train_fn=lambda *a, **k: None)  # opens/checks the study and enqueues the baselines
    study = worker.study
    mode = "min" if search.objective.direction == "minimize" else "max"
    if study.direction != (optuna.study.StudyDirection.MINIMIZE if mode == "min" else optuna.study.StudyDirection.MAXIMIZE):
        raise ConfigError(f"study {search.study_name!r} optimizes {study.direction.name.lower()} but the config says {search.objective.direction}; use another --study")

    searcher = OptunaSearch(space=TrialSpace(search), metric="objective", mode=mode, sampler=build_sampler(search, search.sampler.seed),
                            study_name=search.study_name, storage=handle.storage)
    evaluations = _evaluations(search.train_template)
    s = cfg.scheduler
    scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=evaluations, grace_period=min(s.grace_period, evaluations),
                               reduction_factor=s.reduction_factor) if s.kind == "asha" else FIFOScheduler())
    root = search.run_root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    trainable = tune.with_resources(
        tune.with_parameters(optuna_trial, template=to_dict(search.train_template), space=search.space, metric=search.objective.metric,
                             root=str(root), fail_once=os.environ.get(FAIL_ONCE_ENV)),
        {"cpu": cfg.resources.cpu, "gpu": cfg.resources.gpu},
    )
    path = str(Path(_storage_path(cfg, address)) / cfg.experiment)
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

    path = str(Path(_storage_path(cfg, address)) / cfg.experiment)
    root = Path(f"{path}-searches") if "://" not in path else Path("runs").resolve() / f"{cfg.experiment}-searches"
    root.mkdir(parents=True, exist_ok=True)
    trainable = tune.with_resources(tune.with_parameters(gumbel_trial, search=str(search_path.resolve()), root=str(root)),
                                    {"cpu": cfg.resources.cpu, "gpu": cfg.resources.gpu})
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
