"""`RankCheckRecord`: what a rank check's `rank_check.json` (schema `sharenas/rank-check/v1`) holds,
written by `nas.ranking.rank_check.run_rank_check`: every proxy's agreement with the bench's ground
truth, the noise ceiling it is measured against, each policy's truth and proxy scores, the picks
within the search's budget and the config it ran with. The first rank checks carried no schema and no
`kept`; they still read."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.typed_config import load_config, to_dict

from nas.ranking.config import RankCheckConfig
from nas.records import Record, present


@dataclass
class RankCheckRecord(Record):
    KIND = "sharenas/rank-check"
    VERSION = 1
    UNLABELLED = 1

    bench: str
    """The bench table the truth comes from."""
    truth_metric: str
    score_precision: str
    """The precision the proxies were scored in."""
    truth: str
    """The ground truth, in words."""
    bench_score_precision: str
    n: int
    """How many bench policies (those in the supernet's space) were ranked."""
    picks: list[dict[str, Any]] | None
    """What each proxy picks within the search's budget (`nas.ranking.picks`), with a supernet proxy."""
    skipped_outside_space: list[str]
    supernet_run: str | None
    runs: dict[str, dict[str, Any]]
    """Proxy -> what scoring it ran (its search run and seconds, or its CPU seconds)."""
    noise_ceiling: dict[str, Any]
    proxies: dict[str, dict[str, Any]]
    """Proxy -> its rank agreement with the truth (Kendall, Spearman, top-k with intervals) and its ratio to the ceiling."""
    policies: dict[str, dict[str, Any]]
    """Policy -> its truth, parameters and every proxy's score."""
    config: RankCheckConfig
    val_loss_chance: float | None
    kept: list[str] | None = None
    """The proxies copied from the previous result (`keep`), not rescored."""

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema(), "bench": self.bench, "truth_metric": self.truth_metric, "score_precision": self.score_precision,
            "truth": self.truth, "bench_score_precision": self.bench_score_precision, "n": self.n, "picks": self.picks,
            "skipped_outside_space": self.skipped_outside_space, "supernet_run": self.supernet_run, "runs": self.runs,
            **present(kept=self.kept), "noise_ceiling": self.noise_ceiling, "proxies": self.proxies, "policies": self.policies,
            "config": to_dict(self.config), "val_loss_chance": self.val_loss_chance,
        }

    @classmethod
    def read(cls, data: dict[str, Any], version: int) -> RankCheckRecord:
        return cls(
            data["bench"], data["truth_metric"], data["score_precision"], data["truth"], data["bench_score_precision"], data["n"],
            data["picks"], data["skipped_outside_space"], data["supernet_run"], data["runs"], data["noise_ceiling"], data["proxies"],
            data["policies"], load_config(data["config"], RankCheckConfig), data["val_loss_chance"], data.get("kept"),
        )
