"""Does one bench predict another? The agreement of two bench tables over the policies they share
(e.g. ShareBench-tiny on generated shapes against ShareBench-real-tiny on clip art and emoji):
Kendall tau, Spearman rho and top-5 overlap of the policy means, each bench ranked by its own ranking
metric (a bench without one ranks by the held-out loss), with bootstrap intervals over policies, and
for every ablation of the paper check whether the two benches move the same way."""
from __future__ import annotations

from typing import Any

from nas.bench.record import LOWER_IS_BETTER, BenchRecord
from nas.ranking.statistics import rank_agreement


def _scores(table: BenchRecord, names: list[str]) -> tuple[str, list[float]]:
    """The table's ranking metric and its policy means over `names`, oriented so that higher is better."""
    metric = table.ranking_metric
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    return metric, [sign * table.policies[n].mean[metric] for n in names]


def bench_agreement(table: BenchRecord, other: BenchRecord, other_name: str, bootstrap: int = 2000, seed: int = 0) -> dict[str, Any]:
    """How `other` (named `other_name`) ranks the policies of `table`, each by its own ranking metric,
    over the policies with the same name and layout in both."""
    names = [n for n, p in table.policies.items() if n in other.policies and other.policies[n].policy == p.policy]
    if len(names) < 3:
        raise ValueError(f"{other_name} shares {len(names)} policies with this bench; an agreement needs 3")
    (metric, ours), (other_metric, theirs) = _scores(table, names), _scores(other, names)
    result = rank_agreement(ours, theirs, samples=bootstrap, seed=seed)
    return {"against": other_name, "metric": metric, "other_metric": other_metric, "policies": names, **result,
            "paper_directions": _directions(table.paper_check or [], other.paper_check or [])}


def _gain(row: dict[str, Any]) -> tuple[float | None, float | None]:
    if "paper_spearman" in row:
        return row["tiny_spearman"], None
    return row["tiny_val_loss_gain"], row.get("tiny_val_loss_gain_se")


def _directions(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per ablation in both paper checks: each bench's effect (held-out loss of B minus A, or the
    share-last-K Spearman), whether the two benches agree in sign, and whether each agrees with the paper."""
    index = {(r["table"], r["a"], r["b"]): r for r in theirs}
    out = []
    for row in ours:
        other = index.get((row["table"], row["a"], row["b"]))
        if other is None:
            continue
        (gain, se), (other_gain, other_se) = _gain(row), _gain(other)
        paper = row.get("paper_spearman", row.get("paper_zeroshot_diff"))
        out.append({
            "table": row["table"], "a": row["a"], "b": row["b"], "effect": row["effect"], "paper": paper,
            "this": gain, "this_se": se, "other": other_gain, "other_se": other_se,
            "benches_agree": (gain > 0) == (other_gain > 0), "this_agrees_with_paper": (gain > 0) == (paper > 0),
            "other_agrees_with_paper": (other_gain > 0) == (paper > 0),
        })
    return out
