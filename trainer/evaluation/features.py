"""Batched, gradient-free feature extraction shared by the evaluation metrics."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

BatchCallback = Callable[[int], object]
"""Called with 1 after every encoded batch (e.g. `tqdm.update`)."""


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode without autograd; restore its previous train/eval mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def num_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


def encode_batched(
    encode: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    batch_size: int,
    device: torch.device | str,
    on_batch: BatchCallback | None = None,
) -> torch.Tensor:
    """Apply `encode` to `inputs` in batches on `device`; fp32 results on the CPU, concatenated."""
    if inputs.shape[0] == 0:
        raise ValueError("cannot evaluate on an empty input set: the task has no examples")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    outputs = []
    for start in range(0, inputs.shape[0], batch_size):
        outputs.append(encode(inputs[start : start + batch_size].to(device)).float().cpu())
        if on_batch is not None:
            on_batch(1)
    return torch.cat(outputs)
