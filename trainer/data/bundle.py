"""What `build_data` hands the trainer: the training splits and every evaluation set."""
from __future__ import annotations

from dataclasses import dataclass, field

from .config import DataConfig
from .failures import DecodeFailures
from .pairs import PairDataset, SubsetPairs, materialize_pairs, split_indices
from .tasks import LinearProbeTask, PairSet, ZeroShotTask


@dataclass
class DataBundle:
    """`train` and `arch` are disjoint map-style datasets (arch feeds an architecture search's
    held-out updates; None when `arch_fraction` is 0). The evaluation sets hold images never in
    `train` or `arch`; `heldout` (fresh generated pairs of the synthetic sources, the fixed held-out
    split of `real`, or None) scores the held-out loss. `decode_failures` counts the images this
    process skipped."""

    train: PairDataset
    arch: PairDataset | None
    val_pairs: list[PairSet] = field(default_factory=list)
    zeroshot: list[ZeroShotTask] = field(default_factory=list)
    linear_probe: list[LinearProbeTask] = field(default_factory=list)
    decode_failures: DecodeFailures = field(default_factory=DecodeFailures)
    heldout: PairDataset | None = None
    heldout_name: str = "shapes"
    """Names the held-out loss metric: `heldout/{heldout_name}/loss`."""


def split_user_pairs(dataset: PairDataset, cfg: DataConfig, context_length: int, failures: DecodeFailures) -> DataBundle:
    """Train / arch / retrieval splits of user data (CSV or shards); no zero-shot tasks (classes unknown)."""
    train, arch, val = split_indices(len(dataset), cfg.val_fraction, cfg.arch_fraction, cfg.seed)
    return DataBundle(
        train=SubsetPairs(dataset.augmented() if cfg.augment else dataset, train),
        arch=SubsetPairs(dataset, arch) if arch else None,
        val_pairs=[materialize_pairs("val", dataset, val[: cfg.max_eval_images], context_length)],
        decode_failures=failures,
    )
