"""The function trainables of `sharenas tune` (they run in Ray workers).

`optuna_trial` trains one Optuna trial's policy with the shared trial objective (`nas.objective`) and
reports each evaluation with the trainer's checkpoint of that step, so a retried trial resumes from
there. `gumbel_trial` runs one Gumbel supernet search per grid point in a directory that outlives
the attempt, so a retried search continues from the state it saved last. Either runs in the trial's
own process or, with `resources.workers`, data-parallel on Ray Train workers
(`nas.tune.train_workers`): the same code on every worker, each with its session (`nas.tune.sessions`).
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search_spaces import SharingPolicy
from trainer import atomic
from trainer.config import TrainConfig
from trainer.rundir import RunDir
from trainer.typed_config import load_config

from nas.tune.config import ResourcesSection
from nas.tune.faults import Faults
from nas.tune.sessions import Session, TuneSession

if TYPE_CHECKING:
    from nas.tune.reconcile import Settled


def json_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


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


def trial_policy(config: dict[str, Any], space: Any, size: str) -> SharingPolicy:
    """The policy of a Ray trial's sampled parameters: a baseline's preset, else the space's point
    (replayed with Optuna's FixedTrial, so it equals what the define-by-run space recorded)."""
    import optuna

    from search_spaces import LayoutSpace, get_preset

    params = {k: v for k, v in config.items() if k != "optuna_trial"}
    if "baseline" in params:
        return get_preset(params["baseline"], size)
    return LayoutSpace(space, size).suggest(optuna.trial.FixedTrial(params))


def _run(body, kwargs: dict[str, Any], resources: ResourcesSection, max_failures: int, train_storage: str) -> None:
    if resources.on_workers:
        from nas.tune.train_workers import fit_on_workers

        fit_on_workers(body, kwargs, resources, max_failures, train_storage)
    else:
        body(TuneSession(), **kwargs)


def optuna_trial(config: dict[str, Any], *, template: dict[str, Any], space: Any, metric: str, root: str, faults: Faults,
                 settled: dict[int, Settled], resources: ResourcesSection, max_failures: int, train_storage: str,
                 objective: Any = None) -> None:
    """Train the trial's policy with the shared objective, reporting every evaluation to Tune; a trial
    the study has finished already (`settled`, on --resume) only replays what the study recorded. A
    multi-objective study's costs (`objective.costs`, measured before training) go with every report."""
    number = int(config["optuna_trial"])
    if number in settled:
        settled[number].replay()
        return
    kwargs = {"config": config, "template": template, "space": space, "metric": metric, "root": root, "faults": faults,
              "objective": objective}
    _run(optuna_body, kwargs, resources, max_failures, train_storage)


def optuna_body(session: Session, *, config: dict[str, Any], template: dict[str, Any], space: Any, metric: str, root: str,
                faults: Faults, objective: Any = None) -> None:
    """One Optuna trial in one process of it: process 0 trains and reports through the objective,
    the others train beside it (DDP) and join each report."""
    from search_spaces import POLICY_FILE, count_params
    from trainer.distributed import pick_device
    from trainer.loop import train

    from nas.objective import TrialObjective
    from nas.pareto.objectives import measure_costs

    number = int(config["optuna_trial"])
    if session.is_main:
        faults.maybe_hold(number, 0)
    train_cfg = load_config(template, TrainConfig)
    policy = trial_policy(config, space, train_cfg.model.size)
    params = count_params(policy, train_cfg.model.size).total
    costs: dict[str, float] = {}
    if session.is_main and objective is not None and objective.kind == "multi":
        costs, _ = measure_costs(policy, train_cfg.model.size, objective.costs, objective.latency, pick_device(train_cfg.train.device))
    run_dir = Path(root) / f"trial_{number:04d}"
    resume = session.restore(run_dir)
    if not resume and session.is_main:
        RunDir(run_dir).start_over()  # an attempt that failed before its first checkpoint
    session.barrier()

    def report(step: int, value: float, metrics: dict[str, float]) -> None:
        faults.maybe_fail(number, step)
        faults.maybe_kill(number, step)
        with tempfile.TemporaryDirectory() as tmp:
            _pack(run_dir, Path(tmp))
            session.report({"objective": value, "step": step, "run_dir": str(run_dir), "params_total": params, **json_metrics(metrics),
                            **{f"cost/{name}": v for name, v in costs.items()}}, Path(tmp))
        faults.maybe_hold(number, step)

    train_cfg.train.checkpoint_on_eval = True  # every report carries the checkpoint of its own step
    trial = TrialObjective(train_cfg, metric)
    if session.is_main:
        trial.run(policy, run_dir, report, resume=resume)
    else:  # process 0 writes the policy file before the trainer's first barrier
        train(trial.config_for(run_dir / POLICY_FILE), run_dir, resume=resume, on_eval_elsewhere=lambda step: session.report({}))


def gumbel_trial(config: dict[str, Any], *, search: str, sets: list[str], root: str, faults: Faults, resources: ResourcesSection,
                 max_failures: int, train_storage: str) -> None:
    """One Gumbel supernet search with the experiment's `sets` and the grid point's overrides; reports the derived policy's scores."""
    _run(gumbel_body, {"config": config, "search": search, "sets": sets, "root": root, "faults": faults}, resources, max_failures,
         train_storage)


def gumbel_body(session: Session, *, config: dict[str, Any], search: str, sets: list[str], root: str, faults: Faults) -> None:
    """The search in one process of the trial, with `sets` and then the grid point's overrides. A retried
    search continues from its last saved state (`search gumbel --resume`), with the run's own config; one
    that failed before its first save starts over."""
    from trainer.run import resolve_resume

    from nas.scoring import ARCH_VAL_LOSS
    from nas.supernet.config import GumbelConfig
    from nas.supernet.rundir import SEARCH_STATE_FILE
    from nas.supernet.search import run_gumbel_search

    overrides = [*sets, *(f"{key}={json.dumps(value)}" for key, value in sorted(config.items()))]
    name = "_".join(f"{k.split('.')[-1]}={v}" for k, v in sorted(config.items()))
    out = Path(root) / name
    resume = (out / SEARCH_STATE_FILE).is_file()
    session.barrier()  # every process has looked before process 0 clears the directory
    if resume:
        cfg = resolve_resume(out, search, overrides, False, GumbelConfig)
    else:
        if session.is_main:
            RunDir(out, "search").start_over()  # an attempt that failed before its first save
        session.barrier()
        cfg = load_config(search, GumbelConfig, overrides)

    def on_saved(step: int) -> None:
        faults.maybe_fail(name, step)
        faults.maybe_kill(name, step)

    result = run_gumbel_search(cfg, out, retrain=False, resume=resume, on_saved=on_saved)
    if not session.is_main:
        session.report({})
        return
    metrics = json_metrics(result.arch.metrics)
    session.report({"objective": metrics.get(f"inherited/{ARCH_VAL_LOSS}", float("nan")), "search_seconds": result.seconds,
                    "resumed_from_step": result.resumed_from or 0, "params": float(result.arch.params.total), "run_dir": str(out),
                    **metrics})
