"""The typed configuration of a bench: which policies, which seeds, which recipe, which held-out set.

The bench keeps its recipe by name (`recipe:`) and the trainer's sections it writes over it as they are
written (`trainer.compose.TrainerSections`), so a table records them and tables built at different
times compare by them; `load_bench_config` composes the recipe the entries train with.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from search_spaces import GateSpaceConfig
from trainer.compose import OldSpelling, TrainerSections
from trainer.config import TrainConfig
from trainer.typed_config import ConfigError, load_config


@dataclass
class RandomSection:
    """Random policies of the space, stratified by their number of shared sublayers."""

    count: int = 16
    """How many random policies the bench adds."""
    strata: int = 8
    """The range 0..all shared sublayers is cut into this many equal bins, each with the same number of policies."""
    seed: int = 0
    """Seed of the draw."""

    def __post_init__(self) -> None:
        if self.count < 0 or self.strata < 1:
            raise ConfigError(f"random.count must be >= 0 and random.strata >= 1, got {self.count} and {self.strata}")


@dataclass
class HeldOutSection:
    """The ground-truth metric: the contrastive loss in fixed batches on a held-out set."""

    source: Literal["shapes", "data"] = "shapes"
    """`shapes`: freshly generated shapes pairs, disjoint from every training split; `data`: the recipe
    data's own held-out split, all of it (e.g. the real set's)."""
    pairs: int = 4096
    """`shapes`: how many pairs (at least two batches)."""
    seed: int = 123
    """`shapes`: the random stream of the pairs."""
    batch_size: int = 128
    """The fixed batch of the loss (the loss depends on it)."""

    def __post_init__(self) -> None:
        if self.source not in ("shapes", "data"):
            raise ConfigError(f"heldout.source: {self.source!r} is not one of shapes, data")
        if self.pairs < 2 * self.batch_size or self.batch_size < 2:
            raise ConfigError(f"heldout: need batch_size >= 2 and pairs >= 2 batches, got {self.pairs} pairs, batch {self.batch_size}")


def metric_sources(source: str) -> list[str]:
    """The entry-record paths a column's `source` reads: `val_loss`, `metrics.KEY`, or
    `mean(metrics.A, metrics.B, ...)`, the mean of several (e.g. R@10 of both retrieval directions)."""
    if source.startswith("mean(") and source.endswith(")"):
        return [part.strip() for part in source[5:-1].split(",") if part.strip()]
    return [source]


SYNTHETIC_METRICS = {
    "val_loss": "val_loss",
    "zeroshot_shapes": "metrics.zeroshot/shapes/top1",
    "zeroshot_digits": "metrics.zeroshot/digits/top1",
    "retrieval_shapes_i2t_r1": "metrics.retrieval/shapes/i2t_r1",
    "retrieval_shapes_t2i_r1": "metrics.retrieval/shapes/t2i_r1",
    "linear_probe_digits": "metrics.linear_probe/digits/acc",
}
"""The columns of a bench on the embedded data: column -> where in an entry record it comes from."""


@dataclass
class BenchConfig(TrainerSections):
    """A bench: policies trained standalone with several seeds on one recipe, scored on a held-out set."""

    OLD_SPELLING: ClassVar[OldSpelling] = "train-path"
    name: str = "sharebench-tiny"
    """The bench's name, recorded in its table."""
    version: int = 1
    """The bench definition's version, recorded in its table (raise it when the definition changes)."""
    recipe: str = "../tiny/msclip.yaml"
    """The recipe: a training YAML, relative to this file, which the trainer's sections of this config are
    written over; each entry replaces its `model.policy` and `train.seed`."""
    space: GateSpaceConfig = field(default_factory=GateSpaceConfig)
    """The supernet gate space the policies lie in (random policies are drawn from it)."""
    policies: list[str] = field(default_factory=list)
    """Preset names or policy .json paths (relative to this file)."""
    random: RandomSection = field(default_factory=RandomSection)
    """Random policies of `space` added to `policies`."""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """Every policy runs with these seeds: two or more give the noise ceiling; one suits a table of
    short trials scored against a full bench."""
    extra_seeds: dict[str, list[int]] = field(default_factory=dict)
    """More seeds for some policies, by policy name."""
    heldout: HeldOutSection = field(default_factory=HeldOutSection)
    """The held-out set every run is scored on."""
    score_every_epochs: int = 1
    """Each run is scored at the end of every this many epochs (the training-length study)."""
    bootstrap: int = 2000
    """Bootstrap resamples of the confidence intervals (>= 100)."""
    reference: str = "msclip"
    """The policy every other one is compared with, paired by seed."""
    metrics: dict[str, str] = field(default_factory=lambda: dict(SYNTHETIC_METRICS))
    """The table's columns: column -> where in an entry record it comes from (`val_loss`, the bench's
    held-out loss, `metrics.KEY` of the final evaluation, or `mean(metrics.KEY, ...)`, the mean of several;
    accuracies and recalls in percent)."""
    paper_zeroshot: str = "zeroshot_shapes"
    """The column the paper check sets beside the paper's zero-shot differences."""
    ranking: str = "val_loss"
    """The column the bench ranks policies by: its noise ceiling is the headline one, the rank check's
    default ground truth and the regime map's metric."""
    lengths: list[int] = field(default_factory=list)
    """Training lengths in epochs scored for every entry (the length study), the longest being the
    recipe's `train.epochs`. The recipe must use `optim.schedule: wsd`: the longest run is trained
    once and each shorter length is a cool-down branch off its checkpoint where that length's
    cool-down starts (step for step the run of that length). Empty: the recipe's length only."""

    def __post_init__(self) -> None:
        if self.metrics.get("val_loss") != "val_loss":
            raise ConfigError("metrics: the table needs the column val_loss: val_loss (the bench's held-out loss)")
        bad = sorted(c for c, source in self.metrics.items()
                     if c != "val_loss" and not all(part.startswith("metrics.") for part in metric_sources(source)))
        if bad:
            raise ConfigError(f"metrics: {', '.join(bad)} must come from metrics.KEY (a key of the final evaluation) "
                              "or mean(metrics.KEY, metrics.KEY, ...)")
        if self.ranking not in self.metrics:
            raise ConfigError(f"ranking: {self.ranking!r} is not one of the metrics columns ({', '.join(self.metrics)})")
        if any(n < 1 for n in self.lengths) or len(set(self.lengths)) != len(self.lengths):
            raise ConfigError(f"lengths: give distinct epoch counts >= 1, got {self.lengths}")
        if self.paper_zeroshot not in self.metrics:
            raise ConfigError(f"paper_zeroshot: {self.paper_zeroshot!r} is not one of the metrics columns")
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
    recipe_path = path.parent / cfg.recipe
    if not recipe_path.is_file():
        raise ConfigError(f"recipe: {recipe_path} does not exist; give a training YAML such as experiments/tiny/msclip.yaml")
    recipe = load_config(recipe_path, TrainConfig, cfg.sets())
    if cfg.lengths and (recipe.optim.schedule != "wsd" or recipe.train.epochs != max(cfg.lengths)):
        raise ConfigError(f"lengths: {cfg.lengths} needs a recipe with optim.schedule: wsd and train.epochs: {max(cfg.lengths)} "
                          f"(the longest length), got {recipe.optim.schedule} and {recipe.train.epochs}; set them in optim and train")
    if recipe.model.size != cfg.space.size:
        raise ConfigError(f"recipe: {recipe_path} trains model.size {recipe.model.size!r} but space.size is {cfg.space.size!r}")
    unknown = sorted(set(cfg.extra_seeds) - {Path(p).stem if p.endswith(".json") else p for p in cfg.policies})
    if unknown:
        raise ConfigError(f"extra_seeds: {', '.join(unknown)} not among the policies; name listed policies")
    return LoadedBench(cfg, path, recipe)
