"""`OptunaSearchConfig`: the YAML of `sharenas search optuna`, loaded with strict typed checks.

The trainer's sections (`model`, `data`, `optim`, `train`, `eval`) are the training config every trial
uses, written over the `recipe:` as in every config that trains (`trainer.compose`). Each trial then
sets `model.policy` to its own policy JSON.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from search_spaces import PRESET_NAMES, LayoutSpaceConfig
from trainer.compose import OldSpelling
from trainer.config import EvalConfig, ModelConfig, OptimConfig, TrainConfig, TrainSection
from trainer.data import DataConfig
from trainer.typed_config import ConfigError, load_config, parse_budget

from nas.pareto.objectives import COSTS, Cost, LatencyConfig

DEFAULT_BASELINES = ["msclip", "clip", "msclip-s"]
REFERENCE_BASELINE = "msclip"
"""Every result is compared with this baseline (the shared-all MS-CLIP)."""


@dataclass
class ObjectiveConfig:
    """`single`: maximize (or minimize) `metric`. `multi`: that, and minimize each of `costs`."""

    kind: Literal["single", "multi"] = "single"
    """`single`: the metric alone; `multi`: the metric and the costs (a Pareto front)."""
    metric: str = "zeroshot/digits/top1"
    """An evaluation metric key (see trainer.evaluation.evaluate), reported at every evaluation."""
    direction: Literal["maximize", "minimize"] = "maximize"
    """Whether a higher or a lower `metric` is better (the costs are always minimized)."""
    costs: list[Cost] = field(default_factory=lambda: ["params"])
    """Multi-objective: the cost objectives beside `metric`, any subset of params, flops, latency."""
    reference_point: dict[str, float] = field(default_factory=dict)
    """The hypervolume's reference point, per objective name (`metric` and each cost), fixed before
    the search. Default for params and flops: twice the all-specific `clip-t768` policy's value; the
    metric and latency have none (no hypervolume until they are set)."""
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    """How the `latency` cost is measured."""

    def __post_init__(self) -> None:
        if not self.costs or len(set(self.costs)) != len(self.costs):
            raise ConfigError(f"objective.costs: {self.costs} must list distinct costs out of {', '.join(COSTS)}")
        unknown = sorted(set(self.reference_point) - set(self.names))
        if unknown:
            raise ConfigError(f"objective.reference_point: {unknown[0]!r} is not an objective; objectives: {', '.join(self.names)}")

    @property
    def names(self) -> list[str]:
        """The study's objectives in order: the metric, then (multi-objective) the costs."""
        return [self.metric, *self.costs] if self.kind == "multi" else [self.metric]

    @property
    def directions(self) -> list[str]:
        return [self.direction] + ["minimize"] * (len(self.names) - 1)


