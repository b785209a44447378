"""`SharingPolicy`: which transformer sublayers the image and text towers share.

Layer indexing is 0-based everywhere: `layers[i]` is the i-th transformer block, and a parallel-branch
`fusion_layers` entry `i` fuses the branch into the tokens *entering* block `i`. The paper's fusion layers
"2, 4, 6, 8, 10" (1-based, fused after that layer) are therefore written `[2, 4, 6, 8, 10]` here as well.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Literal

from .sizes import SIZES, ModelSize

POLICY_SCHEMA = "sharenas/policy/v1"
ARCH_SCHEMA = "sharenas/arch/v2"
"""The schema arch.json files are written with; `is_arch` recognises every version."""
POLICY_FILE = "policy.json"
"""A run directory's policy: what `SharingPolicy.load` and `sharenas params` read."""
SUBLAYERS: tuple[str, ...] = ("attn", "ffn", "ln1", "ln2")
SHARED = "shared"
SPECIFIC = "specific"
Choice = Literal["shared", "specific"]
CHOICES: tuple[Choice, ...] = (SHARED, SPECIFIC)
"""The sharing choices in the order of a Gumbel layer gate's options (`gate_space.SHARED_OPTION`, `SPECIFIC_OPTION`)."""
MAX_FUSION_STAGES = 5
"""The parallel branch's stages: a policy fuses it into at most this many layers."""


class PolicyError(ValueError):
    """A policy that cannot be realised. The message names the offending field and the fix."""


@dataclass(frozen=True)
class LayerSharing:
    """Shared or modality-specific, for the four sublayers of one transformer layer."""

    attn: Choice = SHARED
    ffn: Choice = SHARED
    ln1: Choice = SPECIFIC
    ln2: Choice = SPECIFIC

    def __post_init__(self) -> None:
        for sub in SUBLAYERS:
            value = getattr(self, sub)
            if value not in (SHARED, SPECIFIC):
                raise PolicyError(f"{sub}: {value!r} is not a sharing choice; use 'shared' or 'specific'")

    @classmethod
    def uniform(cls, choice: Choice) -> "LayerSharing":
        return cls(choice, choice, choice, choice)

    def is_shared(self, sublayer: str) -> bool:
        return getattr(self, sublayer) == SHARED

    @property
    def any_shared(self) -> bool:
        return any(self.is_shared(s) for s in SUBLAYERS)

    def to_dict(self) -> dict[str, str]:
        return {s: getattr(self, s) for s in SUBLAYERS}


