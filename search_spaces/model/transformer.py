"""The layer stack both towers run through, built from a `SharingPolicy`."""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..policy import SharingPolicy
from ..sizes import ModelSize
from .layers import Attention, Mlp, SharingSlot

# Module names inside a block (open_clip's) for the policy's sublayer names.
SUBLAYER_MODULES = {"ln1": "ln_1", "attn": "attn", "ln2": "ln_2", "ffn": "mlp"}


class SharedBlock(nn.Module):
    """A pre-LN transformer block whose four sublayers are each shared or modality-specific.

    Slots are any module with `select(modality) -> nn.Module` (the Gumbel supernet substitutes gated slots).
    """

    def __init__(self, ln_1: nn.Module, attn: nn.Module, ln_2: nn.Module, mlp: nn.Module) -> None:
        super().__init__()
        self.ln_1, self.attn, self.ln_2, self.mlp = ln_1, attn, ln_2, mlp

    def forward(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        causal = modality == "text"
        x = x + self.attn.select(modality)(self.ln_1.select(modality)(x), causal)
        return x + self.mlp.select(modality)(self.ln_2.select(modality)(x))


def sublayer_factories(size: ModelSize) -> dict[str, Callable[[int], nn.Module]]:
    """Constructors `width -> module` per policy sublayer name."""
    return {
        "ln1": partial(nn.LayerNorm),
        "attn": lambda width: Attention(width, width // size.head_width),
        "ln2": partial(nn.LayerNorm),
        "ffn": lambda width: Mlp(width, size.mlp_ratio),
    }


def vision_start(policy: SharingPolicy) -> int:
    """Index of the first block the vision tower runs (early specialization replaces block 0)."""
    return 1 if policy.early_specialization else 0


SlotFactory = Callable[[int, str, Callable[[int], nn.Module]], nn.Module]
"""`(layer, sublayer, make) -> slot`: the module in one sublayer position, from `make` (width ->
sublayer): a `SharingSlot` in a policy's model, a gated slot in the Gumbel supernet."""


def sharing_slots(policy: SharingPolicy, size: ModelSize) -> SlotFactory:
    """The slots of `policy`: shared or one module per tower (none for a layer a tower does not run)."""
    text_width = policy.text_width_for(size)

    def slot(layer: int, sublayer: str, make: Callable[[int], nn.Module]) -> nn.Module:
        vision_width = size.width if layer >= vision_start(policy) else None
        return SharingSlot(make, policy.layers[layer].is_shared(sublayer), vision_width, text_width)

    return slot


def build_blocks(size: ModelSize, slot: SlotFactory) -> nn.ModuleList:
    """The layer stack, its slots built by `slot` layer by layer in `SUBLAYER_MODULES` order."""
    make = sublayer_factories(size)
    return nn.ModuleList(
        SharedBlock(**{module: slot(layer, sub, make[sub]) for sub, module in SUBLAYER_MODULES.items()}) for layer in range(size.layers)
    )


def run_block(block: nn.Module, x: torch.Tensor, modality: str, grad_checkpointing: bool) -> torch.Tensor:
    if grad_checkpointing and torch.is_grad_enabled():
        return checkpoint(block, x, modality, use_reentrant=False)
    return block(x, modality)
