"""Result records: the schema id every result file of nas/ carries (`sharenas/KIND/vN`) and the one
reader, `read_record`, that picks a record class by it.

A record is a dataclass beside the code that produces its data (the bench table in `nas/bench/`, the
supernet sweep in `nas/supernet/`, the Pareto front of a study in `nas/pareto/`, the rank check in
`nas/ranking/`), with `to_json` and `read` (`search_spaces.ArchRecord`, arch.json, is the model). A
record class reads every version of its kind up to its own and writes its own. A reader names the
kinds it accepts; a file of any other schema is refused in one line that names the schema and those
kinds. A file without a schema is read only by a reader that accepts one kind taking such files
(`UNLABELLED`: the version they are read as; the first rank checks carried no schema).
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from search_spaces.json_file import read_json
from trainer.typed_config import ConfigError

R = TypeVar("R", bound="Record")


class RecordError(ConfigError):
    """A result file that is not what its reader takes: another or a newer schema, corrupt, or an entry
    missing or malformed. The message is one line that names the file or the entry."""


class Record(ABC):
    """A result record; `KIND` and `VERSION` (the one written) make its schema id."""

    KIND: ClassVar[str]
    VERSION: ClassVar[int]
    UNLABELLED: ClassVar[int | None] = None
    """The version a file without a schema is read as (None: such a file is refused)."""

    @classmethod
    def schema(cls) -> str:
        return f"{cls.KIND}/v{cls.VERSION}"

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """The JSON object, `schema` first."""

    @classmethod
    @abstractmethod
    def read(cls: type[R], data: dict[str, Any], version: int) -> R:
        """The record of `data`, a JSON object of this kind at `version`; a missing entry is a KeyError."""

    @classmethod
    def from_json(cls: type[R], data: Any) -> R:
        kind, version = identify(data, (cls,))
        return _read(kind, data, version)

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        return read_record(path, cls)


def identify(data: Any, kinds: tuple[type[R], ...]) -> tuple[type[R], int]:
    """The kind among `kinds` and the version of the JSON object `data`, by its `schema`."""
    known = ", ".join(k.schema() for k in kinds)
    if not isinstance(data, dict):
        raise RecordError(f"expected a JSON object ({known}), got {type(data).__name__}")
    schema = data.get("schema")
    if schema is None:
        takes = [k for k in kinds if k.UNLABELLED is not None]
        if len(takes) != 1:
            raise RecordError(f"no schema; this reads {known}")
        return takes[0], int(takes[0].UNLABELLED)
    match = re.fullmatch(r"(.+)/v(\d+)", schema) if isinstance(schema, str) else None
    kind = next((k for k in kinds if match is not None and k.KIND == match.group(1) and int(match.group(2)) >= 1), None)
    if kind is None:
        raise RecordError(f"schema {schema!r} is not one this reads ({known})")
    version = int(match.group(2))
    if version > kind.VERSION:
        raise RecordError(f"schema {schema!r} was written by a newer sharenas (this one reads up to {kind.schema()}); upgrade sharenas")
    return kind, version


def _read(kind: type[R], data: dict[str, Any], version: int) -> R:
    try:
        return kind.read(data, version)
    except RecordError:
        raise
    except KeyError as exc:
        raise RecordError(f"no {exc.args[0]!r} entry; a {kind.KIND} record has one") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise RecordError(f"not a {kind.schema()} record ({exc})") from None


def read_record(path: str | Path, *kinds: type[R]) -> R:
    """The record in the JSON file `path`, of one of `kinds`; every error is one line naming the file."""
    path = Path(path)
    data = read_json(path, RecordError, "not found", "is not readable JSON ({why})")
    try:
        kind, version = identify(data, kinds)
        return _read(kind, data, version)
    except RecordError as exc:
        raise RecordError(f"{path}: {exc}") from None


def present(**entries: Any) -> dict[str, Any]:
    """The entries whose value is set (a record's optional entries are written only then)."""
    return {k: v for k, v in entries.items() if v is not None}
