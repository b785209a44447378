"""`BenchRecord`: a bench table (schema `sharenas/bench/v2`), what `sharenas bench show --json` writes
and every reader of the ground truth takes: per policy its runs by seed and their summaries, the noise
ceilings, the training-length study, the paper check, chance levels and the pooled seed std, under the
bench config the runs were built with.

v2 records that config as data (the resolved `BenchConfig`); v1 held the YAML text of the bench's
config.yaml, which is parsed once here on reading. A file without a schema (a hand-written table) is
read as v1. Optional entries are written only when set: a table without them (an older one, or one of
a single seed) still reads, and writes back what it read.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from trainer.typed_config import load_config, to_dict

from nas.bench.config import BenchConfig
from nas.records import Record, present

LOWER_IS_BETTER = {"val_loss"}
"""The bench metrics where lower is better (every other one is higher-better)."""
_RUN_ENTRIES = ("seed", "steps", "train_seconds", "train_loss", "curve", "score_precision", "best")
"""The entries of a run that are not its scores (every other entry is a column's final score)."""


@dataclass
class BenchRun:
    """One standalone run of a policy: its seed, the final score of every column, its scored points."""

    seed: int
    scores: dict[str, float | None]
    """Column -> final score (the table's columns, e.g. `val_loss`)."""
    steps: int | None = None
    train_seconds: float | None = None
    train_loss: float | None = None
    curve: list[dict[str, Any]] = field(default_factory=list)
    """The scored points of the run (the entry record's `curve`: step, epoch, val_loss, metrics)."""
    score_precision: str | None = None
    best: dict[str, dict[str, float] | None] | None = None
    """Per column: the best value over the curve and the epoch it came at (curves that scored every column)."""

    def to_json(self) -> dict[str, Any]:
        return {"seed": self.seed, "steps": self.steps, "train_seconds": self.train_seconds, "train_loss": self.train_loss,
                **self.scores, "curve": self.curve, **present(score_precision=self.score_precision, best=self.best)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchRun:
        return cls(data["seed"], {k: v for k, v in data.items() if k not in _RUN_ENTRIES}, data.get("steps"), data.get("train_seconds"),
                   data.get("train_loss"), data.get("curve", []), data.get("score_precision"), data.get("best"))


@dataclass
class BenchPolicy:
    """A policy of the table: its parameters and spec (the policy's JSON), its runs and their summaries."""

    params: int
    policy: dict[str, Any]
    mean: dict[str, float | None] = field(default_factory=dict)
    """Column -> mean over the runs."""
    std: dict[str, float | None] = field(default_factory=dict)
    """Column -> std over the runs (ddof 1)."""
    shared_sublayers: int | None = None
    runs: list[BenchRun] = field(default_factory=list)
    best_mean: dict[str, dict[str, float | None]] | None = None
    """Column -> the mean over runs of their best value and of its epoch."""
    vs_reference: dict[str, dict[str, Any] | None] | None = None
    """Column -> the difference from the reference policy, paired by seed."""

    def run(self, seed: int) -> BenchRun | None:
        return next((r for r in self.runs if r.seed == seed), None)

    def to_json(self) -> dict[str, Any]:
        return {"params": self.params, "policy": self.policy, "shared_sublayers": self.shared_sublayers, "mean": self.mean, "std": self.std,
                **present(best_mean=self.best_mean, vs_reference=self.vs_reference), "runs": [r.to_json() for r in self.runs]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchPolicy:
        return cls(data["params"], data["policy"], data["mean"], data.get("std", {}), data.get("shared_sublayers"),
                   [BenchRun.from_json(r) for r in data.get("runs", [])], data.get("best_mean"), data.get("vs_reference"))


@dataclass
class BenchRecord(Record):
    KIND = "sharenas/bench"
    VERSION = 2
    UNLABELLED = 1

    policies: dict[str, BenchPolicy]
    config: BenchConfig | None = None
    """The bench config the runs were built with (None: not recorded, the defaults apply)."""
    packages: dict[str, str] = field(default_factory=dict)
    noise_ceiling: dict[str, Any] | None = None
    """The seed-to-seed rank agreement of the ranking column (None: one seed per policy)."""
    entries: int | None = None
    train_wall_seconds: float | None = None
    score_precision: str | None = None
    ranking: str | None = None
    noise_ceiling_by_metric: dict[str, dict[str, Any] | None] | None = None
    length_study: list[dict[str, Any]] | None = None
    paper_check: list[dict[str, Any]] | None = None
    reference: str | None = None
    chance: dict[str, float | None] | None = None
    pooled_std: dict[str, dict[str, Any]] | None = None
    lengths: dict[str, Any] | None = None
    """The length study across benches (`sharenas bench show --lengths`)."""
    agreement: list[dict[str, Any]] | None = None
    """How each other bench ranks these policies (`sharenas bench show --compare`, repeatable)."""

    @property
    def columns(self) -> list[str]:
        """The metric columns of the table (those its policies' means have)."""
        return list(next(iter(self.policies.values())).mean)

    @property
    def ranking_metric(self) -> str:
        """The column the bench ranks by (a table built before `ranking:` existed ranks by the held-out loss)."""
        return self.ranking or "val_loss"

    @property
    def name(self) -> str | None:
        """The bench's name, when its config is recorded."""
        return None if self.config is None else self.config.name

    def bench_config(self, overrides: Sequence[str] = ()) -> BenchConfig:
        """The bench config of the table (none recorded: the defaults) with `overrides` applied."""
        if not overrides:
            return self.config or BenchConfig()
        return load_config(to_dict(self.config) if self.config is not None else {}, BenchConfig, overrides)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema(), "config": None if self.config is None else to_dict(self.config), "packages": self.packages,
            **present(entries=self.entries, train_wall_seconds=self.train_wall_seconds, score_precision=self.score_precision),
            "policies": {name: p.to_json() for name, p in self.policies.items()},
            **present(ranking=self.ranking), "noise_ceiling": self.noise_ceiling,
            **present(noise_ceiling_by_metric=self.noise_ceiling_by_metric, length_study=self.length_study, paper_check=self.paper_check,
                      reference=self.reference, chance=self.chance, pooled_std=self.pooled_std, lengths=self.lengths, agreement=self.agreement),
        }

    @classmethod
    def read(cls, data: dict[str, Any], version: int) -> BenchRecord:
        config = data.get("config")
        if version == 1:  # the YAML text of config.yaml (empty: none recorded)
            config = (yaml.safe_load(config) or {}) if config else None
        return cls(
            {name: BenchPolicy.from_json(p) for name, p in data["policies"].items()},
            None if config is None else load_config(config, BenchConfig), data.get("packages", {}), data["noise_ceiling"],
            **{k: data.get(k) for k in ("entries", "train_wall_seconds", "score_precision", "ranking", "noise_ceiling_by_metric",
                                        "length_study", "paper_check", "reference", "chance", "pooled_std", "lengths")},
            agreement=[data["agreement"]] if isinstance(data.get("agreement"), dict) else data.get("agreement"),  # v1: one comparison
        )