@dataclass
class SamplerConfig:
    """`auto` is TPE, multi-objective TPE for several objectives; `nsga2` is NSGA-II. `grid` runs every configuration of the space
    once, in a shuffled order (for small spaces)."""

    kind: Literal["auto", "tpe", "nsga2", "grid", "random"] = "auto"
    """The sampler (`auto`: TPE)."""
    seed: int = 0
    """The sampler's seed (and the grid's order)."""
    startup_trials: int = 10
    """TPE: random trials before the model-based sampling starts."""
    population_size: int = 20
    """NSGA-II population."""
    grid_limit: int = 100_000
    """Grid: a space with more configurations than this is refused (grid search is for small spaces)."""

    def __post_init__(self) -> None:
        for name in ("startup_trials", "population_size", "grid_limit"):
            if getattr(self, name) < 1:
                raise ConfigError(f"sampler.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class PrunerConfig:
    """Pruning on the metric reported at each evaluation (`eval.every_steps` / `every_epochs` of the
    trial config). `auto`: median for one objective, none for two (Optuna prunes single-objective
    studies only)."""

    kind: Literal["auto", "median", "hyperband", "none"] = "auto"
    """The pruner (`auto`: median for one objective, none for two)."""
    startup_trials: int = 5
    """Median: finished trials before pruning starts."""
    warmup_steps: int = 0
    """Median: training steps before a trial can be pruned."""
    min_resource: int = 1
    """Hyperband: the fewest training steps a trial runs."""
    reduction_factor: int = 3
    """Hyperband: the reduction factor between its rungs (>= 2)."""

    def __post_init__(self) -> None:
        if self.startup_trials < 0 or self.warmup_steps < 0 or self.min_resource < 1 or self.reduction_factor < 2:
            raise ConfigError(
                "pruner: startup_trials and warmup_steps must be >= 0, min_resource >= 1 and reduction_factor >= 2"
            )


@dataclass
class HeartbeatConfig:
    """A running trial whose worker stops beating for `grace_period` seconds is marked FAIL and queued
    again, at most `max_retry` times (SQLite and PostgreSQL storages; journal files have no heartbeat)."""

    interval: int = 10
    """Seconds between a running trial's heartbeats."""
    grace_period: int = 60
    """Seconds without a heartbeat after which the trial is failed and queued again (> interval)."""
    max_retry: int = 2
    """How often one trial is queued again."""

    def __post_init__(self) -> None:
        if self.interval < 1 or self.grace_period <= self.interval or self.max_retry < 0:
            raise ConfigError(
                f"heartbeat: need interval >= 1, grace_period > interval and max_retry >= 0, got "
                f"{self.interval}, {self.grace_period}, {self.max_retry}"
            )


@dataclass
class OptunaSearchConfig:
    """Everything `sharenas search optuna` needs; see experiments/tiny/optuna.yaml for an example. The
    trainer's sections are the trials' training config (`train_template`)."""

    OLD_SPELLING: ClassVar[OldSpelling] = "train-base"
    study_name: str = "sharenas"
    """The Optuna study's name (letters, digits, `_`, `-`, `.`)."""
    out_dir: str | None = None
    """Trial run directories (trial_XXXX), artifacts and results; null: runs/optuna/<study_name>."""
    storage: str | None = None
    """sqlite:///FILE (one worker), postgresql+psycopg2://... or journal:FILE (parallel workers); null:
    sqlite:///<out_dir>/study.db."""
    n_trials: int = 20
    """Trials the study should hold, baselines included; re-running continues up to this number."""
    baselines: list[str] = field(default_factory=lambda: list(DEFAULT_BASELINES))
    """Presets run first as trials of their own; must include `msclip`, which every result is compared with."""
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    """What the study optimizes."""
    param_budget: int | float | str | None = None
    """Most parameters a policy may have ("130M", "800k", 1.2e8 or an int); a constraint for TPE/NSGA-II."""
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    """How trials are proposed."""
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    """How unpromising trials are stopped early."""
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    """How a dead worker's trial is detected and retried."""
    space: LayoutSpaceConfig = field(default_factory=LayoutSpaceConfig)
    """The layout space searched."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The size every trial trains (`model.policy` is each trial's own)."""
    data: DataConfig = field(default_factory=DataConfig)
    """The trials' data, as for training."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """The trials' optimizer, as for training."""
    train: TrainSection = field(default_factory=lambda: TrainSection(epochs=1))
    """The trials' length, batch and runtime, as for training."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """The trials' evaluations: each reports the objective's metric to the pruner."""
    budget: int | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.study_name):
            raise ConfigError(f"study_name: {self.study_name!r} must be letters, digits, '_', '-' or '.'")
        if not self.baselines or REFERENCE_BASELINE not in self.baselines:
            raise ConfigError(f"baselines: {self.baselines} must include {REFERENCE_BASELINE!r}: every result is compared with it")
        unknown = [b for b in self.baselines if b not in PRESET_NAMES]
        if unknown or len(set(self.baselines)) != len(self.baselines):
            raise ConfigError(f"baselines: {self.baselines} must be distinct preset names ({', '.join(PRESET_NAMES)})")
        if self.n_trials < len(self.baselines):
            raise ConfigError(
                f"n_trials: {self.n_trials} is fewer than the {len(self.baselines)} baselines it includes; raise it"
            )
        if self.pruner.kind in ("median", "hyperband") and self.objective.kind == "multi":
            raise ConfigError(f"pruner.kind: {self.pruner.kind} needs objective.kind: single (Optuna cannot prune multi-objective studies); use none or auto")
        self.budget = parse_budget(self.param_budget, "param_budget")

    @property
    def train_template(self) -> TrainConfig:
        """The training config of every trial, before the trial sets its `model.policy`."""
        return TrainConfig(model=self.model, data=self.data, optim=self.optim, train=self.train, eval=self.eval)

    @property
    def pruner_kind(self) -> str:
        if self.pruner.kind == "auto":
            return "median" if self.objective.kind == "single" else "none"
        return self.pruner.kind

    @property
    def sampler_kind(self) -> str:
        if self.sampler.kind == "auto":
            return "tpe"
        return self.sampler.kind

    @property
    def run_root(self) -> Path:
        return Path(self.out_dir) if self.out_dir is not None else Path("runs") / "optuna" / self.study_name


def load_search_config(source: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()) -> OptunaSearchConfig:
    """Load a search YAML (or mapping) with `key.path=value` overrides."""
    return load_config(source, OptunaSearchConfig, overrides)
