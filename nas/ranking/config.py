"""The typed configuration of `sharenas search rank-check`: which bench table, which proxies, which
supernet searches (and fine-tunes) to score against it."""
from __future__ import annotations

from dataclasses import dataclass, field

from trainer.typed_config import ConfigError

TRIVIAL = ("params", "specific_sublayers")
"""The proxies that need no search: the parameter count and the number of specific sublayers."""


@dataclass
class FinetuneSection:
    """Score `of` (supernet proxy names) again after `steps` AdamW steps at constant `lr` on each
    policy's inherited weights, standalone (proxy `NAME+ft<steps>`). Cost: `steps` training steps
    per scored policy."""

    steps: int = 20
    lr: float = 2.0e-4
    of: list[str] = field(default_factory=lambda: ["supernet"])

    def __post_init__(self) -> None:
        if self.steps < 1 or self.lr <= 0:
            raise ConfigError("finetune.steps must be >= 1 and finetune.lr > 0")


@dataclass
class RankCheckConfig:
    """`bench`: the bench table (JSON from `sharenas bench show --json`, relative to this file).
    `search`: the Gumbel config whose supernet is scored as proxy `supernet` (searched into
    OUT/supernet unless `supernet_run` names a finished `search gumbel` output). `options`: proxy
    `supernet-NAME` per entry, the same search with these `--set` overrides (into OUT/supernet-NAME;
    an interrupted one is resumed). `only`: search and score just these option names (to run options
    in parallel processes; a final run without it collects every result). `proxies`: which to
    score; `tables`: proxy name -> another bench table (relative to this file) scored by its mean
    held-out loss (over the seeds in `table_seeds[name]` only, when given: e.g. one seed of a
    two-seed table of short trials). `conflict`: a `search conflict` config (relative to this file) scored as proxy
    `conflict` (the summed image/text gradient conflict of the sublayers a policy makes specific).
    `truth`: the bench metric the proxies are scored against, its mean over seeds: `val_loss` (lower
    is better) or another column of the bench's `metrics` (higher is better); the bench's most
    repeatable metric (its noise ceiling per metric) is the one a proxy can be judged on."""

    bench: str = "../results/sharebench-tiny.json"
    search: str = "gumbel.yaml"
    supernet_run: str | None = None
    options: dict[str, list[str]] = field(default_factory=dict)
    only: list[str] | None = None
    finetune: FinetuneSection | None = None
    conflict: str | None = None
    proxies: list[str] = field(default_factory=lambda: ["supernet", *TRIVIAL])
    tables: dict[str, str] = field(default_factory=dict)
    table_seeds: dict[str, list[int]] = field(default_factory=dict)
    truth: str = "val_loss"
    top_k: int = 5
    bootstrap: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.proxies) - {"supernet", *TRIVIAL})
        if unknown:
            raise ConfigError(f"proxies: unknown {', '.join(unknown)}; choose from supernet, {', '.join(TRIVIAL)}")
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
