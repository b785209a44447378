"""The contrastive loss on fixed held-out batches: a continuous, low-noise score of a model (the ranking
metric of ShareBench and of short search trials; recall among thousands of candidates is too coarse)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trainer.data.collate import collate_pairs
from trainer.data.pairs import PairDataset
from trainer.evaluation.features import evaluating
from trainer.evaluation.precision import scoring_precision
from trainer.loss import contrastive_loss

Batches = list[tuple[torch.Tensor, torch.Tensor]]


def materialize(dataset: PairDataset, batch_size: int, limit: int | None = None, seed: int = 0) -> Batches:
    """`limit` (default all) items of `dataset` in a fixed random order (`seed`), as batches; a
    dataset made of parts (e.g. shapes then digits) thus gives batches that mix them, as training
    batches do. A last batch of fewer than 2 pairs is dropped: a contrastive loss needs negatives."""
    order = np.random.default_rng(seed).permutation(len(dataset))[: len(dataset) if limit is None else limit].tolist()
    batches = []
    for start in range(0, len(order), batch_size):
        images, tokens, _ = collate_pairs([dataset[i] for i in order[start : start + batch_size]])
        if images.shape[0] >= 2:
            batches.append((images, tokens))
    if not batches:
        raise ValueError(f"the held-out split has {len(order)} usable pairs; scoring needs at least 2")
    return batches


def held_out_loss(model: nn.Module, batches: Batches, device: torch.device | str) -> float:
    """The symmetric contrastive loss over fixed batches, averaged per pair (eval mode, no autograd,
    at the scoring precision)."""
    total, rows = 0.0, 0
    with evaluating(model), scoring_precision(device):
        for images, tokens in batches:
            image, text, scale = model(images.to(device), tokens.to(device))
            total += float(contrastive_loss(image.float(), text.float(), scale.float())) * images.shape[0]
            rows += images.shape[0]
    return total / rows
