"""What `build_data` hands the trainer: the training splits and every evaluation set."""
from __future__ import annotations

from dataclasses import dataclass, field

from .failures import DecodeFailures
from .pairs import PairDataset
from .tasks import LinearProbeTask, PairSet, ZeroShotTask


@dataclass
class DataBundle:
    """`train` and `arch` are disjoint map-style datasets (arch feeds an architecture search's
    held-out updates; None when `arch_fraction` is 0). The evaluation sets hold images never in
    `train` or `arch`. `decode_failures` counts the images this process skipped."""

    train: PairDataset
    arch: PairDataset | None
    val_pairs: list[PairSet] = field(default_factory=list)
    zeroshot: list[ZeroShotTask] = field(default_factory=list)
    linear_probe: list[LinearProbeTask] = field(default_factory=list)
    decode_failures: DecodeFailures = field(default_factory=DecodeFailures)
