"""Units and chance levels of the evaluation metrics, so a table can say what a number means:
R@K of a random ranking over N pairs is 100 K / N percent; zero-shot top-1 over C classes is 100 / C;
a linear probe's floor is the majority class; the contrastive loss of uninformative features is
ln(batch size) nats per pair."""
from __future__ import annotations

import math
from typing import Any

import torch


def unit_of(key: str) -> str:
    if key.startswith(("retrieval/", "zeroshot/", "linear_probe/")):
        return "%"
    if key.endswith("loss"):
        return "nats"
    if key.startswith("nmi/"):
        return "0-1"
    return ""


def contrastive_chance(pairs: int, batch_size: int) -> float:
    """The contrastive loss of uninformative features on `pairs` pairs in fixed batches of `batch_size`,
    averaged per pair as `held_out_loss` does (a last batch of fewer than 2 pairs is dropped, as
    `materialize` does): ln(batch) for each pair of a batch."""
    sizes = [min(batch_size, pairs - start) for start in range(0, pairs, batch_size)]
    sizes = [s for s in sizes if s >= 2]
    if not sizes:
        raise ValueError(f"{pairs} pairs in batches of {batch_size} leave no batch of 2 or more pairs")
    return sum(s * math.log(s) for s in sizes) / sum(sizes)


def chance_levels(bundle: Any, heldout_batch_size: int = 128, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Chance level of every metric `evaluate` reports for `bundle` (NMI has none: it is 0 for
    modality-independent clusters and is left out)."""
    out: dict[str, float] = {}
    for pairs in bundle.val_pairs:
        n = pairs.images.shape[0]
        for direction in ("i2t", "t2i"):
            out.update({f"retrieval/{pairs.name}/{direction}_r{k}": 100.0 * min(k, n) / n for k in ks})
    for task in bundle.zeroshot:
        classes = len(task.classnames)
        out[f"zeroshot/{task.name}/top1"] = 100.0 / classes
        if classes >= 5:
            out[f"zeroshot/{task.name}/top5"] = 500.0 / classes
    for task in bundle.linear_probe:
        counts = torch.bincount(task.test_labels)
        out[f"linear_probe/{task.name}/acc"] = 100.0 * float(counts.max()) / int(counts.sum())
    heldout = getattr(bundle, "heldout", None)  # optional: bundles without held-out pairs need not carry it
    if heldout is not None:
        out[f"heldout/{getattr(bundle, 'heldout_name', 'shapes')}/loss"] = contrastive_chance(len(heldout), heldout_batch_size)
    return out

