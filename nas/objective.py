"""One trial of a discrete search: train one policy with the trainer and score it by the objective
metric. Optuna's own loop (`nas.discrete.worker`) and Ray Tune's function trainable (`nas.tune.driver`) both
call `TrialObjective.run`; they differ only in how they report and where they record results."""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from search_spaces import POLICY_FILE, SharingPolicy
from trainer import atomic
from trainer.config import TrainConfig
from trainer.loop import TrainingDiverged, TrainResult, train
from trainer.typed_config import ConfigError

TrainFn = Callable[..., TrainResult]
Reporter = Callable[[int, float, dict[str, float]], None]
"""`report(step, objective value, all metrics)` after each evaluation; may raise to stop the trial."""


class MetricNotFound(ConfigError):
    """`objective.metric` is not an evaluation metric: every trial would fail the same way."""


def objective_value(metrics: dict[str, float], metric: str) -> float:
    if metric not in metrics:
        raise MetricNotFound(
            f"objective.metric: {metric!r} is not among the evaluation metrics ({', '.join(sorted(metrics))}); "
            "fix it and start a new study (--study NAME)"
        )
    value = metrics[metric]
    if not math.isfinite(value):
        raise TrainingDiverged(f"the objective {metric} is {value}")
    return value


@dataclass
class TrialObjective:
    """Train `policy` from `template` (its `model.policy` replaced) into a run directory and return the
    result and the objective value of its final evaluation."""

    template: TrainConfig
    metric: str
    train_fn: TrainFn = train

    def config_for(self, policy_file: Path) -> TrainConfig:
        cfg = copy.deepcopy(self.template)
        cfg.model.policy = str(policy_file)
        return cfg

    def run(self, policy: SharingPolicy, run_dir: Path, report: Reporter | None = None, resume: bool = False) -> tuple[TrainResult, float]:
        run_dir.mkdir(parents=True, exist_ok=True)
        policy_file = run_dir / POLICY_FILE
        atomic.write_with(policy_file, policy.save)

        def on_eval(step: int, metrics: dict[str, float]) -> None:
            value = objective_value(metrics, self.metric)
            if report is not None:
                report(step, value, metrics)

        result = self.train_fn(self.config_for(policy_file), run_dir, resume=resume, on_eval=on_eval)
        return result, objective_value(result.metrics, self.metric)
