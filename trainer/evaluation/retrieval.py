"""Image<->text retrieval recall at K, both directions.

Caption i describes image i. The rank of the correct item is the number of candidates with a
*strictly* higher similarity, so a correct item tied with others counts as ranked first among
them. This makes the metric deterministic (no dependence on sort order) and slightly optimistic
under ties. Recalls are percentages in [0, 100].
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def correct_ranks(similarity: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """Per row, the number of entries scoring strictly higher than the entry at column `correct[row]`."""
    correct_scores = similarity.gather(1, correct.view(-1, 1))
    return (similarity > correct_scores).sum(dim=1)


def percent_within(ranks: torch.Tensor, k: int) -> float:
    """Percentage of ranks below `k` (counted exactly, not as a float32 mean)."""
    return 100.0 * int((ranks < k).sum()) / ranks.numel()


def _check_ks(ks: Sequence[int]) -> None:
    if not ks or any(not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"recall cut-offs must be positive integers, got {tuple(ks)!r}")


def recall_at_k(similarity: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """R@K from a square similarity matrix `[N images, N texts]` whose diagonal holds the true pairs.

    Returns `i2t_r{k}` (each image retrieves among all texts) and `t2i_r{k}` (each text retrieves
    among all images). A K above N is clipped to N, where recall is 100 by definition.
    """
    _check_ks(ks)
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1] or similarity.shape[0] == 0:
        raise ValueError(f"retrieval needs a non-empty square similarity matrix (pair i matches i), got shape {tuple(similarity.shape)}")
    n = similarity.shape[0]
    diagonal = torch.arange(n, device=similarity.device)
    ranks = {"i2t": correct_ranks(similarity, diagonal), "t2i": correct_ranks(similarity.t(), diagonal)}
    return {
        f"{direction}_r{k}": percent_within(rank, min(k, n))
        for direction, rank in ranks.items()
        for k in ks
    }


def retrieval_recall(
    image_features: torch.Tensor, text_features: torch.Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """R@K both ways from paired features `[N, D]` (row i of each is one pair), by cosine similarity."""
    if image_features.shape != text_features.shape or image_features.ndim != 2:
        raise ValueError(
            f"retrieval needs paired features of equal shape [N, D], got images {tuple(image_features.shape)} "
            f"and texts {tuple(text_features.shape)}"
        )
    image = F.normalize(image_features.float(), dim=-1)
    text = F.normalize(text_features.float(), dim=-1)
    return recall_at_k(image @ text.t(), ks)
