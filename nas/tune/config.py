"""The typed configuration of `sharenas tune` (a Ray Tune experiment)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from trainer.compose import TrainerSections
from trainer.typed_config import ConfigError, load_config


@dataclass
class ResourcesSection:
    """Per trial: one process, or a data-parallel run on Ray Train workers (the trainer's DDP path in
    a process group Ray Train sets up; NCCL with GPUs, else gloo) driven by the trial's own process."""

    cpu: float = 1.0
    """CPUs of the trial's process."""
    gpu: float = 0.0
    """GPUs of the trial's process; fractional GPUs share one device (0.5: two trials per GPU). 0 with `workers`."""
    workers: int | None = None
    """Ray Train workers of a data-parallel trial; null: the trial trains in its own process."""
    cpu_per_worker: float = 1.0
    """CPUs of each worker (with `workers`)."""
    gpu_per_worker: float = 0.0
    """GPUs of each worker (with `workers`)."""

    def __post_init__(self) -> None:
        if self.cpu <= 0 or self.gpu < 0:
            raise ConfigError(f"resources: cpu must be > 0 and gpu >= 0, got {self.cpu} and {self.gpu}")
        if self.workers is None:
            if self.cpu_per_worker != 1.0 or self.gpu_per_worker != 0.0:
                raise ConfigError("resources: cpu_per_worker and gpu_per_worker are for trials on workers; set resources.workers too")
            return
        if self.workers < 1 or self.cpu_per_worker <= 0 or self.gpu_per_worker < 0:
            raise ConfigError(f"resources: workers must be >= 1, cpu_per_worker > 0 and gpu_per_worker >= 0, got "
                              f"{self.workers}, {self.cpu_per_worker} and {self.gpu_per_worker}")
        if self.gpu:
            raise ConfigError("resources.gpu: a trial on workers only drives them; give the workers their GPUs with resources.gpu_per_worker")

    @property
    def on_workers(self) -> bool:
        return self.workers is not None


@dataclass
class SchedulerSection:
    """How trials are stopped early."""

    kind: Literal["asha", "fifo"] = "asha"
    """`asha`: asynchronous successive halving over the trial's evaluations (`training_iteration`;
    it compares the metric alone, never the costs); `fifo`: every trial runs to the end."""
    grace_period: int = 1
    """ASHA: evaluations a trial runs before it can be stopped."""
    reduction_factor: int = 2
    """ASHA: the fraction 1/reduction_factor of trials continues at each rung."""

    def __post_init__(self) -> None:
        if self.grace_period < 1 or self.reduction_factor < 2:
            raise ConfigError("scheduler: grace_period must be >= 1 and reduction_factor >= 2")


@dataclass
class TuneConfig(TrainerSections):
    """A Ray Tune experiment over an Optuna or a Gumbel search; the trainer's sections are set over the
    search's own (every trial trains with them)."""

    search: str = "optuna.yaml"
    """The search YAML, relative to this file: an Optuna search (its space, objective, baselines, trial
    recipe, storage and study, so the Ray-run trials land in the same study as `sharenas search
    optuna`) or a Gumbel search."""
    kind: Literal["optuna", "gumbel"] = "optuna"
    """Which kind of search `search` is."""
    experiment: str = "sharenas-tune"
    """The Ray Tune experiment's name (its folder under `storage_path`)."""
    storage_path: str = "runs/ray"
    """Ray's experiment state: a shared filesystem or an object store URI on a multi-node cluster."""
    num_samples: int = 8
    """Trials of the experiment, the baselines included."""
    max_concurrent: int = 2
    """Trials running at once."""
    resources: ResourcesSection = field(default_factory=ResourcesSection)
    """What each trial gets."""
    scheduler: SchedulerSection = field(default_factory=SchedulerSection)
    """Early stopping."""
    max_failures: int = 2
    """Retries of a failed trial, from the checkpoint it reported with its last evaluation."""
    grid: dict[str, list[Any]] = field(default_factory=dict)
    """`kind: gumbel`: override key -> values; one search per point of the grid."""

    def __post_init__(self) -> None:
        if self.num_samples < 1 or self.max_concurrent < 1 or self.max_failures < 0:
            raise ConfigError("num_samples and max_concurrent must be >= 1 and max_failures >= 0")
        if self.kind == "gumbel" and not self.grid:
            raise ConfigError("grid: a gumbel experiment needs at least one key, e.g. grid: {train.seed: [0, 1]}")
        if self.kind == "optuna" and self.grid:
            raise ConfigError("grid: only for kind gumbel; an optuna experiment samples its search space")


def load_tune_config(path: str | Path, overrides: list[str] = ()) -> tuple[TuneConfig, Path]:
    """The config and the resolved path of its `search` YAML."""
    path = Path(path)
    cfg = load_config(path, TuneConfig, list(overrides))
    search = Path(cfg.search) if Path(cfg.search).is_absolute() else path.parent / cfg.search
    if not search.is_file():
        raise ConfigError(f"search: {search} does not exist; give the Optuna or Gumbel search YAML this experiment runs")
    return cfg, search
