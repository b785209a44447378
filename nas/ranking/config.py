"""The typed configuration of `sharenas search rank-check`: which bench table, which proxies, which
supernet searches (and fine-tunes) to score against it."""
from __future__ import annotations

from dataclasses import dataclass, field

from trainer.compose import TrainerSections
from trainer.typed_config import ConfigError

from nas.zero_cost import ZERO_COST

TRIVIAL = ("params", "specific_sublayers")
"""The proxies that need no search: the parameter count and the number of specific sublayers."""


@dataclass
class ZeroCostSection:
    """How the zero-cost proxies (`grad_norm`, `snip`: `nas/zero_cost.py`) are measured."""

    recipe: str = "msclip.yaml"
    """A training config (relative to this file; the bench's recipe): its data's training split, model
    size and batch size give the one batch each proxy is computed on."""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """Initialization and batch seeds; a policy's proxy is its mean over them."""

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ConfigError("zero_cost.seeds must hold at least one seed")


@dataclass
class FinetuneSection:
    """Supernet proxies scored again after fine-tuning each policy's inherited weights standalone
    (proxy `NAME+ft<steps>`). Cost: `steps` training steps per scored policy."""

    steps: int = 20
    """AdamW steps on each policy's inherited weights."""
    lr: float = 2.0e-4
    """Their constant learning rate."""
    of: list[str] = field(default_factory=lambda: ["supernet"])
    """The supernet proxy names to fine-tune and score again."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.lr <= 0:
            raise ConfigError("finetune.steps must be >= 1 and finetune.lr > 0")


@dataclass
class RankCheckConfig(TrainerSections):
    """Proxies of the standalone ranking scored against a bench table, with Kendall tau, Spearman,
    top-k overlap and bootstrap confidence intervals. Paths are relative to this file. The trainer's
    sections are set over every config the check trains with (the searches, before an option's own
    overrides; the conflict search; the zero-cost recipe)."""

    bench: str = "../results/sharebench-tiny.json"
    """The bench table (the JSON of `sharenas bench show --json`)."""
    search: str = "gumbel.yaml"
    """The Gumbel config whose supernet is scored as proxy `supernet` (searched into OUT/supernet)."""
    supernet_run: str | None = None
    """A finished `search gumbel` output to score instead of searching."""
    options: dict[str, list[str]] = field(default_factory=dict)
    """Proxy `supernet-NAME` per entry: the same search with these `--set` overrides (into
    OUT/supernet-NAME; an interrupted one is resumed)."""
    only: list[str] | None = None
    """Search and score just these option names (to run options in parallel processes; a final run
    without it collects every result)."""
    finetune: FinetuneSection | None = None
    """Also score fine-tuned supernet proxies; null: none."""
    conflict: str | None = None
    """A `search conflict` config scored as proxy `conflict` (the summed image/text gradient conflict
    of the sublayers a policy makes specific)."""
    proxies: list[str] = field(default_factory=lambda: ["supernet", *TRIVIAL])
    """Which of `supernet`, `params`, `specific_sublayers` and the zero-cost proxies `grad_norm` and
    `snip` to score."""
    zero_cost: ZeroCostSection = field(default_factory=ZeroCostSection)
    """How the zero-cost proxies are measured (when `proxies` names one)."""
    keep: str | None = None
    """A previous result of this rank check (its `--json` output): every proxy it holds that this run
    does not score (e.g. the searched supernet options, hours of CPU) is copied in as it was, with its
    run and the picks, and listed under `kept`; null: none."""
    tables: dict[str, str] = field(default_factory=dict)
    """Proxy name -> another bench table scored by its mean held-out loss (e.g. short trials)."""
    table_seeds: dict[str, list[int]] = field(default_factory=dict)
    """Proxy name -> the seeds of its table to average (e.g. one seed of a two-seed table); default all."""
    truth: str = "val_loss"
    """The bench metric the proxies are scored against, its mean over seeds: `val_loss` (lower is
    better) or another column of the bench's `metrics` (higher is better); the bench's most repeatable
    metric (its noise ceiling per metric) is the one a proxy can be judged on."""
    top_k: int = 5
    """The k of the top-k overlap."""
    bootstrap: int = 2000
    """Bootstrap resamples of the confidence intervals."""
    seed: int = 0
    """Seed of the bootstrap."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.proxies) - {"supernet", *TRIVIAL, *ZERO_COST})
        if unknown:
            raise ConfigError(f"proxies: unknown {', '.join(unknown)}; choose from supernet, {', '.join((*TRIVIAL, *ZERO_COST))}")
        if self.top_k < 1 or self.bootstrap < 100:
            raise ConfigError("top_k must be >= 1 and bootstrap >= 100")
        stray = sorted(set(self.table_seeds) - set(self.tables))
        if stray:
            raise ConfigError(f"table_seeds: {', '.join(stray)} not among tables ({', '.join(self.tables) or 'none'})")
        bad = sorted(set(self.only or ()) - set(self.options))
        if bad:
            raise ConfigError(f"only: {', '.join(bad)} not among options ({', '.join(self.options) or 'none'})")
        if self.finetune is not None:
            names = {"supernet", *(f"supernet-{n}" for n in self.options)}
            missing = sorted(set(self.finetune.of) - names)
            if missing:
                raise ConfigError(f"finetune.of: {', '.join(missing)} is not a supernet proxy; choose from {', '.join(sorted(names))}")
