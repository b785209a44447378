"""All evaluation metrics of a model on a data bundle, as one flat dict for metrics.jsonl.

Keys (stable; `NAME` is the task's name):
- `retrieval/NAME/{i2t,t2i}_r{1,5,10}`: recall in percent, per held-out pair set;
- `zeroshot/NAME/top1` (and `top5` when the task has >= 5 classes): accuracy in percent;
- `linear_probe/NAME/acc`: logistic-regression test accuracy in percent;
- `heldout/NAME/loss`: the symmetric contrastive loss on the bundle's held-out pairs in fixed batches
  of `heldout_batch_size` (`shapes`: fresh generated pairs, when the data config asks for
  `heldout_shapes`; `real`: the held-out split of the real set);
- `nmi/layer_XX` (text-layer index, see `trainer.evaluation.nmi`) and `nmi/mean`: modality NMI in
  [0, 1] on the first `nmi_pairs` pairs of the first pair set; absent when the text and vision
  widths differ.
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from trainer.evaluation.features import encode_batched, evaluating, num_batches
from trainer.evaluation.heldout import held_out_loss, materialize
from trainer.evaluation.linear_probe import linear_probe
from trainer.evaluation.nmi import layerwise_nmi
from trainer.evaluation.precision import scoring_precision
from trainer.evaluation.retrieval import retrieval_recall
from trainer.evaluation.zeroshot import zero_shot_accuracy, zero_shot_batches

_BUNDLE_FIELDS = ("val_pairs", "zeroshot", "linear_probe")


def _total_batches(bundle: Any, batch_size: int, nmi_count: int) -> int:
    total = sum(2 * num_batches(p.images.shape[0], batch_size) for p in bundle.val_pairs)
    total += sum(zero_shot_batches(task, batch_size) for task in bundle.zeroshot)
    total += sum(
        num_batches(t.train_images.shape[0], batch_size) + num_batches(t.test_images.shape[0], batch_size)
        for t in bundle.linear_probe
    )
    return total + num_batches(nmi_count, batch_size)


def evaluate(
    model: nn.Module,
    bundle: Any,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    nmi_pairs: int = 32,
    probe_C: float = 1.0,
    seed: int = 0,
    progress: bool = True,
    heldout_batch_size: int = 128,
) -> dict[str, float]:
    """Run retrieval, zero-shot, linear probe and layer-wise NMI; see the module docstring for keys.

    `bundle` needs `val_pairs` (PairSet list), `zeroshot` (ZeroShotTask list) and `linear_probe`
    (LinearProbeTask list). The model runs in eval mode without autograd, at the scoring precision
    (`trainer.evaluation.precision`), and gets its previous train/eval mode back. The progress bar
    shows only when `progress` is set and stderr is a tty.
    """
    missing = [field for field in _BUNDLE_FIELDS if not hasattr(bundle, field)]
    if missing:
        raise TypeError(f"evaluation data lacks {', '.join(missing)}: pass a DataBundle with {', '.join(_BUNDLE_FIELDS)}")
    if nmi_pairs < 0:
        raise ValueError(f"nmi_pairs must be >= 0 (0 skips NMI), got {nmi_pairs}")
    nmi_set = bundle.val_pairs[0] if bundle.val_pairs and nmi_pairs else None
    nmi_count = min(nmi_pairs, nmi_set.images.shape[0]) if nmi_set is not None else 0
    metrics: dict[str, float] = {}
    bar = tqdm(
        total=_total_batches(bundle, batch_size, nmi_count),
        desc="evaluate",
        unit="batch",
        disable=not (progress and sys.stderr.isatty()),
    )
    with bar, evaluating(model), scoring_precision(device):
        for pairs in bundle.val_pairs:
            image = encode_batched(model.encode_image, pairs.images, batch_size, device, bar.update)
            text = encode_batched(model.encode_text, pairs.tokens, batch_size, device, bar.update)
            metrics.update({f"retrieval/{pairs.name}/{k}": v for k, v in retrieval_recall(image, text).items()})
        for task in bundle.zeroshot:
            accuracy = zero_shot_accuracy(model, task, model.size.context_length, device, batch_size, bar.update)
            metrics.update({f"zeroshot/{task.name}/{k}": v for k, v in accuracy.items()})
        for task in bundle.linear_probe:
            train = encode_batched(model.encode_image, task.train_images, batch_size, device, bar.update)
            test = encode_batched(model.encode_image, task.test_images, batch_size, device, bar.update)
            metrics[f"linear_probe/{task.name}/acc"] = linear_probe(
                train, task.train_labels, test, task.test_labels, C=probe_C, seed=seed
            )
        heldout = getattr(bundle, "heldout", None)  # optional: bundles without held-out pairs need not carry it
        if heldout is not None:
            metrics[f"heldout/{getattr(bundle, 'heldout_name', 'shapes')}/loss"] = held_out_loss(model, materialize(heldout, heldout_batch_size), device)
        if nmi_set is not None:
            scores = layerwise_nmi(
                model, nmi_set.images[:nmi_count], nmi_set.tokens[:nmi_count], seed, batch_size, device, bar.update
            )
            first = model.size.layers - len(scores)
            metrics.update({f"nmi/layer_{first + i:02d}": score for i, score in enumerate(scores)})
            if scores:
                metrics["nmi/mean"] = float(np.mean(scores))
    return metrics
