"""`ArchRecord`: what an `arch.json` (schema `sharenas/arch/v2`) holds, the one way to write it
(`save`) and to read it (`load` / `from_json`).

Every search and the export write one: the size and policy, the parameter counts, the metrics and
the provenance (free-form: what produced it). The optional entries are written only when set:
`model_config` (the size's full geometry), `weights`, `weights_origin`, `packages`, `open_clip` and
`onnx` by the export; `model` and `train_config` by an Optuna trial. Old files, and hand-written
ones with only `schema`, `size` and `policy`, still read.

v2 names the Gumbel search's loss on its architecture split `arch_val_loss` (`val_loss` is the
bench's held-out loss); a v1 record of a Gumbel search is read under the v2 names.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .json_file import read_json
from .policy import ARCH_SCHEMA, PolicyError, SharingPolicy
from .sizes import SIZES, ModelSize

ARCH_FILE = "arch.json"
SCHEMA_VERSION = 2
_V1_GUMBEL_NAMES = {"val_loss": "arch_val_loss", "inherited_val_loss": "inherited_arch_val_loss"}
"""The names of a Gumbel arch.json's metrics in v1 -> v2: its candidates' keys, and its metrics' after `inherited/`."""
_OPTIONAL = ("model_config", "model", "train_config", "params", "weights", "weights_origin", "packages", "open_clip", "onnx")


@dataclass(frozen=True)
class ParamCount:
    shared: int
    vision_specific: int
    text_specific: int

    @property
    def total(self) -> int:
        return self.shared + self.vision_specific + self.text_specific

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}


class ArchError(ValueError):
    """An `arch.json` that is corrupt, incomplete or from a newer sharenas; the message says which and what to do."""


@dataclass
class ArchRecord:
    size: str
    policy: SharingPolicy
    params: ParamCount | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    model_config: ModelSize | None = None
    model: dict[str, Any] | None = None
    """An Optuna trial's `model` config section."""
    train_config: dict[str, Any] | None = None
    weights: str | None = None
    weights_origin: str | None = None
    packages: dict[str, str] | None = None
    open_clip: dict[str, str] | None = None
    onnx: dict[str, Any] | None = None

    def model_size(self) -> ModelSize:
        """The recorded geometry, else the named size's."""
        if self.model_config is not None:
            return self.model_config
        if self.size not in SIZES:
            raise ArchError(f"unknown size {self.size!r} and no model_config; write the architecture again")
        return SIZES[self.size]

    def to_json(self) -> dict[str, Any]:
        """The JSON object, the optional entries only when set (in the order the writers always used)."""
        def present(**entries: Any) -> dict[str, Any]:
            return {k: v for k, v in entries.items() if v is not None}

        return {
            "schema": ARCH_SCHEMA, "size": self.size,
            **present(model_config=None if self.model_config is None else asdict(self.model_config)),
            "policy": self.policy.to_dict(),
            **present(model=self.model, train_config=self.train_config, params=None if self.params is None else self.params.to_dict(),
                      weights=self.weights, weights_origin=self.weights_origin),
            "metrics": self.metrics, "provenance": self.provenance,
            **present(packages=self.packages, open_clip=self.open_clip, onnx=self.onnx),
        }

    def save(self, path: str | Path) -> None:
        """Write `path` (callers above `search_spaces` pass this to `trainer.atomic.write_with`)."""
        Path(path).write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n")

    @classmethod
    def from_json(cls, data: Any) -> "ArchRecord":
        if not isinstance(data, dict):
            raise ArchError("expected a JSON object; write the architecture again")
        version = schema_version(data.get("schema"))
        unknown = sorted(set(data) - {"schema", "size", "policy", "metrics", "provenance", *_OPTIONAL})
        if unknown:
            raise ArchError(f"{unknown[0]}: unknown entry of {ARCH_SCHEMA}")
        for key in ("policy", "size"):
            if key not in data:
                raise ArchError(f"no {key!r} entry; write the architecture again")
        if not isinstance(data["size"], str):
            raise ArchError(f"size: expected a size name, got {data['size']!r}")
        try:
            policy = SharingPolicy.from_dict(data["policy"])
        except PolicyError as exc:
            raise ArchError(str(exc)) from None
        kwargs = {k: data[k] for k in ("model", "train_config", "weights", "weights_origin", "packages", "open_clip", "onnx") if k in data}
        if data.get("model_config") is not None:
            try:
                kwargs["model_config"] = ModelSize(**data["model_config"])
            except TypeError as exc:
                raise ArchError(f"model_config does not describe a model size ({exc})") from None
        if data.get("params") is not None:
            p = data["params"]
            try:
                kwargs["params"] = ParamCount(p["shared"], p["vision_specific"], p["text_specific"])
            except (KeyError, TypeError):
                raise ArchError(f"params: expected shared, vision_specific and text_specific counts, got {p!r}") from None
        metrics, provenance = data.get("metrics", {}), data.get("provenance", {})
        if version == 1 and provenance.get("search") == "gumbel":
            metrics, provenance = _gumbel_v2_names(metrics, provenance)
        return cls(data["size"], policy, metrics=metrics, provenance=provenance, **kwargs)

    @classmethod
    def load(cls, path: str | Path) -> "ArchRecord":
        """Read `path`; every error is one line that names the file."""
        path = Path(path)
        data = read_json(path, ArchError, "not found: the search or export did not finish",
                         "is corrupt or truncated ({why}); write the architecture again")
        try:
            return cls.from_json(data)
        except ArchError as exc:
            raise ArchError(f"{path}: {exc}") from None


def _gumbel_v2_names(metrics: dict[str, Any], provenance: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A v1 Gumbel record's metrics and provenance under the v2 names."""
    candidates = provenance.get("candidates")
    if isinstance(candidates, list):
        provenance = {**provenance, "candidates": [{_v2_name(k): v for k, v in c.items()} if isinstance(c, dict) else c for c in candidates]}
    return {_v2_name(k, "inherited/"): v for k, v in metrics.items()}, provenance


def _v2_name(key: str, prefix: str = "") -> str:
    if not key.startswith(prefix):
        return key
    name = key[len(prefix):]
    return prefix + _V1_GUMBEL_NAMES.get(name, name)


def schema_version(schema: Any) -> int:
    match = re.fullmatch(r"sharenas/arch/v(\d+)", schema) if isinstance(schema, str) else None
    if match is None:
        raise ArchError(f"schema {schema!r} is not a sharenas architecture (expected {ARCH_SCHEMA!r})")
    version = int(match.group(1))
    if version > SCHEMA_VERSION:
        raise ArchError(f"schema v{version} was written by a newer sharenas (this one reads v{SCHEMA_VERSION}); upgrade sharenas")
    return version
