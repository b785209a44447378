"""Evaluation task containers shared by the datasets and the evaluation code."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ZeroShotTask:
    """A labelled image set scored by matching images against prompt-ensembled class names.

    `templates` are format strings with one `{}` for the class name; the class embedding is the
    normalized mean of the normalized embeddings of all templates (CLIP's prompt ensemble).
    """

    name: str
    images: torch.Tensor  # [N, 3, S, S], already normalized for the model
    labels: torch.Tensor  # [N] int64 in [0, len(classnames))
    classnames: tuple[str, ...]
    templates: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.shape[0] != self.labels.shape[0]:
            raise ValueError(f"zero-shot task {self.name!r}: {self.images.shape[0]} images but {self.labels.shape[0]} labels")
        if not self.templates or any("{}" not in t for t in self.templates):
            raise ValueError(f"zero-shot task {self.name!r}: every template needs one '{{}}' for the class name")


@dataclass(frozen=True)
class PairSet:
    """Held-out image-caption pairs for retrieval: caption i describes image i."""

    name: str
    images: torch.Tensor  # [N, 3, S, S]
    tokens: torch.Tensor  # [N, context_length] int64
    captions: tuple[str, ...]


@dataclass(frozen=True)
class LinearProbeTask:
    """Labelled images for a logistic-regression probe on frozen image features: fit on the train
    images, report accuracy on the test images (held out from contrastive training too)."""

    name: str
    train_images: torch.Tensor  # [N, 3, S, S]
    train_labels: torch.Tensor  # [N] int64
    test_images: torch.Tensor  # [M, 3, S, S]
    test_labels: torch.Tensor  # [M] int64
    classnames: tuple[str, ...]

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.shape[0] != labels.shape[0]:
                raise ValueError(f"linear-probe task {self.name!r}: {images.shape[0]} {split} images but {labels.shape[0]} labels")
