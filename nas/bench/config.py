"""The typed configuration of a bench: which policies, which seeds, which recipe, which held-out set."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from trainer.config import ConfigError, TrainConfig, load_config


@dataclass
class SpaceSection:
    """The supernet search space the bench's policies lie in (random policies are drawn from it)."""

    size: str = "tiny"
    early_specialization: bool = True
    fusion_layers: list[int] = field(default_factory=lambda: [2, 4, 6, 8, 10])


@dataclass
class RandomSection:
    """`count` random policies of the space, stratified by their number of shared sublayers: the range
    0..all is cut into `strata` equal bins and each bin gets the same number of policies."""

    count: int = 16
    strata: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.count < 0 or self.strata < 1:
            raise ConfigError(f"random.count must be >= 0 and random.strata >= 1, got {self.count} and {self.strata}")


@dataclass
class HeldOutSection:
    """The ground-truth metric: the contrastive loss in fixed batches of `batch_size` on `source`:
    "shapes", `pairs` freshly generated shapes pairs (stream `seed`, disjoint from every training
    split), or "data", the recipe data's own held-out split (all of it; e.g. the real set's)."""

    source: Literal["shapes", "data"] = "shapes"
    pairs: int = 4096
    seed: int = 123
    batch_size: int = 128

    def __post_init__(self) -> None:
        if self.source not in ("shapes", "data"):
            raise ConfigError(f"heldout.source: {self.source!r} is not one of shapes, data")
        if self.pairs < 2 * self.batch_size or self.batch_size < 2:
            raise ConfigError(f"heldout: need batch_size >= 2 and pairs >= 2 batches, got {self.pairs} pairs, batch {self.batch_size}")


@dataclass
class BenchConfig:
    """`train`: the recipe (a train YAML, relative to this file) whose `model.policy` and `train.seed` each
    entry replaces; `train_overrides` apply on top. `policies`: preset names or policy .json paths
    (relative to this file). Every policy runs with `seeds` (two or more give the noise ceiling; one
    suits a table of short trials scored against a full bench); `extra_seeds` adds seeds for some.
    Each run is scored on the held-out set at the end of every `score_every_epochs` epochs (the
    training-length study). `reference`: the policy every other one is compared with, paired by seed."""

    name: str = "sharebench-tiny"
    version: int = 1
    train: str = "../tiny/msclip.yaml"
    train_overrides: list[str] = field(default_factory=list)
    space: SpaceSection = field(default_factory=SpaceSection)
    policies: list[str] = field(default_factory=list)
    random: RandomSection = field(default_factory=RandomSection)
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    extra_seeds: dict[str, list[int]] = field(default_factory=dict)
    heldout: HeldOutSection = field(default_factory=HeldOutSection)
    score_every_epochs: int = 1
    bootstrap: int = 2000
    reference: str = "msclip"

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: give distinct seeds (two or more for a noise ceiling), got {self.seeds}")
        if self.score_every_epochs < 1 or self.bootstrap < 100:
            raise ConfigError("score_every_epochs must be >= 1 and bootstrap >= 100")


@dataclass
class LoadedBench:
    """A bench config with its paths resolved and its training recipe loaded."""

    cfg: BenchConfig
    path: Path
    recipe: TrainConfig

    def resolve(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.path.parent / p


def load_bench_config(path: str | Path, overrides: list[str] = ()) -> LoadedBench:
    path = Path(path)
    cfg = load_config(path, BenchConfig, list(overrides))
    recipe_path = Path(cfg.train) if Path(cfg.train).is_absolute() else path.parent / cfg.train
    recipe = load_config(recipe_path, TrainConfig, cfg.train_overrides)
    if recipe.model.size != cfg.space.size:
        raise ConfigError(f"train: the recipe {recipe_path} trains size {recipe.model.size!r} but space.size is {cfg.space.size!r}")
    unknown = sorted(set(cfg.extra_seeds) - {Path(p).stem if p.endswith(".json") else p for p in cfg.policies})
    if unknown:
        raise ConfigError(f"extra_seeds: {', '.join(unknown)} not among the policies; name listed policies")
    return LoadedBench(cfg, path, recipe)
