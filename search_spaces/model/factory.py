"""Build and count models from a policy (preset name, policy JSON path, or `SharingPolicy`) and a size."""
from __future__ import annotations

import torch

from ..arch import ParamCount
from ..policy import SharingPolicy
from ..presets import resolve_policy
from ..sizes import ModelSize, get_size
from .shared_clip import SharedCLIP


def build_model(policy: str | SharingPolicy, size: str | ModelSize = "b32") -> SharedCLIP:
    """A freshly initialised `SharedCLIP` realising `policy` at `size`."""
    size = get_size(size)
    return SharedCLIP(resolve_policy(policy, size), size)


def count_model_params(model: SharedCLIP) -> ParamCount:
    totals = {"shared": 0, "vision": 0, "text": 0}
    params = dict(model.named_parameters())
    for name, modality in model.param_sharing().items():
        totals[modality] += params[name].numel()
    return ParamCount(totals["shared"], totals["vision"], totals["text"])


def count_params(policy: str | SharingPolicy, size: str | ModelSize = "b32") -> ParamCount:
    """Parameter counts of `policy` at `size`, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = build_model(policy, size)
    return count_model_params(model)
