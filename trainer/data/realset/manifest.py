"""The manifest a real-set build writes (`manifest.json`) and what a data source reads from it."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trainer.data.errors import DataError

MANIFEST_SCHEMA = "sharenas/realset/v1"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ZeroShotSpec:
    """A zero-shot task over held-out images of one `source`: `classes` are the values of their
    `category` column, `classnames` what the prompts say, `templates` the prompt ensemble."""

    name: str
    source: str
    classes: tuple[str, ...]
    classnames: tuple[str, ...]
    templates: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ZeroShotSpec":
        """A task as a manifest's `zeroshot` list holds it (`to_dict`)."""
        return cls(data["name"], data["source"], tuple(data["classes"]), tuple(data["classnames"]), tuple(data["templates"]))


def read_manifest(root: str | Path) -> dict[str, Any]:
    """The manifest of a built set, checked for what the data source needs."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DataError(f"{path} not found: build the real set first (scripts/realdata.sh build {root})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not valid JSON ({error}); rebuild the set (scripts/realdata.sh build {root})") from None
    if manifest.get("schema") != MANIFEST_SCHEMA:
        raise DataError(f"{path}: schema {manifest.get('schema')!r}, expected {MANIFEST_SCHEMA!r}; rebuild the set with this version")
    return manifest


def changed_files(root: str | Path) -> list[str]:
    """The CSVs and shards of a built set whose SHA-256 differs from its manifest (or that are missing)."""
    manifest = read_manifest(root)
    return [name for name, digest in manifest["files"].items()
            if not (Path(root) / name).is_file() or hashlib.sha256((Path(root) / name).read_bytes()).hexdigest() != digest]
