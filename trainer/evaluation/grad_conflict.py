"""Image/text gradient agreement of shared parameters (the signal behind Recon, ICLR 2023, and TAG's
inter-task affinity, NeurIPS 2021): for each group of parameters, the cosine between the gradient
the image side of the contrastive loss sends it (text features detached) and the one the text side
sends it (image features detached). Near 1: both modalities pull the weights the same way; near 0
or negative: they conflict, and a modality-specific copy would serve both better."""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from trainer.evaluation.precision import scoring_precision
from trainer.loss import contrastive_loss


def modality_gradient_cosines(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], groups: dict[str, list[nn.Parameter]], device: torch.device
) -> dict[str, float]:
    """Cosine per group between the image-side and text-side gradients summed over `batches`
    (groups that get no gradient on one side are left out), at the scoring precision. The model's
    parameters' `.grad` is untouched."""
    params = [p for ps in groups.values() for p in ps]
    sums: list[list[torch.Tensor | None]] = [[None] * len(params), [None] * len(params)]
    with scoring_precision(device):  # the backward passes' matmuls too (TF32 is read when they run)
        for images, tokens in batches:
            image, text, scale = model(images.to(device), tokens.to(device))
            image, text, scale = image.float(), text.float(), scale.float().detach()
            sides = (contrastive_loss(image, text.detach(), scale), contrastive_loss(image.detach(), text, scale))
            for side, loss in enumerate(sides):
                grads = torch.autograd.grad(loss, params, retain_graph=side == 0, allow_unused=True)
                for i, g in enumerate(grads):
                    if g is not None:
                        sums[side][i] = g.detach() if sums[side][i] is None else sums[side][i] + g.detach()
    out, i = {}, 0
    for name, ps in groups.items():
        gi, gt = sums[0][i : i + len(ps)], sums[1][i : i + len(ps)]
        i += len(ps)
        if any(g is None for g in (*gi, *gt)):
            continue
        vi = torch.cat([g.reshape(-1) for g in gi]).double()
        vt = torch.cat([g.reshape(-1) for g in gt]).double()
        denom = float(vi.norm() * vt.norm())
        if denom > 0 and math.isfinite(denom):
            out[name] = float(vi @ vt) / denom
    return out
