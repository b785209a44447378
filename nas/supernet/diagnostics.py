"""Per-epoch diagnostics of a Gumbel search, as flat metrics.jsonl keys.

- `gate/NAME/p_specific` (layer gates) or `gate/NAME/p_on` (ES, fusion): the gate distribution;
- `search/entropy` (mean gate entropy, nats), `search/expected_params`, `search/argmax_params`;
- `search/temperature`, `search/lambda` (the budget multiplier) and the epoch's mean
  `search/train_loss` and `search/arch_loss`;
- `grad_cos/NAME` per layer gate: the cosine between the image-side and the text-side gradient of
  its shared module (image side: the contrastive loss with the text features detached, and vice
  versa), measured with every layer routed through its shared module. Near 1: the modalities pull
  the shared weights the same way; near 0 or negative: they conflict.
"""
from __future__ import annotations

import torch

from search_spaces.gate_space import OFF, SHARED_OPTION, GateSpace, ParamCostModel
from trainer.evaluation.grad_conflict import modality_gradient_cosines

from nas.supernet.gates import GateSample, entropy, probabilities
from nas.supernet.model import Supernet


def argmax_choices(logits: torch.Tensor) -> list[int]:
    return logits.detach().argmax(dim=-1).tolist()


def gate_metrics(space: GateSpace, logits: torch.Tensor, cost: ParamCostModel) -> dict[str, float]:
    probs = probabilities(logits.detach())
    out: dict[str, float] = {}
    for g, name in enumerate(space.gate_names()):
        option = space.option_names(g)[1]
        out[f"gate/{name}/p_{option}"] = float(probs[g, 1])
    out["search/entropy"] = float(entropy(logits.detach()).mean())
    out["search/expected_params"] = float(cost.expected(probs))
    out["search/argmax_params"] = float(cost.exact(argmax_choices(logits)))
    return out


def shared_path(space: GateSpace) -> GateSample:
    """Every layer through its shared module, ES and fusion off (the vision tower runs every layer)."""
    choices = [SHARED_OPTION] * space.num_layer_gates + [OFF] * (space.num_gates - space.num_layer_gates)
    return GateSample(choices)


def modality_grad_cosines(supernet: Supernet, images: torch.Tensor, tokens: torch.Tensor) -> dict[str, float]:
    """`grad_cos/NAME` for every layer gate (NaN-free: a module without gradient on one side is left out)."""
    space, saved = supernet.space, (supernet.routing.choices, supernet.routing.weights)
    supernet.route(shared_path(space))
    names = space.gate_names()
    groups = {
        f"grad_cos/{names[slot.gate]}": list(slot.shared.parameters())
        for block in supernet.blocks for slot in (block.attn, block.mlp, block.ln_1, block.ln_2)
    }
    try:
        return modality_gradient_cosines(supernet, [(images, tokens)], groups, images.device)
    finally:
        supernet.routing.choices, supernet.routing.weights = saved


def epoch_metrics(
    supernet: Supernet, logits: torch.Tensor, cost: ParamCostModel, tau: float, lam: float | None,
    losses: dict[str, list[float]], probe: tuple[torch.Tensor, torch.Tensor] | None,
) -> dict[str, float]:
    """Everything a search logs at the end of an epoch (see the module docstring); `probe`: the
    batch of the gradient cosines (None: not measured), `lam`: the budget multiplier (None: no budget)."""
    values = gate_metrics(supernet.space, logits, cost)
    values["search/temperature"] = tau
    if lam is not None:
        values["search/lambda"] = lam
    for key, items in losses.items():
        if items:
            values[f"search/{key}"] = sum(items) / len(items)
    if probe is not None:
        values.update(modality_grad_cosines(supernet, *probe))
        supernet.zero_grad(set_to_none=True)
    return values
