"""The configuration reference, generated from the typed dataclasses so that it cannot drift: every
key of every config (the roots below and every section reachable from them), with its type, default
and the attribute docstring written under the field in the source (read with `ast`: a dataclass field's
docstring is the string literal right after it).

`python scripts/config_reference.py` prints the page; `mkdocs.yml` names this file as a hook, which
adds the page to the docs site at build time (`on_files`), so the site always shows the code's keys.
tests/test_config_reference.py fails when a key has no docstring or a config class is missing here.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import sys
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any, Literal, Union

import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGE = "reference/configuration.md"

ROOTS: dict[str, tuple[str, str]] = {
    "TrainConfig": ("trainer.config", "`sharenas train`, `sharenas eval`, and the training recipe of the bench and the Optuna trials"),
    "GumbelConfig": ("nas.supernet.config", "`sharenas search gumbel` (and `kind: gumbel` in `sharenas tune`)"),
    "OptunaSearchConfig": ("nas.discrete.config", "`sharenas search optuna` (and `kind: optuna` in `sharenas tune`)"),
    "ConflictConfig": ("nas.conflict.config", "`sharenas search conflict`"),
    "RankCheckConfig": ("nas.ranking.config", "`sharenas search rank-check`"),
    "PerComputeConfig": ("nas.ranking.per_compute_config", "`sharenas search per-compute`"),
    "BenchConfig": ("nas.bench.config", "`sharenas bench build`"),
    "TuneConfig": ("nas.tune.config", "`sharenas tune`"),
}
"""Each config a YAML file is loaded into (`trainer.typed_config.load_config`), with the commands that read it."""


@dataclasses.dataclass(frozen=True)
class Key:
    """One key of a config class."""

    name: str
    type: str
    default: str
    doc: str
    section: type | None
    """The dataclass of a nested section, else None."""


def roots() -> list[type]:
    return [getattr(importlib.import_module(module), name) for name, (module, _) in ROOTS.items()]


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of `cls` and its dataclass bases, by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        node = next(n for n in ast.walk(ast.parse(inspect.getsource(sys.modules[klass.__module__])))
                    if isinstance(n, ast.ClassDef) and n.name == klass.__name__)
        for stmt, after in zip(node.body, node.body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
                docs[stmt.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    return docs


def section_of(tp: Any) -> type | None:
    """The dataclass a field's type holds (also inside `X | None`), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (Union, types.UnionType):
        return next((a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)), None)
    return None


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any"
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return f"[{tp.__name__}](#{tp.__name__.lower()})"
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in typing.get_args(tp))
        return f"{origin.__name__}[{inner}]"
    return getattr(tp, "__name__", str(tp))


def yaml_value(value: Any) -> str:
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _plain_default(f: dataclasses.Field) -> Any:
    """A field's own default as plain data (not every section class can be built with no arguments)."""
    value = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def default_of(f: dataclasses.Field, section: type | None) -> str:
    """The default as YAML; for a section, the keys whose defaults differ from the section class's own."""
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if section is None or value is None:
        return f"`{yaml_value(value)}`"
    own = {f.name: _plain_default(f) for f in dataclasses.fields(section)}
    changed = {k: v for k, v in dataclasses.asdict(value).items() if own.get(k, object()) != v}
    return "section" + (f", with `{yaml_value(changed)}`" if changed else "")


def keys(cls: type) -> list[Key]:
    """The YAML keys of a config class (fields set after loading, `init=False`, are not keys)."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        section = section_of(hints[f.name])
        out.append(Key(f.name, type_name(hints[f.name]), default_of(f, section), docs.get(f.name, ""), section))
    return out


def config_classes() -> list[type]:
    """The roots, then every section reachable from them, each once, in the order first met."""
    seen: list[type] = []
    queue = roots()
    while queue:
        cls = queue.pop(0)
        if cls in seen:
            continue
        seen.append(cls)
        queue += [k.section for k in keys(cls) if k.section is not None]
    return seen


def _table(cls: type) -> list[str]:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for k in keys(cls):
        lines.append(f"| `{k.name}` | {k.type} | {k.default} | {k.doc.replace('|', '&#124;')} |")
    return lines


def render() -> str:
    """The whole reference page (markdown)."""
    users: dict[type, list[str]] = {}
    for cls in config_classes():
        for k in keys(cls):
            if k.section is not None:
                users.setdefault(k.section, []).append(f"`{k.name}` of [{cls.__name__}](#{cls.__name__.lower()})")
    lines = [
        "# Configuration reference",
        "",
        "Generated from the typed dataclasses by `scripts/config_reference.py` when the site is built. A YAML file maps",
        "onto one of the configs below; a section is a nested mapping. Unknown keys and wrong types are errors that name",
        "the dotted key, `--set a.b=c` overrides one key, and `???` marks a value you must fill in. A config that trains",
        "(TrainConfig, GumbelConfig, ConflictConfig, OptunaSearchConfig) may name a training YAML as `recipe:` (relative",
        "to its file): its sections are written over that file's, key by key. A run directory holds the resolved config",
        "as `config.yaml`.",
        "",
    ]
    root_classes = roots()
    for cls in config_classes():
        heading = "## " if cls in root_classes else "### "
        lines.append(f"{heading}{cls.__name__} {{ #{cls.__name__.lower()} }}")
        lines.append("")
        if cls in root_classes:
            lines += [f"Read by {ROOTS[cls.__name__][1]}.", ""]
        else:
            lines += [f"Section: {', '.join(users.get(cls, []))}.", ""]
        if cls.__doc__:
            lines += [" ".join(inspect.cleandoc(cls.__doc__).split()), ""]
        lines += [*_table(cls), ""]
        if cls is root_classes[-1]:
            lines += ["## Sections", "", "The nested sections of the configs above, each once.", ""]
    return "\n".join(lines)


def on_files(files: Any, config: Any) -> Any:
    """mkdocs hook: add the generated page to the site."""
    from mkdocs.structure.files import File

    sys.path.insert(0, str(ROOT))
    files.append(File.generated(config, PAGE, content=render()))
    return files


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(render())
