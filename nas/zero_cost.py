"""Data-dependent zero-cost proxies of a sharing policy: scores of the freshly initialized model from
one minibatch of training pairs, with no training (Abdelfattah et al., "Zero-Cost Proxies for
Lightweight NAS", ICLR 2021):

- `grad_norm`: the sum over weight tensors of the Euclidean norm of the gradient of the loss;
- `snip`: the sum over weights of |w * dL/dw| (SNIP's connection sensitivity, Lee et al. 2019).

The loss is the training loss (the symmetric contrastive loss) on `batch_size` pairs of the recipe's
training split; weight tensors are every parameter with two or more dimensions (linear and attention
projections, conv kernels, embeddings), each counted once however many towers use it. Higher is
better, as the paper uses them. Each score is the mean over `seeds`: seed s initializes the model
with `torch.manual_seed(s)` and draws the batch with seed s.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from search_spaces import SharingPolicy, build_model
from trainer.data import build_data
from trainer.evaluation.heldout import materialize
from trainer.evaluation.precision import scoring_precision
from trainer.loss import contrastive_loss
from trainer.typed_config import ConfigError

ZERO_COST = ("grad_norm", "snip")
"""The zero-cost proxies, by name."""


@dataclass(frozen=True)
class ZeroCostScores:
    """The zero-cost proxies of one policy (mean over seeds) and the CPU seconds of this process they took."""

    grad_norm: float
    snip: float
    cpu_seconds: float

    def value(self, proxy: str) -> float:
        if proxy not in ZERO_COST:
            raise ConfigError(f"unknown zero-cost proxy {proxy!r}; choose from {', '.join(ZERO_COST)}")
        return float(getattr(self, proxy))


def batch_scores(model: nn.Module, images: torch.Tensor, tokens: torch.Tensor, device: torch.device) -> dict[str, float]:
    """`grad_norm` and `snip` of `model` on one batch (the model's `.grad` is left untouched)."""
    weights = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    model.train()
    with scoring_precision(device):
        image, text, scale = model(images.to(device), tokens.to(device))
        loss = contrastive_loss(image.float(), text.float(), scale.float())
        grads = torch.autograd.grad(loss, weights, allow_unused=True)
    pairs = [(w.detach().double(), g.detach().double()) for w, g in zip(weights, grads) if g is not None]
    if not pairs:
        raise ValueError("the model's loss reaches none of its weight tensors")
    return {"grad_norm": float(sum(g.norm() for _, g in pairs)), "snip": float(sum((w * g).abs().sum() for w, g in pairs))}


def zero_cost_scores(
    policies: dict[str, SharingPolicy], size: str, data: object, batch_size: int, seeds: Iterable[int], device: str = "cpu"
) -> dict[str, ZeroCostScores]:
    """The zero-cost proxies of every policy at `size`, on batches of the training split of `data`
    (a `trainer.config.DataConfig`, e.g. the bench recipe's), averaged over `seeds`."""
    from search_spaces import get_size

    seeds = list(seeds)
    if not seeds or batch_size < 2:
        raise ConfigError("zero-cost proxies need at least one seed and a batch of 2 or more pairs (a contrastive loss needs negatives)")
    shape = get_size(size)
    bundle = build_data(data, shape.image_size, shape.context_length)
    batches = {s: materialize(bundle.train, batch_size, batch_size, seed=s)[0] for s in seeds}
    target = torch.device(device)
    out = {}
    for name, policy in policies.items():
        start = time.process_time()
        runs = []
        for s in seeds:
            torch.manual_seed(s)
            model = build_model(policy, shape).to(target)
            runs.append(batch_scores(model, *batches[s], target))
        out[name] = ZeroCostScores(
            grad_norm=sum(r["grad_norm"] for r in runs) / len(runs), snip=sum(r["snip"] for r in runs) / len(runs),
            cpu_seconds=time.process_time() - start,
        )
    return out