def default_adapter_kernels(patch_size: int, stages: int) -> tuple[int, ...]:
    """Halve the adapter kernel at every stage from `patch_size // 2` down to 1 (paper Table 2)."""
    kernels, k = [], max(1, patch_size // 2)
    for _ in range(stages):
        kernels.append(k)
        k = max(1, k // 2)
    return tuple(kernels)


@dataclass(frozen=True)
class ParallelBranchSpec:
    """A conv branch beside the vision transformer, fused into chosen layers by DWConv adapters.

    Stage `i` of the branch feeds `fusion_layers[i]`. `adapter_kernels[i]` is the kernel (and stride) of the
    adapter's depth-wise conv that brings stage `i`'s feature map down to the patch grid (paper Table 2:
    16, 8, 4, 2, 1 for B/32), so it also fixes where the branch downsamples: it must start at
    `patch_size // 2` (the first conv has stride 2) and each next kernel is equal or half the previous one.
    `adapter_kernels=None` (JSON `"auto"`) is the default schedule at whatever size the policy is built,
    which makes a policy searched at one size buildable at every other.
    `dwconv: false` replaces each depth-wise conv with average pooling of the same geometry (supp. Table 6).
    """

    fusion_layers: tuple[int, ...]
    adapter_kernels: tuple[int, ...] | None = None
    dwconv: bool = True

    def kernels_for(self, size: ModelSize) -> tuple[int, ...]:
        """The kernels at `size`: the explicit ones, or the default schedule for `auto`."""
        if self.adapter_kernels is not None:
            return self.adapter_kernels
        return default_adapter_kernels(size.patch_size, len(self.fusion_layers))

    def portable(self, size: ModelSize) -> "ParallelBranchSpec":
        """This spec with explicit kernels that equal `size`'s default schedule written as `auto`."""
        if self.adapter_kernels == default_adapter_kernels(size.patch_size, len(self.fusion_layers)):
            return replace(self, adapter_kernels=None)
        return self

    def to_dict(self) -> dict[str, Any]:
        kernels = "auto" if self.adapter_kernels is None else list(self.adapter_kernels)
        return {"fusion_layers": list(self.fusion_layers), "adapter_kernels": kernels, "dwconv": self.dwconv}


@dataclass(frozen=True)
class SharingPolicy:
    """Sharing choices per layer and sublayer, plus the modality-specific extras.

    `text_width=None` means "the vision width", which any sharing requires.
    `early_specialization` replaces the vision patch embedding and first layer with a conv stem; the text
    tower keeps all layers and its first becomes text-only, so `layers[0]` must be all `specific`.
    """

    layers: tuple[LayerSharing, ...]
    text_width: int | None = None
    early_specialization: bool = False
    parallel_branch: ParallelBranchSpec | None = None
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        if not self.layers:
            raise PolicyError("layers: a policy needs at least one layer")
        if self.text_width is not None and (isinstance(self.text_width, bool) or not isinstance(self.text_width, int) or self.text_width <= 0):
            raise PolicyError(f"text_width: {self.text_width!r} is not a positive integer; use an integer or null (= vision width)")
        if self.early_specialization:
            for sub in SUBLAYERS:
                if self.layers[0].is_shared(sub):
                    raise PolicyError(
                        f"layers[0].{sub}: early_specialization makes layer 0 text-only; set it to 'specific' "
                        "or turn early_specialization off"
                    )
        if self.parallel_branch is not None:
            self._check_branch(self.parallel_branch)

    def _check_branch(self, pb: ParallelBranchSpec) -> None:
        n = len(self.layers)
        if not pb.fusion_layers:
            raise PolicyError(f"parallel_branch.fusion_layers: empty; give 1 to {MAX_FUSION_STAGES} layer indices or set parallel_branch to null")
        if len(pb.fusion_layers) > MAX_FUSION_STAGES:
            raise PolicyError(f"parallel_branch.fusion_layers: {len(pb.fusion_layers)} entries; the branch has at most {MAX_FUSION_STAGES} stages")
        if pb.adapter_kernels is not None and len(pb.adapter_kernels) != len(pb.fusion_layers):
            raise PolicyError(
                f"parallel_branch.adapter_kernels: {len(pb.adapter_kernels)} kernels for {len(pb.fusion_layers)} fusion layers; "
                "give one kernel per fusion layer"
            )
        if list(pb.fusion_layers) != sorted(set(pb.fusion_layers)):
            raise PolicyError(f"parallel_branch.fusion_layers: {list(pb.fusion_layers)} must be strictly increasing")
        lowest = 1 if self.early_specialization else 0
        for layer in pb.fusion_layers:
            if not lowest <= layer < n:
                raise PolicyError(
                    f"parallel_branch.fusion_layers: layer {layer} is outside {lowest}..{n - 1}"
                    + (" (early specialization removes vision layer 0)" if self.early_specialization else "")
                )
        for i, k in enumerate(pb.adapter_kernels or ()):
            if k < 1 or k & (k - 1):
                raise PolicyError(f"parallel_branch.adapter_kernels[{i}]: {k} is not a power of two")
            if i and k not in (pb.adapter_kernels[i - 1], pb.adapter_kernels[i - 1] // 2):
                raise PolicyError(
                    f"parallel_branch.adapter_kernels[{i}]: {k} after {pb.adapter_kernels[i - 1]}; each kernel must equal "
                    "or halve the previous one (each branch stage downsamples by 1 or 2)"
                )

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def any_shared(self) -> bool:
        return any(layer.any_shared for layer in self.layers)

    def shared_mask(self) -> list[list[bool]]:
        """`[layer][sublayer]` booleans in `SUBLAYERS` order."""
        return [[layer.is_shared(s) for s in SUBLAYERS] for layer in self.layers]

    def text_width_for(self, size: ModelSize) -> int:
        return size.width if self.text_width is None else self.text_width

    def check_size(self, size: ModelSize) -> None:
        """Raise `PolicyError` if this policy cannot be built at `size`."""
        if self.num_layers != size.layers:
            raise PolicyError(
                f"layers: {self.num_layers} entries but size {size.name!r} has {size.layers} layers; give one entry per layer"
            )
        text_width = self.text_width_for(size)
        if self.any_shared and text_width != size.width:
            layer, sub = next((i, s) for i, l in enumerate(self.layers) for s in SUBLAYERS if l.is_shared(s))
            raise PolicyError(
                f"text_width: {text_width} but layers[{layer}].{sub} is shared; any sharing needs the vision width "
                f"({size.width} at size {size.name!r}): set text_width to {size.width} or null"
            )
        if text_width % size.head_width:
            raise PolicyError(
                f"text_width: {text_width} is not a multiple of the head width {size.head_width} at size {size.name!r}"
            )
        pb = self.parallel_branch
        if pb is not None:
            if size.patch_size < 2:
                raise PolicyError(f"parallel_branch: size {size.name!r} has patch size {size.patch_size}; the branch needs >= 2")
            if pb.adapter_kernels is not None and pb.adapter_kernels[0] != size.patch_size // 2:
                raise PolicyError(
                    f"parallel_branch.adapter_kernels[0]: {pb.adapter_kernels[0]} but size {size.name!r} needs "
                    f"{size.patch_size // 2} (patch size {size.patch_size} / the first conv's stride 2); "
                    'write "adapter_kernels": "auto" for the default schedule at every size'
                )

    def portable(self, size: ModelSize) -> "SharingPolicy":
        """This policy with a default adapter schedule at `size` written as `auto`, so it builds at every size."""
        if self.parallel_branch is None:
            return self
        return replace(self, parallel_branch=self.parallel_branch.portable(size))

    # JSON --------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": POLICY_SCHEMA,
            "name": self.name,
            "layers": [layer.to_dict() for layer in self.layers],
            "text_width": self.text_width,
            "early_specialization": self.early_specialization,
            "parallel_branch": None if self.parallel_branch is None else self.parallel_branch.to_dict(),
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def from_dict(cls, data: Any) -> "SharingPolicy":
        if not isinstance(data, dict):
            raise PolicyError(f"policy: expected a JSON object, got {type(data).__name__}")
        _check_keys(data, {"schema", "name", "layers", "text_width", "early_specialization", "parallel_branch"}, "policy")
        schema = data.get("schema", POLICY_SCHEMA)
        if schema != POLICY_SCHEMA:
            raise PolicyError(f"schema: {schema!r} is not supported; this version reads {POLICY_SCHEMA!r}")
        if "layers" not in data:
            raise PolicyError("layers: missing; give one {attn, ffn, ln1, ln2} object per transformer layer")
        layers_raw = data["layers"]
        if not isinstance(layers_raw, list):
            raise PolicyError(f"layers: expected a list, got {type(layers_raw).__name__}")
        layers = tuple(_layer_from_dict(entry, f"layers[{i}]") for i, entry in enumerate(layers_raw))
        es = data.get("early_specialization", False)
        if not isinstance(es, bool):
            raise PolicyError(f"early_specialization: expected true or false, got {es!r}")
        name = data.get("name", "custom")
        if not isinstance(name, str):
            raise PolicyError(f"name: expected a string, got {name!r}")
        return cls(
            layers=layers,
            text_width=data.get("text_width"),
            early_specialization=es,
            parallel_branch=_branch_from_dict(data.get("parallel_branch")),
            name=name,
        )

    @classmethod
    def from_json(cls, text: str) -> "SharingPolicy":
        """Read a policy, or the `policy` entry of an exported `arch.json` (schema `sharenas/arch/vN`)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PolicyError(f"policy: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
        if is_arch(data):
            if "policy" not in data:
                raise PolicyError("policy: this arch.json has no 'policy' entry; re-export the architecture")
            policy = cls.from_dict(data["policy"])
            # An arch.json records the size it was searched at: its default adapter schedule transfers.
            recorded = SIZES.get(data.get("size"))
            return policy.portable(recorded) if recorded is not None else policy
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> "SharingPolicy":
        path = Path(path)
        if not path.is_file():
            raise PolicyError(f"policy: file {str(path)!r} not found; give a preset name or an existing policy .json")
        return cls.from_json(path.read_text())


def _check_keys(data: dict, allowed: Iterable[str], where: str) -> None:
    allowed = set(allowed)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise PolicyError(f"{where}.{unknown[0]}: unknown key; allowed keys are {', '.join(sorted(allowed))}")


def _layer_from_dict(entry: Any, where: str) -> LayerSharing:
    if not isinstance(entry, dict):
        raise PolicyError(f"{where}: expected an object mapping {', '.join(SUBLAYERS)} to 'shared' or 'specific'")
    unknown = sorted(set(entry) - set(SUBLAYERS))
    if unknown:
        raise PolicyError(f"{where}.{unknown[0]}: unknown sublayer; sublayers are {', '.join(SUBLAYERS)}")
    missing = [s for s in SUBLAYERS if s not in entry]
    if missing:
        raise PolicyError(f"{where}.{missing[0]}: missing; every layer sets {', '.join(SUBLAYERS)}")
    try:
        return LayerSharing(**entry)
    except PolicyError as exc:
        raise PolicyError(f"{where}.{exc}") from None


def _branch_from_dict(data: Any) -> ParallelBranchSpec | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise PolicyError("parallel_branch: expected null or an object with fusion_layers, adapter_kernels, dwconv")
    _check_keys(data, {"fusion_layers", "adapter_kernels", "dwconv"}, "parallel_branch")
    for key in ("fusion_layers", "adapter_kernels"):
        value = data.get(key, "auto" if key == "adapter_kernels" else None)
        if key == "adapter_kernels" and value == "auto":
            continue
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            extra = ' or "auto"' if key == "adapter_kernels" else ""
            raise PolicyError(f"parallel_branch.{key}: expected a list of integers{extra}, got {value!r}")
    dwconv = data.get("dwconv", True)
    if not isinstance(dwconv, bool):
        raise PolicyError(f"parallel_branch.dwconv: expected true or false, got {dwconv!r}")
    kernels = data.get("adapter_kernels", "auto")
    return ParallelBranchSpec(tuple(data["fusion_layers"]), None if kernels == "auto" else tuple(kernels), dwconv)


def is_arch(data: Any) -> bool:
    """Whether `data` is an arch.json's object (any schema version)."""
    return isinstance(data, dict) and isinstance(data.get("schema"), str) and re.fullmatch(r"sharenas/arch/v\d+", data["schema"]) is not None


def recorded_size(path: str | Path) -> str | None:
    """The size an exported `arch.json` records, else None (plain policies are size-free)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if is_arch(data) and isinstance(data.get("size"), str):
        return data["size"]
    return None
