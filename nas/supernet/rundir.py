"""What a Gumbel search run directory holds, and how to rebuild its supernet.

config.yaml (the resolved config), metrics.jsonl, search_state.pt (the resumable state) and, for a
few-shot search, parent_state.pt (the parent at the split) and one weights file per child,
supernet.safetensors (the final weights), gates.json (logits and probabilities), arch.json +
policy.json (derived), retrain/ (with `--retrain`). Readers of a finished run (rank check, export,
picks) build its supernet with `build_supernet` and load the weights `weights_file` names.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from search_spaces import SharingPolicy
from search_spaces.gate_space import GateSpace
from trainer import atomic
from trainer.typed_config import ConfigError, to_dict

from nas.supernet.config import GumbelConfig
from nas.supernet.gates import probabilities
from nas.supernet.model import Supernet

SUPERNET_FILE = "supernet.safetensors"
SEARCH_STATE_FILE = "search_state.pt"
PARENT_FILE = "parent_state.pt"
GATES_FILE = "gates.json"


def build_space(cfg: GumbelConfig) -> GateSpace:
    try:
        return cfg.space.build()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def build_supernet(cfg: GumbelConfig) -> Supernet:
    """The supernet of a search config (its space and weight layout), with fresh weights."""
    return Supernet(build_space(cfg), cfg.space.entangle)


def child_file(gate: str, option: int) -> str:
    """The weights file of the few-shot child whose split `gate` is fixed to `option`."""
    return f"supernet.{gate}={option}.safetensors"


def child_logits_file(gate: str, option: int) -> str:
    """The final gate logits of that child."""
    return f"{child_file(gate, option)}.logits.pt"


def weights_file(run: Path, policy: SharingPolicy, space: GateSpace) -> Path:
    """The supernet weights of a finished search that hold `policy`'s path: the one supernet, or
    for a few-shot search the child whose split gate takes `policy`'s option."""
    gates = json.loads((run / GATES_FILE).read_text()) if (run / GATES_FILE).is_file() else {}
    few_shot = gates.get("few_shot")
    if not few_shot:
        return run / SUPERNET_FILE
    option = space.normalize(space.from_policy(policy))[space.gate_names().index(few_shot["gate"])]
    return run / few_shot["files"][str(option)]


def save_weights(module: nn.Module, path: Path) -> None:
    """`module`'s weights saved atomically: a killed write leaves the previous file."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic.write_with(path, lambda tmp: save_file(tensors, str(tmp)))


def save_child(out: Path, gate: str, option: int, supernet: Supernet, logits: torch.Tensor) -> None:
    """The weights and final gate logits of the few-shot child whose `gate` is fixed to `option`."""
    save_weights(supernet, out / child_file(gate, option))
    atomic.write_with(out / child_logits_file(gate, option), lambda tmp: torch.save(logits.detach().cpu(), tmp))


def save_supernet(out: Path, supernet: Supernet, logits: torch.Tensor, cfg: GumbelConfig) -> None:
    """The final supernet weights and `gates.json`: each gate's logits and probability, the space,
    and for a few-shot search which child holds which option."""
    save_weights(supernet, out / SUPERNET_FILE)
    space, probs = supernet.space, probabilities(logits.detach()).cpu()
    gates = {
        name: {"logits": logits[g].tolist(), f"p_{space.option_names(g)[1]}": float(probs[g, 1])}
        for g, name in enumerate(space.gate_names())
    }
    record: dict[str, Any] = {"space": to_dict(cfg.space), "gates": gates}
    gate = cfg.search.few_shot_gate
    if gate is not None:
        record["few_shot"] = {"gate": gate, "files": {str(v): child_file(gate, v) for v in (0, 1)}}
    atomic.write_json(out / GATES_FILE, record)


def write_search_state(path: Path, state: dict[str, Any]) -> None:
    """`state` saved atomically: a killed write leaves the previous file."""
    atomic.write_with(path, lambda tmp: torch.save(state, tmp))


def read_search_state(path: Path, device: torch.device) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(
            f"--resume: {path.parent} holds no {path.name} (the search stopped before its first save); start it again without --resume"
        )
    return torch.load(path, map_location=device, weights_only=True)
