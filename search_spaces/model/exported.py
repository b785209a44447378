"""Exported architectures: a directory that rebuilds a searched model without the search code.

Layout of an export directory:
- `arch.json` (schema `sharenas/arch/v1`): the policy (adapter schedule size-free), the size and its
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
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

from ..policy import ARCH_SCHEMA, PolicyError, SharingPolicy
from ..sizes import SIZES, ModelSize
from .factory import count_model_params
from .open_clip_import import source_key
from .shared_clip import SharedCLIP

ARCH_FILE = "arch.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"
SCHEMA_VERSION = 1


class ExportError(ValueError):
    """An export directory is missing, corrupt or from a newer sharenas; the message says which file and what to do."""


def schema_version(schema: Any, path: Path) -> int:
    match = re.fullmatch(r"sharenas/arch/v(\d+)", schema) if isinstance(schema, str) else None
    if match is None:
        raise ExportError(f"{path}: schema {schema!r} is not a sharenas architecture (expected {ARCH_SCHEMA!r})")
    version = int(match.group(1))
    if version > SCHEMA_VERSION:
        raise ExportError(f"{path}: schema v{version} was written by a newer sharenas (this one reads v{SCHEMA_VERSION}); upgrade sharenas")
    return version


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


def model_card(record: dict[str, Any]) -> str:
    p, params = record["policy"], record["params"]
    shared = sum(v == "shared" for layer in p["layers"] for v in layer.values())
    lines = [
        f"# {p['name']} ({record['size']})", "",
        f"A SharedCLIP model exported by sharenas: {shared} of {4 * len(p['layers'])} transformer sublayers shared between the "
        f"image and text towers, early specialization {'on' if p['early_specialization'] else 'off'}, parallel branch "
        f"{'fused into layers ' + str(p['parallel_branch']['fusion_layers']) if p['parallel_branch'] else 'off'}.", "",
        f"Parameters: {params['total']:,} ({params['shared']:,} shared, {params['vision_specific']:,} vision-specific, "
        f"{params['text_specific']:,} text-specific).", "",
        f"Weights: {record.get('weights_origin', 'trained')}.", "",
        "```python", "from search_spaces import load_exported", "model = load_exported(\"THIS_DIR\")  # encode_image, encode_text, forward", "```", "",
    ]
    if record.get("metrics"):
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {v:.4g} |" for k, v in sorted(record["metrics"].items()) if isinstance(v, (int, float))]
        lines.append("")
    lines += ["Provenance:", "", "```json", json.dumps(record.get("provenance", {}), indent=2, default=str)[:4000], "```", ""]
    return "\n".join(lines)


def save_exported(model: SharedCLIP, out: str | Path, provenance: dict[str, Any], metrics: dict[str, float], packages: dict[str, str],
                  weights_origin: str = "trained") -> dict[str, Any]:
    """Write the export directory of `model`; returns the arch.json record."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    policy = model.policy.portable(model.size)
    record = {
        "schema": ARCH_SCHEMA,
        "size": model.size.name,
        "model_config": asdict(model.size),
        "policy": policy.to_dict(),
        "params": count_model_params(model).to_dict(),
        "weights": WEIGHTS_FILE,
        "weights_origin": weights_origin,
        "metrics": metrics,
        "provenance": provenance,
        "packages": packages,
    }
    model = model.cpu().eval()
    save_model(model, str(out / WEIGHTS_FILE), metadata={"format": "pt", "schema": ARCH_SCHEMA})
    if is_open_clip_compatible(policy):
        save_file(open_clip_state_dict(model), str(out / OPEN_CLIP_WEIGHTS))
        (out / OPEN_CLIP_CONFIG).write_text(json.dumps(open_clip_config(model), indent=2) + "\n")
        record["open_clip"] = {"config": OPEN_CLIP_CONFIG, "weights": OPEN_CLIP_WEIGHTS}
    (out / ARCH_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")
    (out / CARD_FILE).write_text(model_card(record))
    return record


def read_arch(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / ARCH_FILE
    if not path.is_file():
        raise ExportError(f"{path} not found: give a directory written by `sharenas export`")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path} is corrupt or truncated ({exc}); export the architecture again") from None
    if not isinstance(record, dict):
        raise ExportError(f"{path}: expected a JSON object; export the architecture again")
    schema_version(record.get("schema"), path)
    for key in ("policy", "size"):
        if key not in record:
            raise ExportError(f"{path}: no {key!r} entry; export the architecture again")
    return record


def _size(record: dict[str, Any], path: Path) -> ModelSize:
    config = record.get("model_config")
    if config is None:
        if record["size"] not in SIZES:
            raise ExportError(f"{path}: unknown size {record['size']!r} and no model_config; export the architecture again")
        return SIZES[record["size"]]
    try:
        return ModelSize(**config)
    except TypeError as exc:
        raise ExportError(f"{path}: model_config does not describe a model size ({exc})") from None


def load_exported(directory: str | Path, device: str | torch.device = "cpu") -> SharedCLIP:
    """Rebuild the exported model and load its weights strictly (every tensor, nothing extra)."""
    directory = Path(directory)
    record = read_arch(directory)
    arch_path = directory / ARCH_FILE
    try:
        policy = SharingPolicy.from_dict(record["policy"])
    except PolicyError as exc:
        raise ExportError(f"{arch_path}: {exc}") from None
    model = SharedCLIP(policy, _size(record, arch_path))
    weights = directory / record.get("weights", WEIGHTS_FILE)
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
