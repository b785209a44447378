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
    """How the gradient cosines are measured and which sublayers become specific."""

    batches: int = 8
    """Training batches the gradients are summed over."""
    batch_size: int = 64
    """Pairs per batch."""
    budget: str | int | None = None
    """The parameter count the derived policy stays within ("130M", as `search.budget` of the Gumbel search)."""
    max_specific: int | None = None
    """At most this many specific sublayers; null: no limit."""
    threshold: float | None = None
    """Only sublayers whose image/text gradient cosine is below it become specific; null: any."""
    sublayers: list[str] = field(default_factory=lambda: list(SUBLAYERS))
    """Which kinds of sublayer may become specific."""

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
    """Everything `sharenas search conflict` needs: a brief `share-all` training, then the gradient
    cosine of every shared sublayer."""

    size: str = "tiny"
    """The model size: b32, b16, small or tiny."""
    data: DataConfig = field(default_factory=DataConfig)
    """The data of the `share-all` run."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Its optimizer."""
    train: TrainSection = field(default_factory=lambda: TrainSection(epochs=1, batch_size=64))
    """Its length and batch."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Its evaluation."""
    conflict: ConflictSection = field(default_factory=ConflictSection)
    """The measurement and the choice."""

    def __post_init__(self) -> None:
        try:
            get_size(self.size)
        except ValueError as exc:
            raise ConfigError(f"size: {exc}") from None
