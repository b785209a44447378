"""Import an open_clip ViT-B-32 checkpoint, exactly into the `clip` preset or as a warm start of any policy."""
from __future__ import annotations

import logging
import re
from typing import Mapping

import torch
from torch import nn

from ..policy import PolicyError, SharingPolicy
from ..presets import get_preset
from ..sizes import ModelSize, get_size
from .factory import build_model
from .shared_clip import SharedCLIP

log = logging.getLogger(__name__)

_BLOCK = re.compile(r"blocks\.(\d+)\.(ln_1|attn|ln_2|mlp)\.(shared|vision|text)\.(.+)")
_TEXT_KEYS = {
    "text.token_embedding.weight": "token_embedding.weight",
    "text.positional_embedding": "positional_embedding",
    "text.ln_final.weight": "ln_final.weight",
    "text.ln_final.bias": "ln_final.bias",
    "text.text_projection": "text_projection",
}
# Buffers open_clip keeps in some versions' state dicts; they carry no weights.
_IGNORED = re.compile(r"(^|\.)attn_mask$")


def source_key(target: str) -> str | None:
    """The open_clip key a `SharedCLIP` parameter is imported from (shared modules from the vision tower),
    or None for parts open_clip has no counterpart of (conv stem, parallel branch, adapters)."""
    match = _BLOCK.fullmatch(target)
    if match:
        layer, module, owner, rest = match.groups()
        prefix = "transformer" if owner == "text" else "visual.transformer"
        return f"{prefix}.resblocks.{layer}.{module}.{rest}"
    if target in _TEXT_KEYS:
        return _TEXT_KEYS[target]
    if target == "logit_scale" or re.fullmatch(r"visual\.(conv1\.weight|class_embedding|positional_embedding|ln_pre\..+|ln_post\..+|proj)", target):
        return target
    return None


def _state_dict(source: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sd = source.state_dict() if isinstance(source, nn.Module) else dict(source)
    if "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = dict(sd["state_dict"])
    return {k.removeprefix("module."): v for k, v in sd.items() if not _IGNORED.search(k)}


def from_open_clip(
    source: nn.Module | Mapping[str, torch.Tensor],
    policy: str | SharingPolicy | None = None,
    size: str | ModelSize = "b32",
) -> SharedCLIP:
    """Build a `SharedCLIP` from an open_clip ViT-B-32 model or state dict.

    With `policy=None` the policy is the non-shared preset matching the checkpoint's text width (`clip` for
    512, `clip-t768` for the vision width), and every tensor is imported exactly. With a shared policy this
    is a warm start: shared modules take the vision tower's weights, specific ones their own tower's, and
    tensors without a same-shaped counterpart (a 512-wide text tower into a 768-wide one, the conv extras)
    keep their fresh initialisation; what was skipped is logged.
    """
    size = get_size(size)
    sd = _state_dict(source)
    if "token_embedding.weight" not in sd or "visual.conv1.weight" not in sd:
        raise PolicyError("source: not an open_clip ViT state dict (no token_embedding.weight / visual.conv1.weight)")
    exact = policy is None
    if policy is None:
        text_width = sd["token_embedding.weight"].shape[1]
        policy = get_preset("clip", size) if text_width == size.narrow_text_width else get_preset("clip-t768", size)
    model = build_model(policy, size)
    targets = dict(model.state_dict())
    loaded, skipped, used = {}, [], set()
    for name, tensor in targets.items():
        src = source_key(name)
        if src is not None and src in sd and sd[src].shape == tensor.shape:
            loaded[name] = sd[src]
            used.add(src)
        else:
            skipped.append(name)
    if exact:
        unused = sorted(set(sd) - used)
        if skipped or unused:
            what = f"no source for {skipped[0]}" if skipped else f"unexpected key {unused[0]}"
            raise PolicyError(f"source: does not match an open_clip ViT-B-32 at size {size.name!r} ({what})")
    model.load_state_dict(loaded, strict=False)
    if skipped:
        log.info("from_open_clip: %d of %d tensors kept their initialisation (e.g. %s)", len(skipped), len(targets), skipped[0])
    return model
