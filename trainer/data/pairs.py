"""Map-style image-caption datasets: the shared interface, subsets, concatenation, splitting and
turning held-out items into evaluation tensors."""
from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .collate import Item
from .errors import DataError
from .tasks import PairSet
from .text import tokenize


class PairDataset(Dataset, ABC):
    """Item i is `(image FloatTensor[3, S, S], tokens LongTensor[L])`, or None when the image fails
    to decode; `caption(i)` is its text without decoding the image. Item i is the same every time it
    is read, except in `augmented()` copies, whose random crops draw from Python's generator (timm;
    its state is checkpointed, so a trainer still resumes mid-epoch exactly)."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, index: int) -> Optional[Item]: ...

    @abstractmethod
    def caption(self, index: int) -> str: ...

    def augmented(self) -> "PairDataset":
        """These pairs with the training augmentation; sources without one (generated data) return self."""
        return self

    def set_epoch(self, seed: int, epoch: int) -> None:
        """Tell an augmentation that draws per epoch (caption keyword subsets) which run and epoch
        follows; the trainer calls it before each epoch's loader. Datasets without one ignore it."""


class SubsetPairs(PairDataset):
    """The items of `base` at `indices`, in that order."""

    def __init__(self, base: PairDataset, indices: Sequence[int]) -> None:
        self.base = base
        self.indices = [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Optional[Item]:
        return self.base[self.indices[index]]

    def caption(self, index: int) -> str:
        return self.base.caption(self.indices[index])

    def set_epoch(self, seed: int, epoch: int) -> None:
        self.base.set_epoch(seed, epoch)


class ConcatPairs(PairDataset):
    """Several datasets one after the other."""

    def __init__(self, parts: Sequence[PairDataset]) -> None:
        self.parts = list(parts)
        self._ends = np.cumsum([len(part) for part in self.parts]).tolist()

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def _locate(self, index: int) -> tuple[PairDataset, int]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        part = bisect.bisect_right(self._ends, index)
        start = self._ends[part - 1] if part else 0
        return self.parts[part], index - start

    def __getitem__(self, index: int) -> Optional[Item]:
        part, local = self._locate(index)
        return part[local]

    def caption(self, index: int) -> str:
        part, local = self._locate(index)
        return part.caption(local)

    def set_epoch(self, seed: int, epoch: int) -> None:
        for part in self.parts:
            part.set_epoch(seed, epoch)


def split_indices(n: int, val_fraction: float, arch_fraction: float, seed: int) -> tuple[list[int], list[int], list[int]]:
    """Shuffle 0..n-1 with `seed` and cut it into (train, arch, val); val gets at least one item."""
    order = np.random.default_rng(seed).permutation(n).tolist()
    n_val = max(1, round(n * val_fraction))
    n_arch = round(n * arch_fraction)
    if n - n_val - n_arch < 1:
        raise DataError(f"{n} pairs are too few to split into train, arch and val; add data or lower the fractions")
    val, arch, train = order[:n_val], order[n_val:n_val + n_arch], order[n_val + n_arch:]
    return sorted(train), sorted(arch), sorted(val)


def materialize_pairs(name: str, dataset: PairDataset, indices: Sequence[int], context_length: int) -> PairSet:
    """Decode `dataset[indices]` into a retrieval set; items that fail to decode are left out (and
    counted by the dataset)."""
    images, captions = [], []
    for index in indices:
        item = dataset[index]
        if item is not None:
            images.append(item[0])
            captions.append(dataset.caption(index))
    if not images:
        raise DataError(f"evaluation set {name!r}: none of its {len(indices)} images could be decoded")
    return PairSet(name=name, images=torch.stack(images), tokens=tokenize(captions, context_length), captions=tuple(captions))
