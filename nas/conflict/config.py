"""Typed configuration of `sharenas search conflict` (YAML via `trainer.typed_config.load_config`).

Sections `data`, `optim`, `train` and `eval` are the trainer's own, for the brief `share-all` run."""
from __future__ import annotations

from dataclasses import dataclass, field

from search_spaces import SUBLAYERS, get_size
from trainer.config import EvalConfig, OptimConfig, TrainSection
from trainer.data import DataConfig
from trainer.typed_config import ConfigError, parse_budget


@dataclass
class ConflictSection:
    """`batches` x `batch_size` training pairs to sum the gradients over; `budget`: the parameter count
    the derived policy stays within (as `search.budget` of the Gumbel search); `max_specific`: at most
    this many specific sublayers; `threshold`: only sublayers whose cosine is below it; `sublayers`:
    which kinds may become specific."""

    batches: int = 8
    batch_size: int = 64
    budget: str | int | None = None
    max_specific: int | None = None
    threshold: float | None = None
    sublayers: list[str] = field(default_factory=lambda: list(SUBLAYERS))

    def __post_init__(self) -> None:
        if self.batches < 1 or self.batch_size < 2:
            raise ConfigError("conflict.batches must be >= 1 and conflict.batch_size >= 2")
        unknown = sorted(set(self.sublayers) - set(SUBLAYERS))
        if unknown:
            raise ConfigError(f"conflict.sublayers: unknown {', '.join(unknown)}; choose from {', '.join(SUBLAYERS)}")
        if self.max_specific is not None and self.max_specific < 0:
            raise ConfigError("conflict.max_specific must be >= 0")
        parse_budget(self.budget, "conflict.budget")

    @property
    def budget_params(self) -> int | None:
        return parse_budget(self.budget, "conflict.budget")


@dataclass
class ConflictConfig:
    size: str = "tiny"
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainSection = field(default_factory=lambda: TrainSection(epochs=1, batch_size=64))
    eval: EvalConfig = field(default_factory=EvalConfig)
    conflict: ConflictSection = field(default_factory=ConflictSection)

    def __post_init__(self) -> None:
        try:
            get_size(self.size)
        except ValueError as exc:
            raise ConfigError(f"size: {exc}") from None
