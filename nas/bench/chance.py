"""Chance levels of a bench's metrics (what uninformative features score), computed, so a table says
what its numbers mean for the bench it shows: the held-out loss from the bench's held-out pairs and
batch size, every other metric from the trainer's chance levels of the recipe's evaluation data
(trainer/evaluation/chance.py)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from trainer.evaluation.chance import chance_levels, contrastive_chance
from trainer.typed_config import ConfigError, config_diff

from nas.bench.config import BenchConfig, HeldOutSection, load_bench_config, metric_sources

HELD_OUT = "val_loss"
"""Where an entry record keeps the bench's own held-out loss; `metrics.KEY` is the trainer's metric KEY."""


def column_chance(
    sources: Mapping[str, str], heldout: HeldOutSection | None, trainer: Mapping[str, float], known: Mapping[str, float | None] | None = None,
    heldout_pairs: int | None = None,
) -> dict[str, float | None]:
    """Column -> chance level. `sources`: column -> where its value comes from in an entry record;
    `trainer`: the trainer's chance levels by metric key; `known`: levels recorded before, kept where
    these give none (None where nothing does). `heldout_pairs`: how many pairs the entries scored
    (what a bench on its data's own held-out split records)."""
    out: dict[str, float | None] = {}
    for column, source in sources.items():
        if source == HELD_OUT:
            pairs = None if heldout is None else heldout.pairs if heldout.source == "shapes" else heldout_pairs
            value = contrastive_chance(pairs, heldout.batch_size) if pairs else None
        else:
            parts = [trainer.get(part.removeprefix("metrics.")) for part in metric_sources(source)]
            value = sum(parts) / len(parts) if None not in parts else None
        out[column] = value if value is not None else (known or {}).get(column)
    return out


def recipe_chance(config: str | Path, built_with: BenchConfig | None) -> dict[str, float]:
    """The trainer's chance levels of the evaluation data of the bench config's recipe (building the data
    takes seconds); refused when the config is not the one the bench was built with."""
    from search_spaces import get_size
    from trainer.data import build_data

    bench = load_bench_config(config)
    differ = config_diff(bench.cfg, built_with) if built_with is not None else []
    if differ:
        raise ConfigError(f"{config} differs from the config the bench was built with in {', '.join(differ)}; give the config it was built with")
    size = get_size(bench.recipe.model.size)
    bundle = build_data(bench.recipe.data, size.image_size, size.context_length)
    return chance_levels(bundle, bench.recipe.eval.heldout_batch_size)
