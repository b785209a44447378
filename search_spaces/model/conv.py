"""Modality-specific vision extras: the early-specialization conv stem and the parallel conv branch
with its DWConv adapters (paper Tables 1 and 2, supplement Tables 1, 2 and 6)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..policy import ParallelBranchSpec
from ..sizes import ModelSize

STAGES = 5


def stage_channels(width: int) -> tuple[int, ...]:
    """Channels of the five conv stages: width/16 .. width (48, 96, 192, 384, 768 at width 768)."""
    return tuple(width // 2 ** (STAGES - 1 - i) for i in range(STAGES))


def stem_strides(patch_size: int) -> tuple[int, ...]:
    """Stride-2 convs until the patch size is reached, then stride 1 (B/32: 2,2,2,2,2; B/16: 2,2,2,2,1)."""
    downs = patch_size.bit_length() - 1
    if patch_size != 2**downs or not 1 <= downs <= STAGES:
        raise ValueError(f"early specialization needs a power-of-two patch size in 2..32, got {patch_size}")
    return tuple(2 if i < downs else 1 for i in range(STAGES))


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)
    )


class ResidualConv(nn.Module):
    """3x3 conv-BN-ReLU with a parameter-free shortcut (average-pool to the stride, zero-pad the new channels)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        if cout < cin:
            raise ValueError(f"residual conv cannot shrink channels ({cin} -> {cout})")
        self.conv = conv_bn(cin, cout, 3, stride)
        self.stride = stride
        self.extra_channels = cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = F.avg_pool2d(x, self.stride) if self.stride > 1 else x
        shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
        return F.relu(self.conv(x) + shortcut)


class ConvStem(nn.Module):
    """Early specialization: 3x3 conv, four residual 3x3 convs, a 1x1 conv to the model width.

    Replaces the patch embedding and the first vision layer; outputs the patch-grid token map.
    """

    def __init__(self, size: ModelSize) -> None:
        super().__init__()
        chans, strides = stage_channels(size.width), stem_strides(size.patch_size)
        self.stem = nn.Sequential(conv_bn(3, chans[0], 3, strides[0]), nn.ReLU())
        self.stages = nn.Sequential(*(ResidualConv(chans[i - 1], chans[i], strides[i]) for i in range(1, STAGES)))
        self.proj = nn.Conv2d(chans[-1], size.width, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.proj(self.stages(self.stem(image)))


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1, 3x3 with stride, 1x1); the middle width is half the output width."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        mid = cout // 2
        self.body = nn.Sequential(
            conv_bn(cin, mid, 1), nn.ReLU(), conv_bn(mid, mid, 3, stride), nn.ReLU(), conv_bn(mid, cout, 1)
        )
        self.shortcut = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class ParallelBranch(nn.Module):
    """The conv branch beside the vision transformer; stage `i` feeds the adapter of fusion layer `i`."""

    def __init__(self, size: ModelSize, spec: ParallelBranchSpec) -> None:
        super().__init__()
        chans = stage_channels(size.width)
        kernels = spec.kernels_for(size)
        stages: list[nn.Module] = [nn.Sequential(conv_bn(3, chans[0], 3, 2), nn.ReLU())]
        for i in range(1, len(kernels)):
            stages.append(Bottleneck(chans[i - 1], chans[i], kernels[i - 1] // kernels[i]))
        self.stages = nn.ModuleList(stages)

    def forward(self, image: torch.Tensor, stages: int | None = None) -> list[torch.Tensor]:
        """The feature map of each stage, of the first `stages` only when given."""
        feats, x = [], image
        for stage in self.stages:
            if len(feats) == stages:
                break
            x = stage(x)
            feats.append(x)
        return feats


def depthwise_or_pool(channels: int, kernel: int, stride: int, dwconv: bool) -> nn.Module:
    if dwconv:
        return nn.Conv2d(channels, channels, kernel, stride, padding=(kernel - stride) // 2, groups=channels, bias=False)
    return nn.AvgPool2d(kernel, stride, padding=(kernel - stride) // 2, count_include_pad=False)


class Adapter(nn.Module):
    """Eq. 1: `Hp' = bn(PWConv(DWConv(Hp)))`, `H' = ln(bn(DWConv(H)) + Hp')` on the patch tokens.

    The class token passes unchanged. The token-side DWConv is 3x3 (stride 1); the branch-side DWConv has
    kernel = stride = the adapter kernel, bringing the stage's map down to the patch grid.
    """

    def __init__(self, channels: int, width: int, kernel: int, dwconv: bool) -> None:
        super().__init__()
        self.branch_down = depthwise_or_pool(channels, kernel, kernel, dwconv)
        self.branch_proj = nn.Conv2d(channels, width, 1, bias=False)
        self.branch_bn = nn.BatchNorm2d(width)
        self.token_conv = depthwise_or_pool(width, 3, 1, dwconv)
        self.token_bn = nn.BatchNorm2d(width)
        self.ln = nn.LayerNorm(width)

    def forward(self, tokens: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        cls, patches = tokens[:, :1], tokens[:, 1:]
        b, n, c = patches.shape
        hp = self.branch_bn(self.branch_proj(self.branch_down(branch)))
        rows, cols = hp.shape[-2:]
        if not torch.jit.is_tracing() and rows * cols != n:
            raise RuntimeError(f"adapter: branch map {rows}x{cols} does not match the {n} patch tokens")
        # The grid comes from the branch map (not sqrt(n)), which keeps the graph exportable with a dynamic batch.
        h = patches.transpose(1, 2).reshape(b, c, rows, cols)
        fused = self.ln((self.token_bn(self.token_conv(h)) + hp).flatten(2).transpose(1, 2))
        return torch.cat([cls, fused], dim=1)


def stage_adapter(size: ModelSize, spec: ParallelBranchSpec, stage: int) -> Adapter:
    """The adapter that brings `spec`'s branch stage `stage` into the tokens."""
    return Adapter(stage_channels(size.width)[stage], size.width, spec.kernels_for(size)[stage], spec.dwconv)


def build_adapters(size: ModelSize, spec: ParallelBranchSpec) -> nn.ModuleDict:
    """Adapters keyed by the fusion layer index (as a string, as `nn.ModuleDict` requires)."""
    return nn.ModuleDict({str(layer): stage_adapter(size, spec, stage) for stage, layer in enumerate(spec.fusion_layers)})
