"""`ParetoRecord`: what a multi-objective study's `pareto.json` (schema `sharenas/pareto/v1`) holds,
built by `nas.pareto.study.pareto_results` (and written by `nas.discrete.results.write_results`): the completed trials on the front and off it, each
baseline's verdict, the hypervolume against the fixed reference point, in total and as trials
accumulate compute."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from nas.pareto.front import pareto_mask, to_minimization
from nas.records import Record


@dataclass
class Objective:
    name: str
    direction: str
    """`minimize` or `maximize`."""


@dataclass
class ParetoTrial:
    """A completed trial: its policy's name and spec (the policy's JSON), the baseline it is (if any), its objective values."""

    trial: int
    policy: str
    baseline: str | None
    objectives: dict[str, float]
    spec: dict[str, Any] | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ParetoTrial:
        return cls(data["trial"], data["policy"], data["baseline"], data["objectives"], data["spec"])


@dataclass
class Verdict:
    """A baseline's trial (None: not in the study), whether another trial dominates it, and which."""

    trial: int | None
    dominated: bool | None
    by: int | None


@dataclass
class HistoryPoint:
    """The hypervolume of the trials up to `trial` (by number) and the compute they took together."""

    trial: int
    compute_seconds: float
    hypervolume: float | None


@dataclass
class ParetoRecord(Record):
    KIND = "sharenas/pareto"
    VERSION = 1

    study: str
    objectives: list[Objective]
    reference_point: dict[str, float] | None
    hypervolume: float | None
    compute_seconds: float
    hypervolume_per_hour: float | None
    trials: int
    pareto: list[ParetoTrial]
    dominated: list[ParetoTrial]
    baselines: dict[str, Verdict]
    hypervolume_history: list[HistoryPoint]
    latency: dict[str, Any] | None = None
    """How the latency objective was measured (batch, device, precision, steps, warmup), if it is one."""

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema(), "study": self.study, "objectives": [asdict(o) for o in self.objectives],
            "reference_point": self.reference_point, "hypervolume": self.hypervolume, "compute_seconds": self.compute_seconds,
            "hypervolume_per_hour": self.hypervolume_per_hour, "trials": self.trials,
            "pareto": [asdict(t) for t in self.pareto], "dominated": [asdict(t) for t in self.dominated],
            "baselines": {name: asdict(v) for name, v in self.baselines.items()},
            "hypervolume_history": [asdict(h) for h in self.hypervolume_history], "latency": self.latency,
        }

    @classmethod
    def read(cls, data: dict[str, Any], version: int) -> ParetoRecord:
        return cls(
            data["study"], [Objective(o["name"], o["direction"]) for o in data["objectives"]], data["reference_point"],
            data["hypervolume"], data["compute_seconds"], data["hypervolume_per_hour"], data["trials"],
            [ParetoTrial.from_json(t) for t in data["pareto"]], [ParetoTrial.from_json(t) for t in data["dominated"]],
            {name: Verdict(v["trial"], v["dominated"], v["by"]) for name, v in data["baselines"].items()},
            [HistoryPoint(h["trial"], h["compute_seconds"], h["hypervolume"]) for h in data["hypervolume_history"]],
            data.get("latency"),
        )

    def front(self, seconds: float | None = None) -> tuple[list[dict[str, Any]], float | None]:
        """The specs of the policies on the front and the compute it took; at `seconds`, the front of the
        trials that had finished within that much compute (from the hypervolume history), for a
        comparison at equal compute."""
        if seconds is None:
            return [t.spec for t in self.pareto if t.spec], self.compute_seconds
        done = {h.trial: h.compute_seconds for h in self.hypervolume_history if h.compute_seconds <= seconds}
        if not done:
            raise ValueError(f"no trial of the study had finished within {seconds:g} s")
        trials = [t for t in self.pareto + self.dominated if t.trial in done and t.spec]
        values = to_minimization([[t.objectives[o.name] for o in self.objectives] for t in trials], [o.direction for o in self.objectives])
        return [t.spec for t, on_front in zip(trials, pareto_mask(values)) if on_front], max(done.values())
