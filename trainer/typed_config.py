"""Typed configuration: YAML mapped onto dataclasses with strict checks, for every config of the
project (the training config is `trainer/config.py`, each search's beside it in `nas/`).

`load_config(source, cls, overrides)` is generic: any dataclass tree whose fields are nested
dataclasses, `Optional`/unions, `Literal`, `list`, `tuple`, `dict[str, ...]`, `int`, `float`,
`bool` or `str`. Unknown keys, wrong types and missing required values raise `ConfigError` whose
message names the full dotted key and the fix. The YAML value `???` marks a required value the
user has to fill in (the shipped real-data recipes use it for the dataset path). It composes every
config that trains by the one rule of `trainer.compose` (the sections over the `recipe:`, then
`--set`), and reads the old spellings that rule replaced. `parse_budget` reads the parameter budgets
of the searches ("130M").
"""
from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from trainer import atomic
from trainer.compose import OLD_SPELLINGS, RECIPE, TRAINER_SECTIONS, merge, old_spelling

T = TypeVar("T")

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")

CONFIG_FILE = "config.yaml"
"""The resolved config a run directory holds (`dump_config`), whatever wrote it."""
MISSING = "???"
"""YAML value meaning "required: set it in the file or with --set"."""


class ConfigError(ValueError):
    """A problem with user-supplied configuration; the message is one line and names the fix."""


@dataclass(frozen=True)
class _Override:
    """A `--set` value: the YAML-parsed value plus the raw text (kept for string fields)."""

    text: str
    value: Any


def parse_override(item: str) -> tuple[list[str], _Override]:
    """Split `a.b=c` into its key path and value (the value is read as a YAML scalar)."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"bad override {item!r}: write --set section.key=value")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"bad override {item!r}: the value is not valid YAML ({_yaml_problem(exc)})") from None
    return key.split("."), _Override(text, value)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file, a syntax error or a non-mapping is a `ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def load_config(source: str | Path | Mapping[str, Any], cls: type[T], overrides: Sequence[str] = ()) -> T:
    """Build `cls` from a YAML file or a mapping: an old spelling of `cls` read as the new one, the
    `key.path=value` overrides set, then, for a config that trains, its sections written over its recipe
    (relative to the file's folder; to the working directory for a mapping)."""
    is_file = isinstance(source, (str, Path))
    raw = read_yaml(source) if is_file else _copy_tree(source)
    spelling = getattr(cls, "OLD_SPELLING", None)
    upgraded = old_spelling(raw, spelling)
    if upgraded is not None:
        raw, listed = upgraded
        overrides = [*listed, *overrides]
        if is_file and str(source) not in _TOLD:
            _TOLD.add(str(source))
            print(f"{source}: {OLD_SPELLINGS[spelling]}; read as the new one", file=sys.stderr)
    for item in overrides:
        path, value = parse_override(item)
        node = raw
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"bad override {item!r}: {'.'.join(path[: i + 1])} is not a section")
            node = child
        node[path[-1]] = value
    sections = _trained_sections(cls)
    if RECIPE in raw and sections:
        raw = merge(_recipe(raw.pop(RECIPE), Path(source).parent if is_file else Path("."), sections, ()), raw)
    return _convert(raw, cls, "")


_TOLD: set[str] = set()
"""The files whose old spelling this process has reported (once each)."""


def _trained_sections(cls: Any) -> list[str]:
    """The trainer's sections `cls` holds as typed sections (a config that trains): what it takes from a recipe."""
    if not dataclasses.is_dataclass(cls):
        return []
    hints = typing.get_type_hints(cls)
    return [f.name for f in dataclasses.fields(cls) if f.name in TRAINER_SECTIONS and dataclasses.is_dataclass(hints[f.name])]


def _recipe(value: Any, base: Path, sections: list[str], seen: tuple[Path, ...]) -> dict[str, Any]:
    """`sections` of the training YAML `value` names (relative to `base`), over its own recipe if it names one."""
    value = value.value if isinstance(value, _Override) else value
    if not isinstance(value, str):
        raise ConfigError(f"recipe: {value!r} must be the path of a training YAML")
    path = base / value
    if not path.is_file():
        raise ConfigError(f"recipe: {path} does not exist; give a training YAML such as experiments/tiny/msclip.yaml")
    if path.resolve() in seen:
        raise ConfigError(f"recipe: {path} names itself through its recipes; break the loop")
    raw = read_yaml(path)
    stray = [k for k in raw if k not in (*TRAINER_SECTIONS, RECIPE)]
    if stray:
        raise ConfigError(f"recipe: {path} has the key '{stray[0]}'; a recipe is a training YAML ({', '.join(TRAINER_SECTIONS)})")
    if RECIPE in raw:
        raw = merge(_recipe(raw.pop(RECIPE), path.parent, list(TRAINER_SECTIONS), (*seen, path.resolve())), raw)
    return {k: v for k, v in raw.items() if k in sections}


