"""Layer-wise modality NMI (MS-CLIP Sec. 3.2 and Table 5; Cao et al., 2020).

For each image-caption pair, K-means (K=2) clusters the image's token vectors together with the
caption's token vectors at one layer; the NMI between the cluster ids and the modality labels
measures how separable the modalities are (higher = less fusion). Scores are in [0, 1], averaged
over pairs.

Layer pairing: the towers are paired by index from the *end*. With early specialization the
conv stem replaces the first vision layer, so the vision tower runs one layer fewer than the text
tower; its layers then meet text layers 1..11 and text layer 0 gets no score. Entry i of
`layerwise_nmi`'s result belongs to text layer `n_text_layers - len(result) + i`.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import normalized_mutual_info_score
from threadpoolctl import threadpool_limits
from torch import nn

from trainer.evaluation.features import BatchCallback, evaluating

KMEANS_N_INIT = 5


def _pair_nmi(image: torch.Tensor, text: torch.Tensor, seed: int) -> float:
    points = torch.cat([image, text]).detach().cpu().double().numpy()
    modality = np.repeat([0, 1], [image.shape[0], text.shape[0]])
    with warnings.catch_warnings():
        # Identical token vectors (e.g. a collapsed layer) leave fewer than 2 distinct clusters.
        warnings.simplefilter("ignore", ConvergenceWarning)
        clusters = KMeans(n_clusters=2, n_init=KMEANS_N_INIT, random_state=seed).fit_predict(points)
    return float(normalized_mutual_info_score(modality, clusters))


def modality_nmi(image_tokens: list[torch.Tensor], text_tokens: list[torch.Tensor], seed: int = 0) -> float:
    """Mean over pairs of NMI(K-means K=2 clusters, modality) on pair j's `[T_j, W]` image token
    vectors stacked with its `[L_j, W]` text token vectors (valid tokens only)."""
    if len(image_tokens) != len(text_tokens) or not image_tokens:
        raise ValueError(
            f"modality NMI needs one text token set per image token set and at least one pair, got {len(image_tokens)} and {len(text_tokens)}"
        )
    for image, text in zip(image_tokens, text_tokens):
        if image.ndim != 2 or text.ndim != 2 or image.shape[1] != text.shape[1] or not image.shape[0] or not text.shape[0]:
            raise ValueError(
                f"modality NMI needs non-empty [tokens, width] sets of equal width per pair, got {tuple(image.shape)} and {tuple(text.shape)}"
            )
    # One K-means over a few dozen points: OpenMP thread start-up costs ~10x the work itself.
    with threadpool_limits(limits=1, user_api="openmp"):
        scores = [_pair_nmi(image, text, seed) for image, text in zip(image_tokens, text_tokens)]
    return float(np.mean(scores))


def layerwise_nmi(
    model: nn.Module,
    images: torch.Tensor,
    tokens: torch.Tensor,
    seed: int = 0,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    on_batch: BatchCallback | None = None,
) -> list[float]:
    """Modality NMI per layer pair (paired from the last layer backwards, see the module docstring)
    over the image-caption pairs `images[j]`, `tokens[j]`.

    Each caption contributes its tokens up to and including the end-of-text token (the argmax of
    its token ids). Returns an empty list when the text width differs from the vision width, since
    the clusters then cannot be formed.
    """
    if images.shape[0] != tokens.shape[0] or images.shape[0] == 0:
        raise ValueError(f"layer-wise NMI needs one caption per image and at least one pair, got {images.shape[0]} images and {tokens.shape[0]} captions")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    totals: list[float] = []
    with evaluating(model):
        for start in range(0, images.shape[0], batch_size):
            batch_tokens = tokens[start : start + batch_size]
            vision = model.image_layers(images[start : start + batch_size].to(device))
            text = model.text_layers(batch_tokens.to(device))
            if on_batch is not None:
                on_batch(1)
            if vision[0].shape[-1] != text[0].shape[-1]:
                return []
            depth = min(len(vision), len(text))
            totals = totals or [0.0] * depth
            lengths = (batch_tokens.argmax(dim=-1) + 1).tolist()
            for layer, (v, t) in enumerate(zip(vision[-depth:], text[-depth:])):
                captions = [t[j, :length].float() for j, length in enumerate(lengths)]
                totals[layer] += len(lengths) * modality_nmi(list(v.float()), captions, seed)
    return [total / images.shape[0] for total in totals]
