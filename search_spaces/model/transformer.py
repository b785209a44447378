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


def build_blocks(policy: SharingPolicy, size: ModelSize) -> nn.ModuleList:
    make = sublayer_factories(size)
    text_width = policy.text_width_for(size)
    blocks = []
    for i, layer in enumerate(policy.layers):
        vision_width = size.width if i >= vision_start(policy) else None
        slots = {
            SUBLAYER_MODULES[sub]: SharingSlot(make[sub], layer.is_shared(sub), vision_width, text_width)
            for sub in ("ln1", "attn", "ln2", "ffn")
        }
        blocks.append(SharedBlock(**slots))
    return nn.ModuleList(blocks)


def run_block(block: nn.Module, x: torch.Tensor, modality: str, grad_checkpointing: bool) -> torch.Tensor:
    if grad_checkpointing and torch.is_grad_enabled():
        return checkpoint(block, x, modality, use_reentrant=False)
    return block(x, modality)
