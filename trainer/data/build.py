"""`build_data`: one entry point from a `DataConfig` to the training splits and evaluation sets."""
from __future__ import annotations

import numpy as np

from .bundle import DataBundle
from .config import DataConfig
from .csv_source import build_csv
from .digits import build_digits
from .failures import DecodeFailures
from .pairs import ConcatPairs, SubsetPairs
from .realset.source import build_real
from .shapes import build_shapes, fresh_shapes
from .shards import build_webdataset

_BUILDERS = {"shapes": build_shapes, "digits": build_digits, "csv": build_csv, "webdataset": build_webdataset, "real": build_real}


def build_data(cfg: DataConfig, image_size: int, context_length: int) -> DataBundle:
    """Build every split of `cfg.source` (see `_build`), the training split cut to `cfg.train_fraction`."""
    bundle = _build(cfg, image_size, context_length)
    if cfg.train_fraction < 1.0:
        n = len(bundle.train)
        keep = max(1, round(n * cfg.train_fraction))
        bundle.train = SubsetPairs(bundle.train, sorted(np.random.default_rng(cfg.seed).permutation(n)[:keep].tolist()))
    return bundle


def _build(cfg: DataConfig, image_size: int, context_length: int) -> DataBundle:
    """Build every split of `cfg.source` for a model taking `image_size` px images and
    `context_length` tokens. "embedded" concatenates the shapes and digits splits and keeps the
    evaluation sets of both. Raises `DataError` for anything wrong with files, columns or shards."""
    if image_size < 8 or context_length < 4:
        raise ValueError(f"image_size must be >= 8 and context_length >= 4, got {image_size} and {context_length}")
    failures = DecodeFailures()
    heldout = fresh_shapes(cfg.heldout_shapes, cfg.heldout_seed, image_size, context_length) if cfg.heldout_shapes else None
    if cfg.source != "embedded":
        bundle = _BUILDERS[cfg.source](cfg, image_size, context_length, failures)
        if heldout is not None:
            bundle.heldout = heldout
        return bundle
    parts = [build_shapes(cfg, image_size, context_length, failures), build_digits(cfg, image_size, context_length, failures)]
    arch = [part.arch for part in parts if part.arch is not None]
    return DataBundle(
        train=ConcatPairs([part.train for part in parts]),
        arch=ConcatPairs(arch) if arch else None,
        val_pairs=[pairs for part in parts for pairs in part.val_pairs],
        zeroshot=[task for part in parts for task in part.zeroshot],
        linear_probe=[task for part in parts for task in part.linear_probe],
        decode_failures=failures,
        heldout=heldout,
    )
