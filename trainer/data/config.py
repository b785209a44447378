"""Typed configuration of the data sources (a flat dataclass of simple types, filled from YAML)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Source = Literal["embedded", "shapes", "digits", "csv", "webdataset", "real"]


@dataclass
class DataConfig:
    """Where image-caption pairs come from and how they are split. Every source is split
    deterministically by `seed`; the architecture split is disjoint from the training split."""

    source: Source = "embedded"
    """`embedded` mixes the generated shapes and the scikit-learn digits (no download); `shapes` /
    `digits` use one of them; `csv` reads `path` (one row per pair); `webdataset` reads uncompressed
    tar shards matching `path`; `real` reads the directory `path` that `sharenas data build` made from
    Debian's packages (its split is fixed by the build, so `val_fraction` does not apply)."""
    path: str | None = None
    """The CSV file, the shard pattern (brace expansion: "data/shard-{000..009}.tar") or the built
    real set; required by `csv`, `webdataset` and `real`."""
    image_root: str | None = None
    """CSV: the folder image paths are relative to; null: the CSV's folder."""
    image_column: str = "filepath"
    """CSV: the column holding the image path."""
    caption_column: str = "caption"
    """CSV: the column holding the caption."""
    separator: str = ","
    """CSV: the field separator (one character)."""
    num_shapes: int = 2000
    """Generated shape images before splitting."""
    digit_repeats: int = 2
    """Renderings of each training digit the train split holds."""
    shapes_zeroshot_per_class: int = 50
    """Images per held-out colour-shape combination in the `shapes` zero-shot task."""
    val_fraction: float = 0.2
    """Fraction of the pairs held out for evaluation."""
    arch_fraction: float = 0.1
    """Fraction of the pairs in the architecture split (the Gumbel search's gate steps)."""
    max_eval_images: int = 1000
    """Cap on every evaluation image set (they are held in memory as tensors)."""
    augment: bool = True
    """CSV, webdataset and real training images get timm's random-resized crop (scale 0.9-1.0, as
    open_clip trains); evaluation images and generated data are never augmented."""
    heldout_shapes: int = 0
    """> 0 adds that many freshly generated shapes pairs of the seen combinations, disjoint from every
    split, scored as the held-out contrastive loss `heldout/shapes/loss` (the ShareBench metric);
    embedded and shapes sources only."""
    heldout_seed: int = 123
    """The random stream of those held-out pairs."""
    seed: int = 0
    """Seed of the split and of the generated data."""
    train_fraction: float = 1.0
    """Train on this fraction of the training split: its first pairs in a fixed random order (`seed`),
    so a smaller fraction is a subset of a larger one (data-size studies)."""
    caption_augment: Literal["none", "keywords"] = "none"
    """`keywords` (source `real`): each epoch a random subset of every training caption's keywords (see
    `trainer.data.realset.captions`); `none`: the captions as written."""

    def __post_init__(self) -> None:
        sources = get_args(Source)
        if self.source not in sources:
            raise ValueError(f"data.source: unknown source {self.source!r}; choose one of {', '.join(sources)}")
        if self.source in ("csv", "webdataset", "real") and not self.path:
            raise ValueError(f"data.path: source {self.source!r} needs a path (a CSV file, a shard pattern or a built real set)")
        if len(self.separator) != 1:
            raise ValueError(f"data.separator: must be one character, got {self.separator!r}")
        for name in ("image_column", "caption_column"):
            if not getattr(self, name):
                raise ValueError(f"data.{name}: must be a non-empty column name")
        if self.source in ("embedded", "shapes") and self.num_shapes < 10:
            raise ValueError(f"data.num_shapes: need at least 10 generated shape images, got {self.num_shapes}")
        for name in ("digit_repeats", "shapes_zeroshot_per_class", "max_eval_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"data.{name}: must be at least 1, got {getattr(self, name)}")
        for name in ("val_fraction", "arch_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"data.{name}: must be in [0, 1), got {value}")
        if self.heldout_shapes < 0 or self.heldout_shapes == 1:
            raise ValueError(f"data.heldout_shapes: 0 (off) or at least 2 pairs, got {self.heldout_shapes}")
        if self.heldout_shapes and self.source not in ("embedded", "shapes"):
            raise ValueError(f"data.heldout_shapes: generated held-out pairs need source embedded or shapes, not {self.source!r}; set it to 0")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"data.train_fraction: must be in (0, 1], got {self.train_fraction}")
        if self.caption_augment not in ("none", "keywords"):
            raise ValueError(f"data.caption_augment: {self.caption_augment!r} is not one of none, keywords")
        if self.caption_augment == "keywords" and self.source != "real":
            raise ValueError(f"data.caption_augment: keywords reads the real set's caption grammar; source {self.source!r} has none (set none)")
        if self.val_fraction <= 0.0:
            raise ValueError("data.val_fraction: must be > 0; evaluation needs held-out pairs")
        if self.val_fraction + self.arch_fraction >= 0.9:
            raise ValueError(
                f"data.val_fraction + data.arch_fraction = {self.val_fraction + self.arch_fraction:.2f} leaves "
                "too little for training; keep their sum below 0.9"
            )
