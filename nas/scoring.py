"""Scoring a model on held-out data: the contrastive loss on fixed held-out batches and the mean
zero-shot top-1. Used for the supernet with inherited weights (one fixed path at a time) and for
standalone models alike, so both sides of a ranking comparison are measured the same way, at the
scoring precision (`trainer.evaluation.precision`).

The loss has one name per data it is measured on: `val_loss` on a bench's held-out pairs (as the
bench records it), `arch_val_loss` on a search's architecture split (what the Gumbel search's
derivation and sweep record)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from trainer.data import DataBundle
from trainer.evaluation import zero_shot_accuracy
from trainer.evaluation.heldout import Batches, held_out_loss, materialize
from trainer.evaluation.precision import scoring_precision

__all__ = ["ARCH_VAL_LOSS", "VAL_LOSS", "Batches", "Scorer", "has_batch_norm", "held_out_loss", "materialize", "recalibrate_batch_norm"]
VAL_LOSS = "val_loss"
"""The contrastive loss on a bench's held-out pairs."""
ARCH_VAL_LOSS = "arch_val_loss"
"""The contrastive loss on a search's architecture split."""


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def recalibrate_batch_norm(model: nn.Module, batches: Batches, device: torch.device) -> None:
    """Re-estimate every BatchNorm's running statistics as the plain average over `batches` of the
    current path (a supernet's BN statistics mix the paths they were trained under)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    try:
        with torch.no_grad():
            for images, tokens in batches:
                model(images.to(device), tokens.to(device))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)


@dataclass
class Scorer:
    """Scores models on fixed held-out batches. `loss` names their loss in what `measure` returns
    (`VAL_LOSS` or `ARCH_VAL_LOSS`, as the batches are a bench's held-out pairs or a search's
    architecture split); `score` is "higher is better": the negated loss, or the zero-shot top-1
    with `by_zeroshot`."""

    bundle: DataBundle
    held_out: Batches
    device: torch.device
    loss: str = VAL_LOSS
    by_zeroshot: bool = False
    calibration: Batches | None = None
    context_length: int = 32

    def __post_init__(self) -> None:
        if self.loss not in (VAL_LOSS, ARCH_VAL_LOSS):
            raise ValueError(f"unknown loss name {self.loss!r}; choose {VAL_LOSS} or {ARCH_VAL_LOSS}")
        if self.by_zeroshot and not self.bundle.zeroshot:
            raise ValueError("metric zeroshot: the data has no zero-shot tasks; use val_loss")

    def zeroshot(self, model: nn.Module) -> float:
        if not self.bundle.zeroshot:
            return float("nan")
        accuracies = [
            zero_shot_accuracy(model, task, self.context_length, self.device, batch_size=256)["top1"] for task in self.bundle.zeroshot
        ]
        return sum(accuracies) / len(accuracies)

    def measure(self, model: nn.Module, recalibrate: bool = False, zeroshot: bool = True) -> dict[str, float]:
        """The loss (under its name), the zero-shot top-1 and `score`; `zeroshot` False: the loss
        alone (zero-shot NaN), a fraction of the cost."""
        with scoring_precision(self.device):
            if recalibrate and self.calibration and has_batch_norm(model):
                recalibrate_batch_norm(model, self.calibration, self.device)
            result = {self.loss: held_out_loss(model, self.held_out, self.device), "zeroshot": self.zeroshot(model) if zeroshot else float("nan")}
        result["score"] = result["zeroshot"] if self.by_zeroshot else -result[self.loss]
        return result
