"""Exported architectures: a directory that rebuilds a searched model without the search code.

Layout of an export directory:
- `arch.json` (schema `sharenas/arch/v2`): the policy (adapter schedule size-free), the size and its
  full model config, the parameter breakdown, provenance, metrics and package versions;
- `model.safetensors`: the weights, written with safetensors' `save_model` (a shared sublayer is one
  module, so each shared tensor is stored once);
- `README.md`: a short model card;
- for policies that share nothing and have no extras, also `open_clip_config.json` +
  `open_clip_model.safetensors`, which `open_clip.create_model_and_transforms("local-dir:DIR")` loads.

`load_exported(DIR)` needs only this package and its dependencies (torch, safetensors).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from ..arch import ARCH_FILE, ArchError, ArchRecord
from ..policy import ARCH_SCHEMA, SUBLAYERS, SharingPolicy
from .factory import count_model_params
from .open_clip_import import source_key
from .shared_clip import SharedCLIP

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"


class ExportError(ArchError):
    """An export directory is missing, corrupt or from a newer sharenas; the message says which file and what to do."""


def is_open_clip_compatible(policy: SharingPolicy) -> bool:
    """Nothing shared and no conv extras: an open_clip ViT with the same config holds the same model."""
    return not policy.any_shared and not policy.early_specialization and policy.parallel_branch is None


def open_clip_config(model: SharedCLIP) -> dict[str, Any]:
    size, text_width = model.size, model.policy.text_width_for(model.size)
    return {
        "model_cfg": {
            "embed_dim": size.embed_dim,
            "vision_cfg": {"image_size": size.image_size, "layers": size.layers, "width": size.width, "patch_size": size.patch_size,
                           "head_width": size.head_width, "mlp_ratio": size.mlp_ratio},
            "text_cfg": {"context_length": size.context_length, "vocab_size": size.vocab_size, "width": text_width,
                         "heads": text_width // size.head_width, "layers": size.layers, "mlp_ratio": size.mlp_ratio},
        },
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
    }


def open_clip_state_dict(model: SharedCLIP) -> dict[str, torch.Tensor]:
    """The weights under open_clip's names (the inverse of `from_open_clip`'s key mapping)."""
    out = {}
    for name, tensor in model.state_dict().items():
        key = source_key(name)
        if key is None:
            raise ExportError(f"{name} has no open_clip counterpart; only policies without sharing or extras export to open_clip")
        out[key] = tensor.detach().cpu().contiguous()
    return out


def model_card(record: ArchRecord) -> str:
    p, params = record.policy, record.params
    shared = sum(layer.is_shared(sub) for layer in p.layers for sub in SUBLAYERS)
    pb = p.parallel_branch
    lines = [
        f"# {p.name} ({record.size})", "",
        f"A SharedCLIP model exported by sharenas: {shared} of {4 * len(p.layers)} transformer sublayers shared between the "
        f"image and text towers, early specialization {'on' if p.early_specialization else 'off'}, parallel branch "
        f"{'fused into layers ' + str(list(pb.fusion_layers)) if pb else 'off'}.", "",
        f"Parameters: {params.total:,} ({params.shared:,} shared, {params.vision_specific:,} vision-specific, "
        f"{params.text_specific:,} text-specific).", "",
        f"Weights: {record.weights_origin or 'trained'}.", "",
        "```python", "from search_spaces import load_exported", "model = load_exported(\"THIS_DIR\")  # encode_image, encode_text, forward", "```", "",
    ]
    if record.metrics:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {v:.4g} |" for k, v in sorted(record.metrics.items()) if isinstance(v, (int, float))]
        lines.append("")
    lines += ["Provenance:", "", "```json", json.dumps(record.provenance, indent=2, default=str)[:4000], "```", ""]
    return "\n".join(lines)


def save_exported(model: SharedCLIP, out: str | Path, provenance: dict[str, Any], metrics: dict[str, float], packages: dict[str, str],
                  weights_origin: str = "trained") -> ArchRecord:
    """Write the export directory of `model`; returns its arch.json record."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    policy = model.policy.portable(model.size)
    record = ArchRecord(
        model.size.name, policy, count_model_params(model), metrics, provenance, model_config=model.size,
        weights=WEIGHTS_FILE, weights_origin=weights_origin, packages=packages,
    )
    model = model.cpu().eval()
    save_model(model, str(out / WEIGHTS_FILE), metadata={"format": "pt", "schema": ARCH_SCHEMA})
    if is_open_clip_compatible(policy):
        save_file(open_clip_state_dict(model), str(out / OPEN_CLIP_WEIGHTS))
        (out / OPEN_CLIP_CONFIG).write_text(json.dumps(open_clip_config(model), indent=2) + "\n")
        record.open_clip = {"config": OPEN_CLIP_CONFIG, "weights": OPEN_CLIP_WEIGHTS}
    record.save(out / ARCH_FILE)
    (out / CARD_FILE).write_text(model_card(record))
    return record


def read_arch(directory: str | Path) -> ArchRecord:
    path = Path(directory) / ARCH_FILE
    if not path.is_file():
        raise ExportError(f"{path} not found: give a directory written by `sharenas export`")
    try:
        return ArchRecord.load(path)
    except ArchError as exc:
        raise ExportError(str(exc)) from None


def load_exported(directory: str | Path, device: str | torch.device = "cpu") -> SharedCLIP:
    """Rebuild the exported model and load its weights strictly (every tensor, nothing extra)."""
    directory = Path(directory)
    record = read_arch(directory)
    arch_path = directory / ARCH_FILE
    try:
        model = SharedCLIP(record.policy, record.model_size())
    except ArchError as exc:
        raise ExportError(f"{arch_path}: {exc}") from None
    weights = directory / (record.weights or WEIGHTS_FILE)
    if not weights.is_file():
        raise ExportError(f"{weights} not found: the export is incomplete; export the architecture again")
    try:
        missing, unexpected = load_model(model, str(weights), strict=False, device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ExportError(f"{weights} is corrupt or does not fit {arch_path} ({str(exc).splitlines()[0]}); export again") from None
    if missing or unexpected:
        raise ExportError(f"{weights} does not fit {arch_path} (missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}); export again")
    return model.to(device).eval()


def weights_size(directory: str | Path) -> int:
    """Bytes of the tensors in the export's weights file (header excluded)."""
    tensors = load_file(str(Path(directory) / WEIGHTS_FILE))
    return sum(t.numel() * t.element_size() for t in tensors.values())
