"""Typed configuration: YAML mapped onto dataclasses with strict checks, and the training config.

`load_config(source, cls, overrides)` is generic: any dataclass tree whose fields are nested
dataclasses, `Optional`/unions, `Literal`, `list`, `tuple`, `dict[str, ...]`, `int`, `float`,
`bool` or `str`. Unknown keys, wrong types and missing required values raise `ConfigError` whose
message names the full dotted key and the fix. The YAML value `???` marks a required value the
user has to fill in (the shipped real-data recipes use it for the dataset path).
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from trainer import atomic
from trainer.data import DataConfig

T = TypeVar("T")

_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")

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
    """Build `cls` from a YAML file or a mapping, applying `key.path=value` overrides first."""
    raw = read_yaml(source) if isinstance(source, (str, Path)) else _copy_tree(source)
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
    return _convert(raw, cls, "")


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
        return value
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


# --------------------------------------------------------------------------------------------
# The training config
# --------------------------------------------------------------------------------------------

NoDecay = Literal["bias", "norm", "embedding", "logit_scale"]


@dataclass
class ModelConfig:
    """Which model to train: a policy (preset name or path to a policy JSON) at a size."""

    policy: str = "msclip"
    size: str = "tiny"

    def __post_init__(self) -> None:
        from search_spaces import SIZES

        if self.size not in SIZES:
            raise ConfigError(f"model.size: unknown size {self.size!r}; choose one of {', '.join(SIZES)}")


@dataclass
class OptimConfig:
    """AdamW with per-group weight decay, linear warm-up then cosine decay (paper recipe by default)."""

    lr: float = 1.6e-3
    final_lr: float = 1.6e-4
    warmup_epochs: float | None = 5.0
    warmup_steps: int | None = None
    weight_decay_shared: float = 0.2
    weight_decay_specific: float = 0.05
    no_decay: list[NoDecay] = field(default_factory=lambda: ["bias", "norm", "embedding", "logit_scale"])
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip: float | None = 1.0
    """Max global gradient norm; null disables clipping."""
    max_logit_scale: float = math.log(100.0)

    def __post_init__(self) -> None:
        if self.warmup_epochs is not None and self.warmup_steps is not None:
            raise ConfigError("set optim.warmup_epochs or optim.warmup_steps, not both (null the other)")
        if self.lr <= 0 or self.final_lr < 0:
            raise ConfigError(f"optim.lr must be > 0 and optim.final_lr >= 0, got {self.lr} and {self.final_lr}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"optim.grad_clip must be > 0 or null, got {self.grad_clip}")


@dataclass
class TrainSection:
    """Length, batch and runtime of the training run.

    `batch_size` is the global batch of one optimizer step, summed over processes and
    accumulation micro-batches; the contrastive loss always sees the whole global batch.
    """

    epochs: int | None = None
    steps: int | None = None
    batch_size: int = 256
    accum_steps: int = 1
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """`auto`: bf16 autocast on CUDA, fp32 on CPU."""
    grad_checkpointing: bool = False
    num_workers: int = 0
    num_threads: int | None = None
    """torch CPU threads per process; null leaves torch's default."""
    log_every: int = 10
    checkpoint_every: int | None = 500
    """Steps between checkpoints (one is also written at the end); null: only at the end."""
    checkpoint_on_eval: bool = False
    """Also write a checkpoint at every evaluation (a scheduler that reports evaluations resumes there)."""
    keep_checkpoints: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.steps is None):
            raise ConfigError("set exactly one of train.epochs and train.steps (null the other)")
        for name in ("epochs", "steps", "batch_size", "accum_steps", "log_every", "checkpoint_every", "keep_checkpoints", "num_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {value}")
        if self.num_workers < 0:
            raise ConfigError(f"train.num_workers must be >= 0, got {self.num_workers}")


@dataclass
class EvalConfig:
    """When to evaluate (always at the end of training) and the options of `trainer.evaluation.evaluate`."""

    every_steps: int | None = None
    every_epochs: int | None = 1
    batch_size: int = 256
    nmi_pairs: int = 32
    """Pairs for the layer-wise modality NMI; 0 skips it."""
    heldout_batch_size: int = 128
    """Batch of the held-out contrastive loss (`data.heldout_shapes`); the loss depends on it."""
    probe_C: float = 1.0

    def __post_init__(self) -> None:
        if self.nmi_pairs < 0:
            raise ConfigError(f"eval.nmi_pairs must be >= 0 (0 skips NMI), got {self.nmi_pairs}")
        for name in ("every_steps", "every_epochs", "batch_size", "heldout_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"eval.{name} must be >= 1 or null, got {value}")


@dataclass
class TrainConfig:
    """Everything a training run needs; written resolved to RUN_DIR/config.yaml."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainSection = field(default_factory=lambda: TrainSection(epochs=1))
    eval: EvalConfig = field(default_factory=EvalConfig)
