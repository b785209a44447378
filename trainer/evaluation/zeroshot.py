"""Zero-shot classification with CLIP's prompt ensemble.

Accuracies are percentages in [0, 100]. A prediction is in the top K when fewer than K classes
score strictly higher than the true class (ties resolve in the true class's favour, as in
retrieval), which keeps the metric independent of sort order.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trainer.data.tasks import ZeroShotTask
from trainer.data.text import tokenize
from trainer.evaluation.features import BatchCallback, encode_batched, evaluating, num_batches
from trainer.evaluation.retrieval import correct_ranks, percent_within


def zero_shot_batches(task: ZeroShotTask, batch_size: int) -> int:
    """Encoder batches `zero_shot_accuracy` runs for `task` (prompts plus images), for progress totals."""
    prompts = len(task.classnames) * len(task.templates)
    return num_batches(prompts, batch_size) + num_batches(task.images.shape[0], batch_size)


def zero_shot_classifier(
    model: nn.Module,
    classnames: tuple[str, ...] | list[str],
    templates: tuple[str, ...] | list[str],
    context_length: int,
    device: torch.device | str,
    batch_size: int = 256,
    on_batch: BatchCallback | None = None,
) -> torch.Tensor:
    """Class embeddings `[D, C]`: per class, the mean of the L2-normalized embeddings of every
    template filled with the class name, renormalized (fp32, CPU)."""
    if not classnames:
        raise ValueError("zero-shot classification needs at least one class name")
    if not templates or any("{}" not in t for t in templates):
        raise ValueError("zero-shot templates must be non-empty format strings with one '{}' for the class name")
    prompts = [template.format(name) for name in classnames for template in templates]
    tokens = tokenize(prompts, context_length)
    with evaluating(model):
        embeddings = encode_batched(model.encode_text, tokens, batch_size, device, on_batch)
    per_class = F.normalize(embeddings, dim=-1).view(len(classnames), len(templates), -1)
    return F.normalize(per_class.mean(dim=1), dim=-1).t().contiguous()


def zero_shot_accuracy(
    model: nn.Module,
    task: ZeroShotTask,
    context_length: int,
    device: torch.device | str,
    batch_size: int = 256,
    on_batch: BatchCallback | None = None,
) -> dict[str, float]:
    """`top1` accuracy of `task`, plus `top5` when the task has at least five classes."""
    labels = task.labels.long().cpu()
    if labels.numel() and (labels.min() < 0 or labels.max() >= len(task.classnames)):
        raise ValueError(f"zero-shot task {task.name!r}: labels must lie in [0, {len(task.classnames)}), one per class name")
    classifier = zero_shot_classifier(
        model, task.classnames, task.templates, context_length, device, batch_size, on_batch
    )
    with evaluating(model):
        image_features = encode_batched(model.encode_image, task.images, batch_size, device, on_batch)
    if image_features.shape[1] != classifier.shape[0]:
        raise ValueError(
            f"zero-shot task {task.name!r}: image embedding dim {image_features.shape[1]} differs from text embedding dim {classifier.shape[0]}"
        )
    ranks = correct_ranks(F.normalize(image_features, dim=-1) @ classifier, labels)
    result = {"top1": percent_within(ranks, 1)}
    if len(task.classnames) >= 5:
        result["top5"] = percent_within(ranks, 5)
    return result
