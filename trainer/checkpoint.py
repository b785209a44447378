"""Training checkpoints: written atomically, loaded without executing pickled code.

Layout of one checkpoint, `RUN_DIR/checkpoints/step_00001234/`:
- `model.safetensors`: the model's state dict;
- `optimizer.safetensors` + the `optimizer` entry of `state.json`: optimizer tensors and hyperparameters;
- `state.json`: format id, position in training (step, epoch, step in epoch) and counters;
- `rng-rank{R}.json`: the Python, NumPy, torch (and CUDA) generator states of process R.

A checkpoint is assembled in a hidden temporary directory and renamed into place, then the
`checkpoints/latest` pointer is replaced atomically; a crash at any moment leaves the previous
checkpoint intact and `latest` pointing at it.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from trainer import atomic
from trainer.distributed import World, barrier

FORMAT = "sharenas/checkpoint/v1"
CHECKPOINTS = "checkpoints"
LATEST = "latest"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or does not fit the model; the message names the path."""


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


# ---- random generator states --------------------------------------------------------------------


def capture_rng(device: torch.device | None = None) -> dict[str, Any]:
    """The Python, NumPy and torch generator states as JSON-friendly data."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().tolist(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device).tolist()
    return state


def restore_rng(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Put back generator states captured by `capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if device is not None and device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(torch.tensor(state["cuda"], dtype=torch.uint8), device)


# ---- optimizer state <-> (tensors, JSON) --------------------------------------------------------


def _optimizer_parts(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for index, entry in sd["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().cpu().clone()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for flat, value in [*tensors.items(), *meta["scalars"].items()]:
        index, key = flat.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


# ---- writing ------------------------------------------------------------------------------------


def save_checkpoint(
    run_dir: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    world: World,
    keep: int = 1,
) -> Path:
    """Write a checkpoint of training position `state` (needs `step`); every process must call this.

    Process 0 writes the model and optimizer (identical on all processes under DDP); every process
    writes its own generator states. Only the newest `keep` checkpoints are kept.
    """
    root = Path(run_dir) / CHECKPOINTS
    name = checkpoint_name(state["step"])
    tmp = root / f".tmp-{name}"
    if world.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(world)
    atomic.write_json(tmp / f"rng-rank{world.rank}.json", capture_rng(world.device), indent=None)
    barrier(world)
    final = root / name
    if world.is_main:
        weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        atomic.write_with(tmp / MODEL_FILE, lambda file: save_file(weights, str(file)))
        tensors, meta = _optimizer_parts(optimizer)
        atomic.write_with(tmp / OPTIMIZER_FILE, lambda file: save_file(tensors, str(file)))
        atomic.write_json(tmp / STATE_FILE, {"format": FORMAT, **state, "world_size": world.world_size, "optimizer": meta}, indent=None)
        if final.exists():
            stale = root / f".old-{name}"
            shutil.rmtree(stale, ignore_errors=True)
            os.replace(final, stale)
            os.replace(tmp, final)
            shutil.rmtree(stale)
        else:
            os.replace(tmp, final)
        atomic.write_text(root / LATEST, name + "\n")  # its directory fsync also makes the rename above durable
        for old in list_checkpoints(run_dir)[:-keep]:
            if old != final:
                shutil.rmtree(old)
    barrier(world)
    return final


# ---- finding and reading ------------------------------------------------------------------------


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step_*") if p.is_dir() and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint `latest` points to, else the newest complete one, else None."""
    root = Path(run_dir) / CHECKPOINTS
    pointer = root / LATEST
    if pointer.is_file():
        target = root / pointer.read_text().strip()
        if (target / STATE_FILE).is_file():
            return target
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from a run directory (its latest) or a checkpoint directory."""
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return path
    found = latest_checkpoint(path)
    if found is None:
        raise CheckpointError(f"{path} holds no checkpoint (expected {CHECKPOINTS}/step_*/{STATE_FILE}); train first")
    return found


def read_state(checkpoint: str | Path) -> dict[str, Any]:
    """The `state.json` of a checkpoint, checked for the format id."""
    path = Path(checkpoint) / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint (format {state.get('format')!r})")
    return state


def load_model_weights(model: nn.Module, path: str | Path) -> Path:
    """Load model weights from a run directory, a checkpoint directory or a `.safetensors` file.

    Returns the file read. Missing or unexpected keys are a `CheckpointError` naming them.
    """
    path = Path(path)
    file = path if path.suffix == ".safetensors" else resolve_checkpoint(path) / MODEL_FILE
    if not file.is_file():
        raise CheckpointError(f"model weights {file} do not exist")
    tensors = load_file(str(file))
    result = model.load_state_dict(tensors, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{file} does not fit the model (missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}); "
            "build the model with the run's own policy and size"
        )
    return file


def load_checkpoint(checkpoint: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer, world: World) -> dict[str, Any]:
    """Restore model, optimizer and this process's generator states; return the training position.

    A process without its own generator file (the run was saved with fewer processes) keeps its
    freshly seeded generators; the data order does not depend on them.
    """
    checkpoint = Path(checkpoint)
    state = read_state(checkpoint)
    load_model_weights(model, checkpoint / MODEL_FILE)
    meta = state.pop("optimizer")
    optimizer.load_state_dict(_optimizer_state(load_file(str(checkpoint / OPTIMIZER_FILE)), meta))
    rng_file = checkpoint / f"rng-rank{world.rank}.json"
    if rng_file.is_file():
        restore_rng(json.loads(rng_file.read_text()), world.device)
    return state
