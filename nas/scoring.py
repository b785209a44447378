"""Scoring a model on held-out data: the contrastive loss on the architecture split and the mean
zero-shot top-1. Used for the supernet with inherited weights (one fixed path at a time) and for
standalone models alike, so both sides of a ranking comparison are measured the same way, at the
scoring precision (`trainer.evaluation.precision`)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from trainer.data import DataBundle
from trainer.evaluation import zero_shot_accuracy
from trainer.evaluation.heldout import Batches, held_out_loss, materialize
from trainer.evaluation.precision import scoring_precision

__all__ = ["Batches", "Scorer", "has_batch_norm", "held_out_loss", "materialize", "recalibrate_batch_norm"]
METRICS = ("val_loss", "zeroshot")


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
    """Scores models on fixed held-out batches. `score` is "higher is better" for either metric
    (the negated loss for `val_loss`)."""

    bundle: DataBundle
    held_out: Batches
    device: torch.device
    metric: str = "val_loss"
    calibration: Batches | None = None
    context_length: int = 32

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; choose {' or '.join(METRICS)}")
        if self.metric == "zeroshot" and not self.bundle.zeroshot:
            raise ValueError("metric zeroshot: the data has no zero-shot tasks; use val_loss")

    def val_loss(self, model: nn.Module) -> float:
        return held_out_loss(model, self.held_out, self.device)

    def zeroshot(self, model: nn.Module) -> float:
        if not self.bundle.zeroshot:
            return float("nan")
        accuracies = [
            zero_shot_accuracy(model, task, self.context_length, self.device, batch_size=256)["top1"] for task in self.bundle.zeroshot
        ]
        return sum(accuracies) / len(accuracies)

    def measure(self, model: nn.Module, recalibrate: bool = False, zeroshot: bool = True) -> dict[str, float]:
        """Both metrics plus `score` (the configured one, higher is better); `zeroshot` False: the
        held-out loss alone (zero-shot NaN), a fraction of the cost."""
        with scoring_precision(self.device):
            if recalibrate and self.calibration and has_batch_norm(model):
                recalibrate_batch_norm(model, self.calibration, self.device)
            result = {"val_loss": self.val_loss(model), "zeroshot": self.zeroshot(model) if zeroshot else float("nan")}
        result["score"] = -result["val_loss"] if self.metric == "val_loss" else result["zeroshot"]
        return result
