"""Deterministic data order: which dataset items each process reads at each optimizer step.

The order is a function of (seed, epoch, step) only: epoch e shuffles all items with a permutation
seeded by (seed, e); step s takes the s-th slice of `global_batch` items; process r takes the r-th
contiguous part of it, split into `accum_steps` micro-batches. So a run resumed at (epoch, step)
reads exactly what the uninterrupted run would have read, and N processes together read exactly
the global batch of one process (the last incomplete global batch of an epoch is dropped).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

if TYPE_CHECKING:
    from trainer.config import TrainSection


class BatchPlan:
    """The split of a dataset of `size` items into global batches, per-process parts and micro-batches."""

    def __init__(self, size: int, global_batch: int, accum_steps: int, world_size: int, seed: int) -> None:
        if global_batch % (world_size * accum_steps):
            raise ValueError(
                f"train.batch_size {global_batch} is not divisible by processes x train.accum_steps "
                f"({world_size} x {accum_steps}); pick a multiple of {world_size * accum_steps}"
            )
        if size < global_batch:
            raise ValueError(
                f"the training split has {size} pairs, fewer than one global batch (train.batch_size={global_batch}); "
                "lower train.batch_size or add data"
            )
        self.size, self.global_batch, self.accum_steps = size, global_batch, accum_steps
        self.world_size, self.seed = world_size, seed
        self.steps_per_epoch = size // global_batch
        self.micro_batch = global_batch // (world_size * accum_steps)

    def order(self, epoch: int) -> np.ndarray:
        """The permutation of all items for `epoch`."""
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def micro_batches(self, epoch: int, step: int, rank: int) -> list[list[int]]:
        """The `accum_steps` index lists process `rank` reads at `step` of `epoch`."""
        return self._slice(self.order(epoch), step, rank)

    def _slice(self, order: np.ndarray, step: int, rank: int) -> list[list[int]]:
        part = self.global_batch // self.world_size
        start = step * self.global_batch + rank * part
        mine = order[start : start + part]
        m = self.micro_batch
        return [mine[j * m : (j + 1) * m].tolist() for j in range(self.accum_steps)]

    def sampler(self, epoch: int, start_step: int, rank: int) -> EpochSampler:
        return EpochSampler(self, epoch, start_step, rank)

    def loader(self, dataset: Dataset, epoch: int, start_step: int, rank: int, num_workers: int, pin_memory: bool) -> DataLoader:
        """The DataLoader of process `rank`'s micro-batches of `dataset` from `start_step` to the end of
        `epoch`, the one rule every training loop reads its data by. Its workers' seeds come from a
        generator seeded by (seed, the global step it starts at), not from the global one, so they are a
        function of the position and resuming does not shift any random stream."""
        from trainer.data import collate_pairs

        return DataLoader(
            dataset, batch_sampler=self.sampler(epoch, start_step, rank), collate_fn=collate_pairs,
            num_workers=num_workers, pin_memory=pin_memory,
            generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * self.steps_per_epoch + start_step),
        )


class EpochSampler(Sampler[list[int]]):
    """A DataLoader `batch_sampler` yielding one process's micro-batches from `start_step` to the end
    of `epoch` (accum_steps micro-batches per optimizer step)."""

    def __init__(self, plan: BatchPlan, epoch: int, start_step: int, rank: int) -> None:
        self.plan, self.epoch, self.start_step, self.rank = plan, epoch, start_step, rank

    def __len__(self) -> int:
        return (self.plan.steps_per_epoch - self.start_step) * self.plan.accum_steps

    def __iter__(self) -> Iterator[list[int]]:
        order = self.plan.order(self.epoch)
        for step in range(self.start_step, self.plan.steps_per_epoch):
            yield from self.plan._slice(order, step, self.rank)


def total_steps(train: "TrainSection", steps_per_epoch: int) -> int:
    """Optimizer steps of a run: `train.steps`, else `train.epochs` epochs."""
    return train.steps if train.steps is not None else train.epochs * steps_per_epoch
