"""`SharedCLIP`: a two-tower CLIP whose transformer sublayers are shared or modality-specific per policy.

The model owns one stack of `SharedBlock`s; the vision tower runs it bidirectionally and the text tower
causally. Modality-specific input/output parts live in `visual` and `text` (open_clip's names, so an
open_clip ViT-B-32 state dict maps onto a `clip`-preset model by renaming keys).

The constructor takes the parts that differ between a policy's model and the Gumbel supernet (which
holds every policy of a space): the factory of the sublayer slots and of the vision tower. The
geometry (towers, blocks, initialisation) and the forward pass, the fusion loop included, are this
module's for both; a vision tower says per forward pass what runs (`VisionRoute`).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..policy import ParallelBranchSpec, SharingPolicy
from ..sizes import ModelSize
from .conv import ConvStem, ParallelBranch, build_adapters
from .transformer import SlotFactory, build_blocks, run_block, sharing_slots


@dataclass
class VisionRoute:
    """What the vision tower runs on one forward pass: the first block it runs (early
    specialization's stem stands in for the ones before), the adapter of each fusion layer (fed by
    the parallel branch's stages in layer order) and the straight-through weights of the supernet's
    gates (exactly 1.0, for their gradient) that multiply the tokens after a layer (`after`; layer
    `start - 1` is the embedding) or entering a block, after its adapter (`entering`)."""

    start: int
    adapters: dict[int, nn.Module]
    after: dict[int, torch.Tensor] = field(default_factory=dict)
    entering: dict[int, torch.Tensor] = field(default_factory=dict)


def _scaled(x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    return x if weight is None else x * weight


class VisionTower(nn.Module):
    """Vision-specific parts: patch embedding (or conv stem), class/positional embeddings, LNs, projection,
    and the optional parallel branch with its adapters."""

    def __init__(self, size: ModelSize, early_specialization: bool = False, parallel_branch: ParallelBranchSpec | None = None) -> None:
        super().__init__()
        width, scale = size.width, size.width**-0.5
        if early_specialization:
            self.stem = ConvStem(size)
        else:
            self.conv1 = nn.Conv2d(3, width, size.patch_size, size.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(size.grid**2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, size.embed_dim))
        if parallel_branch is not None:
            self.parallel = ParallelBranch(size, parallel_branch)
            self.adapters = build_adapters(size, parallel_branch)

    def route(self) -> VisionRoute:
        adapters = self._modules.get("adapters")
        return VisionRoute(1 if "stem" in self._modules else 0, {} if adapters is None else {int(k): m for k, m in adapters.items()})

    def branch_features(self, image: torch.Tensor, stages: int) -> list[torch.Tensor]:
        """The first `stages` stages of the parallel branch (none computed when no adapter runs)."""
        return self.parallel(image, stages) if stages else []

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        grid = self.stem(image) if hasattr(self, "stem") else self.conv1(image)
        x = grid.flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        return self.ln_pre(x)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln_post(x[:, 0]) @ self.proj


class TextTower(nn.Module):
    """Text-specific parts: token and positional embeddings, final LN, projection (open_clip init)."""

    def __init__(self, size: ModelSize, width: int) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(size.vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(size.context_length, width))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, size.embed_dim))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=width**-0.5)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] > self.positional_embedding.shape[0]:
            raise ValueError(f"text has {tokens.shape[1]} tokens; the context length is {self.positional_embedding.shape[0]}")
        return self.token_embedding(tokens) + self.positional_embedding[: tokens.shape[1]]

    def pool(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Final LN, then the end-of-text token (the highest id) through the projection."""
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)] @ self.text_projection


class SharedCLIP(nn.Module):
    """open_clip-compatible CLIP realising a `SharingPolicy` at a `ModelSize`.

    `slots` and `visual` replace the policy's sublayer slots (`sharing_slots`) and vision tower; they
    are built where the policy's would be, so the random initialisation draws in the same order.
    """

    def __init__(
        self, policy: SharingPolicy, size: ModelSize, slots: SlotFactory | None = None, visual: Callable[[], VisionTower] | None = None
    ) -> None:
        super().__init__()
        policy.check_size(size)
        self._policy, self.size = policy, size
        self.visual = visual() if visual is not None else VisionTower(size, policy.early_specialization, policy.parallel_branch)
        self.text = TextTower(size, policy.text_width_for(size))
        self.blocks = build_blocks(size, slots or sharing_slots(policy, size))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.grad_checkpointing = False
        self._init_blocks()

    @property
    def policy(self) -> SharingPolicy:
        """The policy this model runs."""
        return self._policy

    def _init_blocks(self) -> None:
        """open_clip's text-transformer init for every block (the scale depends only on width and depth)."""
        for name, p in self.blocks.named_parameters():
            width = p.shape[0] if name.endswith("c_proj.weight") else p.shape[-1]
            if name.endswith("in_proj_weight"):
                nn.init.normal_(p, std=width**-0.5)
            elif name.endswith(("out_proj.weight", "c_proj.weight")):
                nn.init.normal_(p, std=width**-0.5 * (2 * self.size.layers) ** -0.5)
            elif name.endswith("c_fc.weight"):
                nn.init.normal_(p, std=(2 * width) ** -0.5)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    # towers ------------------------------------------------------------------------------------------

    def _image_tokens(self, image: torch.Tensor, collect: list[torch.Tensor] | None = None) -> torch.Tensor:
        route = self.visual.route()
        stages = iter(self.visual.branch_features(image, len(route.adapters)))
        x = _scaled(self.visual.embed(image), route.after.get(route.start - 1))
        for i in range(route.start, len(self.blocks)):
            if i in route.adapters:
                x = route.adapters[i](x, next(stages))
            x = _scaled(x, route.entering.get(i))
            x = _scaled(run_block(self.blocks[i], x, "vision", self.grad_checkpointing), route.after.get(i))
            if collect is not None:
                collect.append(x)
        return x

    def _text_tokens(self, tokens: torch.Tensor, collect: list[torch.Tensor] | None = None) -> torch.Tensor:
        x = self.text.embed(tokens)
        for block in self.blocks:
            x = run_block(block, x, "text", self.grad_checkpointing)
            if collect is not None:
                collect.append(x)
        return x

    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = self.visual.pool(self._image_tokens(image))
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = self.text.pool(self._text_tokens(text), text)
        return F.normalize(features, dim=-1) if normalize else features

    def image_layers(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Token features after each transformer layer the vision tower runs."""
        out: list[torch.Tensor] = []
        self._image_tokens(image, out)
        return out

    def text_layers(self, text: torch.Tensor) -> list[torch.Tensor]:
        """Token features after each transformer layer of the text tower."""
        out: list[torch.Tensor] = []
        self._text_tokens(text, out)
        return out

    def forward(
        self, image: torch.Tensor | None = None, text: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        image_features = self.encode_image(image, normalize=True) if image is not None else None
        text_features = self.encode_text(text, normalize=True) if text is not None else None
        return image_features, text_features, self.logit_scale.exp()

    # bookkeeping -------------------------------------------------------------------------------------

    def param_sharing(self) -> dict[str, str]:
        """Map each parameter name to "shared" (used by both towers, the logit scale included),
        "vision" or "text"."""
        return {name: param_modality(name) for name, _ in self.named_parameters()}


def param_modality(name: str) -> str:
    """"shared", "vision" or "text" for a `SharedCLIP` parameter name."""
    parts = name.split(".")
    if parts[0] == "visual" or "vision" in parts:
        return "vision"
    if parts[0] == "text" or "text" in parts:
        return "text"
    return "shared"
