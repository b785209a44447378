"""The function trainables of `sharenas tune` (they run in Ray workers).

`optuna_trial` trains one Optuna trial's policy with the shared trial objective (`nas.objective`) and
reports each evaluation with the trainer's checkpoint of that step, so a retried trial resumes from
there. `gumbel_trial` runs one Gumbel supernet search per grid point in a directory that outlives
the attempt, so a retried search continues from the state it saved last.
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
from trainer.typed_config import load_config

from nas.tune.faults import Faults

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


def optuna_trial(config: dict[str, Any], *, template: dict[str, Any], space: Any, metric: str, root: str, faults: Faults,
                 settled: dict[int, Settled], objective: Any = None) -> None:
    """Train the trial's policy with the shared objective, reporting every evaluation to Tune; a trial
    the study has finished already (`settled`, on --resume) only replays what the study recorded. A
    multi-objective study's costs (`objective.costs`, measured before training) go with every report."""
    from ray import tune

    from nas.objective import TrialObjective
    from nas.pareto.objectives import measure_costs
    from search_spaces import count_params
    from trainer.distributed import pick_device

    number = int(config["optuna_trial"])
    if number in settled:
        settled[number].replay()
        return
    faults.maybe_hold(number, 0)
    train_cfg = load_config(template, TrainConfig)
    policy = trial_policy(config, space, train_cfg.model.size)
    params = count_params(policy, train_cfg.model.size).total
    costs: dict[str, float] = {}
    if objective is not None and objective.kind == "multi":
        costs, _ = measure_costs(policy, train_cfg.model.size, objective.costs, objective.latency, pick_device(train_cfg.train.device))
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
        faults.maybe_fail(number, step)
        with tempfile.TemporaryDirectory() as tmp:
            _pack(run_dir, Path(tmp))
            tune.report({"objective": value, "step": step, "run_dir": str(run_dir), "params_total": params, **json_metrics(metrics),
                         **{f"cost/{name}": v for name, v in costs.items()}},
                        checkpoint=tune.Checkpoint.from_directory(tmp))
        faults.maybe_hold(number, step)

    train_cfg.train.checkpoint_on_eval = True  # every report carries the checkpoint of its own step
    TrialObjective(train_cfg, metric).run(policy, run_dir, report, resume=resume)


def gumbel_trial(config: dict[str, Any], *, search: str, root: str, faults: Faults) -> None:
    """One Gumbel supernet search with the grid point's overrides; reports the derived policy's scores.
    A retried search continues from its last saved state (`search gumbel --resume`), with the run's
    own config; one that failed before its first save starts over."""
    from ray import tune

    from trainer.run import resolve_resume

    from nas.supernet.config import GumbelConfig
    from nas.supernet.rundir import SEARCH_STATE_FILE
    from nas.supernet.search import run_gumbel_search

    overrides = [f"{key}={json.dumps(value)}" for key, value in sorted(config.items())]
    name = "_".join(f"{k.split('.')[-1]}={v}" for k, v in sorted(config.items()))
    out = Path(root) / name
    resume = (out / SEARCH_STATE_FILE).is_file()
    if resume:
        cfg = resolve_resume(out, search, overrides, False, GumbelConfig)
    else:
        if out.exists():
            shutil.rmtree(out)
        cfg = load_config(search, GumbelConfig, overrides)
    result = run_gumbel_search(cfg, out, retrain=False, resume=resume, on_saved=lambda step: faults.maybe_fail(name, step))
    metrics = json_metrics(result.arch.get("metrics", {}))
    tune.report({"objective": metrics.get("inherited/val_loss", float("nan")), "search_seconds": result.seconds,
                 "resumed_from_step": result.resumed_from or 0, "params": float(result.arch["params"]["total"]), "run_dir": str(out),
                 **metrics})
