"""How every config that trains is composed, one rule for every command.

A config that trains holds the trainer's sections (`model`, `data`, `optim`, `train`, `eval`: those of
`trainer.config.TrainConfig`) itself, written over the training YAML its `recipe:` key names (relative
to the config's file; a recipe may name its own), merged key by key; `--set KEY=VALUE` then sets a key
of the composed config. So `--set train.epochs=2` is the trainer's epochs in `sharenas train`, every
search, `bench build` and `tune`. `trainer.typed_config.load_config` applies the rule; this module holds
what it needs besides the loader:

- `TrainerSections`: the sections as partial mappings, for a config that keeps what it sets over the
  training configs it runs (a bench over its recipe, which it keeps by name so that its tables stay
  comparable; the rank check, the per-compute study and Tune over every config they train with);
- `old_spelling`: the two spellings this rule replaced, still read, so configs, bench tables and bench
  directories written before keep loading.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

TRAINER_SECTIONS = ("model", "data", "optim", "train", "eval")
"""The sections of a training config: what a recipe holds and what `--set` reaches in every command."""
RECIPE = "recipe"
"""The key that names a config's recipe, the training YAML its sections are written over."""

OldSpelling = Literal["train-base", "train-path"]
OLD_SPELLINGS: dict[str, str] = {
    "train-base": "`train: {base: RECIPE, SECTION: {...}}` is the old spelling of `recipe: RECIPE` with the sections at the top level",
    "train-path": "`train: RECIPE` with `train_overrides: [KEY=VALUE, ...]` is the old spelling of `recipe: RECIPE` with those keys "
                  "in the sections at the top level",
}
"""What each old spelling was, by the name a config class gives its own in `OLD_SPELLING` (the Optuna
search config's, the bench config's)."""


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`update` written over `base` key by key: nested mappings merge, any other value replaces."""
    out = dict(base)
    for key, value in update.items():
        out[key] = merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
    return out


def old_spelling(raw: dict[str, Any], spelling: OldSpelling | None) -> tuple[dict[str, Any], list[str]] | None:
    """`raw` in the new spelling, with the `--set` overrides the old one listed (applied before any other),
    when `raw` uses `spelling`, the old spelling of its class; None when it does not."""
    train, overrides = raw.get("train"), raw.get("train_overrides")
    if spelling == "train-base" and isinstance(train, Mapping) and (not train or set(train) & {"base", *TRAINER_SECTIONS}):
        lifted = {k: v for k, v in train.items() if k != "base"} | ({RECIPE: train["base"]} if "base" in train else {})
        return merge(lifted, {k: v for k, v in raw.items() if k != "train"}), []
    listed = isinstance(overrides, list) and all(isinstance(o, str) for o in overrides)
    renamed = isinstance(train, str) and RECIPE not in raw
    if spelling == "train-path" and (renamed or listed):
        new = {RECIPE if k == "train" and renamed else k: v for k, v in raw.items() if not (k == "train_overrides" and listed)}
        return new, list(overrides) if listed else []
    return None


def _leaves(value: Mapping[str, Any], prefix: str) -> list[str]:
    out = []
    for key, item in value.items():
        out += _leaves(item, f"{prefix}{key}.") if isinstance(item, Mapping) and item else [f"{prefix}{key}={json.dumps(item)}"]
    return out


@dataclass
class TrainerSections:
    """The trainer's sections as partial mappings: only the keys a config sets over the training configs it
    runs (checked against `TrainConfig` where they are applied)."""

    model: dict[str, Any] = field(default_factory=dict)
    """Keys of the trainer's `model` section set over the recipe (a bench) or over every config the command trains with."""
    data: dict[str, Any] = field(default_factory=dict)
    """Keys of the trainer's `data` section set the same way (e.g. `path: data/real-plus`)."""
    optim: dict[str, Any] = field(default_factory=dict)
    """Keys of the trainer's `optim` section set the same way (e.g. `schedule: wsd`)."""
    train: dict[str, Any] = field(default_factory=dict)
    """Keys of the trainer's `train` section set the same way (e.g. `epochs: 24`, or `--set train.epochs=24`)."""
    eval: dict[str, Any] = field(default_factory=dict)
    """Keys of the trainer's `eval` section set the same way (e.g. `every_epochs: null`)."""

    def sets(self, cls: type | None = None) -> list[str]:
        """These keys as `--set` overrides (`train.epochs=24`) of a config that trains: of the sections the
        config class `cls` holds (a search's size is its own, so it takes no `model`), or all of them."""
        held = TRAINER_SECTIONS if cls is None else [f.name for f in fields(cls) if f.name in TRAINER_SECTIONS]
        return [item for name in held for item in _leaves(getattr(self, name), f"{name}.")]
