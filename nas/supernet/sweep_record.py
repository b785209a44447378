"""`SweepRecord`: what a supernet budget sweep's `sweep.json` (schema `sharenas/sweep/v2`) holds,
written by `nas.supernet.sweep.run_sweep`: the policy derived at every budget, each distinct one with
its inherited score and whether it is on the front, the front's hypervolume and what it cost.
v2 names the inherited loss on the architecture split `arch_val_loss`; v1 called it `val_loss`."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from nas.records import Record
from nas.scoring import ARCH_VAL_LOSS

_LOSS = {1: "val_loss", 2: ARCH_VAL_LOSS}
"""The name of the inherited loss in a sweep.json, by version."""


@dataclass
class SweepBudget:
    """The policy (by name) derived at one parameter budget, and its parameter count."""

    budget: int
    policy: str
    params: int


@dataclass
class SweepPolicy:
    """A distinct derived policy: its inherited loss on the search's architecture split, whether it is on
    the front, its spec (the policy's JSON)."""

    policy: str
    params: int
    arch_val_loss: float
    on_front: bool
    spec: dict[str, Any]


@dataclass
class SweepRecord(Record):
    KIND = "sharenas/sweep"
    VERSION = 2

    run: str
    """The search run directory the supernet came from."""
    score: str
    """What `arch_val_loss` is."""
    budgets: list[SweepBudget]
    policies: list[SweepPolicy]
    reference_point: dict[str, float] | None
    """The hypervolume's reference point (`arch_val_loss`, `params`), when given."""
    hypervolume: float | None
    search_seconds: float | None
    """The search's compute (from its arch.json), when known."""
    sweep_seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema(), "run": self.run, "score": self.score, "budgets": [asdict(b) for b in self.budgets],
            "policies": [asdict(p) for p in self.policies], "reference_point": self.reference_point, "hypervolume": self.hypervolume,
            "search_seconds": self.search_seconds, "sweep_seconds": self.sweep_seconds,
        }

    @classmethod
    def read(cls, data: dict[str, Any], version: int) -> SweepRecord:
        loss = _LOSS[version]
        return cls(
            data["run"], data["score"], [SweepBudget(b["budget"], b["policy"], b["params"]) for b in data["budgets"]],
            [SweepPolicy(p["policy"], p["params"], p[loss], p["on_front"], p["spec"]) for p in data["policies"]],
            None if data["reference_point"] is None else {ARCH_VAL_LOSS: data["reference_point"][loss], "params": data["reference_point"]["params"]},
            data["hypervolume"], data["search_seconds"], data["sweep_seconds"],
        )

    def front(self, seconds: float | None = None) -> tuple[list[dict[str, Any]], float]:
        """The specs of the policies on the front and the compute of the search and the sweep together
        (one supernet and its derivations: the front cannot be cut at an earlier compute)."""
        if seconds is not None:
            raise ValueError("a sweep's front cannot be cut at a compute: it is one supernet and its derivations")
        return [p.spec for p in self.policies if p.on_front], (self.search_seconds or 0.0) + self.sweep_seconds
