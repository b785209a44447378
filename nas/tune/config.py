"""The typed configuration of `sharenas tune` (a Ray Tune experiment)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from trainer.typed_config import ConfigError, load_config


@dataclass
class ResourcesSection:
    """Per trial. A trial is one process with `cpu` CPUs and `gpu` GPUs (fractional GPUs share one
    device between trials: 0.5 = two trials per GPU), or, with `workers`, a data-parallel run on that
    many Ray Train workers of `cpu_per_worker` / `gpu_per_worker` each (the trainer's DDP path in a
    process group Ray Train sets up; NCCL with GPUs, else gloo), driven by the trial's own process,
    which holds `cpu` and no GPU."""

    cpu: float = 1.0
    gpu: float = 0.0
    workers: int | None = None
    cpu_per_worker: float = 1.0
    gpu_per_worker: float = 0.0

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
    """`asha`: asynchronous successive halving over the trial's evaluations (`training_iteration`);
    `fifo`: every trial runs to the end."""

    kind: Literal["asha", "fifo"] = "asha"
    grace_period: int = 1
    reduction_factor: int = 2

    def __post_init__(self) -> None:
        if self.grace_period < 1 or self.reduction_factor < 2:
            raise ConfigError("scheduler: grace_period must be >= 1 and reduction_factor >= 2")


@dataclass
class TuneConfig:
    """`search`: an Optuna search YAML (`kind: optuna`: its space, objective, baselines, trial recipe,
    storage and study, so the Ray-run trials land in the same study as `sharenas search optuna`) or a
    Gumbel search YAML (`kind: gumbel`: one search per point of `grid`, override key -> values).
    `num_samples` counts every trial (the baselines included); `storage_path` holds Ray's experiment
    state (a shared filesystem or an object store URI on a multi-node cluster)."""

    search: str = "optuna.yaml"
    kind: Literal["optuna", "gumbel"] = "optuna"
    experiment: str = "sharenas-tune"
    storage_path: str = "runs/ray"
    num_samples: int = 8
    max_concurrent: int = 2
    resources: ResourcesSection = field(default_factory=ResourcesSection)
    scheduler: SchedulerSection = field(default_factory=SchedulerSection)
    max_failures: int = 2
    grid: dict[str, list[Any]] = field(default_factory=dict)

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