_COUNT = re.compile(r"([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmgb]?)")
_COUNT_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}


def parse_budget(value: int | float | str | None, key: str) -> int | None:
    """A parameter budget as a count: "130M", "3.94M", "800k", "1.5G" (or "B"), or a number such as
    125000000 or 1.3e8; None means no budget. Rounded to the nearest integer, so that "4.1M" is
    4,100,000 although 4.1 * 10**6 is 4099999.9999999995 in binary floating point. Anything else,
    and counts <= 0, are a `ConfigError` naming `key`."""
    if value is None:
        return None
    if isinstance(value, str):
        match = _COUNT.fullmatch(value.strip().lower())
        if match is None:
            raise ConfigError(f"{key}: {value!r} is not a parameter count; write e.g. 130M, 3.9M, 800k or 125000000")
        number = float(match.group(1)) * _COUNT_SCALE[match.group(2)]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ConfigError(f"{key}: {value!r} is not a parameter count; write e.g. 130M, 3.9M, 800k or 125000000")
    if not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{key}: {value!r} must be a positive parameter count")
    return round(number)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain YAML-friendly data (tuples become lists) that `load_config` turns back into `cfg`."""
    return _plain(dataclasses.asdict(cfg))


def dump_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    atomic.write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def config_diff(a: Any, b: Any) -> list[str]:
    """Dotted keys whose values differ between two configs of the same class."""
    return _diff(to_dict(a), to_dict(b), "")


def _diff(a: Any, b: Any, prefix: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in list(a) + [k for k in b if k not in a]:
            out += _diff(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix[:-1]]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _parsed(value: Any) -> Any:
    """`value` with every `--set` value inside it as its YAML reading (a key of a partial section)."""
    if isinstance(value, _Override):
        return value.value
    if isinstance(value, dict):
        return {k: _parsed(v) for k, v in value.items()}
    return value


def _copy_tree(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy_tree(v) for k, v in value.items()}
    return value


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def _name(key: str) -> str:
    return key or "the config"


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    if isinstance(value, _Override):
        accepts_str = tp is str or (typing.get_origin(tp) in (Union, types.UnionType) and str in typing.get_args(tp))
        inner = value.value
        value = value.text.strip() if accepts_str and inner is not None and not isinstance(inner, str) else inner
    if isinstance(value, str) and value == MISSING:
        raise ConfigError(f"{_name(key)} is required: set it in the YAML file or with --set {key}=...")
    if tp is Any:
        return _parsed(value)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{_name(key)} must not be null: expected {_describe(tp)}")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"{_name(key)} is {value!r}: expected {_describe(tp)}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if any(value == c and type(value) is type(c) for c in choices):
            return value
        raise ConfigError(f"{_name(key)} is {value!r}: expected {_describe(tp)}")
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(value, tp, key)
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        return _convert_sequence(value, tp, key)
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{_name(key)} is {value!r}: expected a mapping")
        args = typing.get_args(tp) or (str, Any)
        return {_convert(k, args[0], f"{key}[{k!r}]"): _convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads `1e-3` (no dot) as a string
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"config field {key!r} has unsupported type {tp!r}")
    if value is None:
        raise ConfigError(f"{_name(key)} must not be null: expected {_describe(tp)}")
    raise ConfigError(f"{_name(key)} is {value!r} ({type(value).__name__}): expected {_describe(tp)}")


def _convert_sequence(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp) or tp
    args = typing.get_args(tp)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{_name(key)} is {value!r}: expected a list")
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            raise ConfigError(f"{_name(key)} has {len(value)} items: expected {len(args)}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    item = args[0] if args else Any
    items = [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _convert_dataclass(value: Any, cls: type, key: str) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(f"{_name(key)} is {value!r}: expected a mapping with keys {', '.join(f.name for f in dataclasses.fields(cls))}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    prefix = f"{key}." if key else ""
    unknown = [k for k in value if k not in fields]
    if unknown:
        where = f"under '{key}'" if key else "at the top level"
        raise ConfigError(
            f"unknown key '{prefix}{unknown[0]}': valid keys {where} are {', '.join(fields)}"
        )
    kwargs = {}
    for name, f in fields.items():
        if name in value:
            kwargs[name] = _convert(value[name], hints[name], prefix + name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{prefix}{name} is required: set it in the YAML file or with --set {prefix}{name}=...")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        message = str(exc)
        raise ConfigError(message if key and message.startswith(key) else f"{_name(key)}: {message}") from None
