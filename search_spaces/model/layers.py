"""Transformer sublayers. Parameter names follow open_clip so importing its checkpoints is a key rename."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention with open_clip's fused `in_proj_weight` layout.

    Causality is an argument of the call, not a property of the module, so one shared module serves the
    bidirectional vision tower and the causal text tower.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"attention width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        b, n, c = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """The transformer FFN (open_clip names: `c_fc`, `c_proj`), exact GELU as in ViT-B-32."""

    def __init__(self, width: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.c_fc = nn.Linear(width, hidden)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class SharingSlot(nn.Module):
    """One sublayer position of one layer: a module shared by both towers, or one per tower.

    Registers `shared`, or `vision` and/or `text` (a tower that does not run this layer gets no module),
    so `parameters()`, `state_dict()` and the optimizer see each tensor exactly once.
    """

    def __init__(self, make: Callable[[int], nn.Module], shared: bool, vision_width: int | None, text_width: int | None) -> None:
        super().__init__()
        if shared:
            if vision_width is None or text_width is None or vision_width != text_width:
                raise ValueError(f"a shared sublayer needs both towers at one width, got {vision_width} and {text_width}")
            self.shared = make(vision_width)
        else:
            if vision_width is not None:
                self.vision = make(vision_width)
            if text_width is not None:
                self.text = make(text_width)

    def select(self, modality: str) -> nn.Module:
        """The module this modality runs ("vision" or "text")."""
        if "shared" in self._modules:
            return self._modules["shared"]
        try:
            return self._modules[modality]
        except KeyError:
            raise RuntimeError(f"the {modality} tower does not run this layer") from None

