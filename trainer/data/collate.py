"""Batching that drops items whose image failed to decode (a dataset returns None for those)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

Item = tuple[torch.Tensor, torch.Tensor]


def collate_pairs(batch: Sequence[Optional[Item]]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Stack `(image, tokens)` items into `(images [B, 3, S, S], tokens [B, L], n_skipped)`.

    None items are dropped and counted in `n_skipped`. When every item failed, the result is an
    empty batch, `images` of shape [0, 3, 0, 0] and `tokens` of shape [0, 0]: check `len(images)`.
    """
    kept = [item for item in batch if item is not None]
    skipped = len(batch) - len(kept)
    if not kept:
        return torch.empty(0, 3, 0, 0), torch.empty(0, 0, dtype=torch.long), skipped
    images = torch.stack([image for image, _ in kept])
    tokens = torch.stack([tokens for _, tokens in kept])
    return images, tokens, skipped
