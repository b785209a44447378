"""Named sharing policies from the paper (SPEC section 1). Presets depend on the size only through the
narrow text width of `clip` and the parallel branch's adapter kernels."""
from __future__ import annotations

from typing import Callable

from .policy import SHARED, SPECIFIC, LayerSharing, ParallelBranchSpec, PolicyError, SharingPolicy, default_adapter_kernels
from .sizes import ModelSize, get_size

ALL_SHARED = LayerSharing.uniform(SHARED)
NONE_SHARED = LayerSharing.uniform(SPECIFIC)
MSCLIP_LAYER = LayerSharing(attn=SHARED, ffn=SHARED, ln1=SPECIFIC, ln2=SPECIFIC)


def paper_fusion_layers(num_layers: int) -> tuple[int, ...]:
    """The paper's fusion layers 2, 4, 6, 8, 10 for 12 layers (every other layer from 2)."""
    return tuple(range(2, num_layers - 1, 2))[:5]


def default_parallel_branch(size: ModelSize) -> ParallelBranchSpec:
    fusion = paper_fusion_layers(size.layers)
    return ParallelBranchSpec(fusion, default_adapter_kernels(size.patch_size, len(fusion)), dwconv=True)


def share_last(k: int, size: ModelSize) -> SharingPolicy:
    """MS-CLIP sharing (attention + FFN, LNs specific) in the last `k` layers only."""
    n = size.layers
    if not 0 <= k <= n:
        raise PolicyError(f"share-last-{k}: k must be in 0..{n}")
    layers = tuple(MSCLIP_LAYER if i >= n - k else NONE_SHARED for i in range(n))
    return SharingPolicy(layers, name=f"share-last-{k}")


def _uniform(layer: LayerSharing, name: str, **kw) -> Callable[[ModelSize], SharingPolicy]:
    return lambda size: SharingPolicy(tuple(layer for _ in range(size.layers)), name=name, **kw)


def _msclip_extra(name: str, es: bool, pb: bool) -> Callable[[ModelSize], SharingPolicy]:
    def build(size: ModelSize) -> SharingPolicy:
        layers = tuple(NONE_SHARED if es and i == 0 else MSCLIP_LAYER for i in range(size.layers))
        return SharingPolicy(
            layers, early_specialization=es, parallel_branch=default_parallel_branch(size) if pb else None, name=name
        )

    return build


_PRESETS: dict[str, Callable[[ModelSize], SharingPolicy]] = {
    "clip": lambda size: SharingPolicy(tuple(NONE_SHARED for _ in range(size.layers)), text_width=size.narrow_text_width, name="clip"),
    "clip-t768": _uniform(NONE_SHARED, "clip-t768"),
    "share-all": _uniform(ALL_SHARED, "share-all"),
    "share-attn-ffn-ln1": _uniform(LayerSharing(SHARED, SHARED, SHARED, SPECIFIC), "share-attn-ffn-ln1"),
    "share-attn-ffn-ln2": _uniform(LayerSharing(SHARED, SHARED, SPECIFIC, SHARED), "share-attn-ffn-ln2"),
    "msclip": _uniform(MSCLIP_LAYER, "msclip"),
    **{f"share-last-{k}": (lambda size, k=k: share_last(k, size)) for k in range(13)},
    "share-ffn-only": _uniform(LayerSharing(SPECIFIC, SHARED, SPECIFIC, SPECIFIC), "share-ffn-only"),
    "share-attn-only": _uniform(LayerSharing(SHARED, SPECIFIC, SPECIFIC, SPECIFIC), "share-attn-only"),
    "msclip-es": _msclip_extra("msclip-es", es=True, pb=False),
    "msclip-pb": _msclip_extra("msclip-pb", es=False, pb=True),
    "msclip-s": _msclip_extra("msclip-s", es=True, pb=True),
}

PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)


def get_preset(name: str, size: str | ModelSize = "b32") -> SharingPolicy:
    """The preset `name` realised at `size`."""
    size = get_size(size)
    if name not in _PRESETS:
        raise PolicyError(f"policy: {name!r} is neither a preset nor a .json file; presets: {', '.join(PRESET_NAMES)}")
    return _PRESETS[name](size)


def resolve_policy(policy: str | SharingPolicy, size: str | ModelSize) -> SharingPolicy:
    """A preset name, a path to a policy JSON, or a policy; checked against `size`."""
    size = get_size(size)
    if isinstance(policy, str):
        policy = SharingPolicy.load(policy) if policy.endswith(".json") else get_preset(policy, size)
    policy.check_size(size)
    return policy
