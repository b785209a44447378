"""The training-length study across benches: the same policies and seeds trained with schedules of
different lengths (one bench each), and at each length how well seed 0 and seed 1 rank the policies
alike on every metric, beside what the length costs. The knee is the shortest length whose
seed-to-seed Kendall tau of the ground-truth metric comes within one bootstrap standard error of the
best tau over the lengths: longer training past it buys no repeatability that this many policies
can show."""
from __future__ import annotations

from typing import Any

from nas.bench.record import BenchRecord

KNEE_METRIC = "val_loss"


def _row(table: BenchRecord) -> dict[str, Any]:
    runs = [r for p in table.policies.values() for r in p.runs]
    steps = sorted({r.steps for r in runs})
    if len(steps) != 1:
        raise ValueError(f"a length-study bench trains every run equally long; this one has runs of {steps} steps")
    ceilings = table.noise_ceiling_by_metric or {}
    return {
        "steps": steps[0], "epochs": round(max(c["epoch"] for r in runs for c in r.curve), 3), "runs": len(runs),
        "train_hours": sum(r.train_seconds for r in runs) / 3600,
        "kendall": {m: (a or {}).get("kendall") for m, a in ceilings.items()},
        "kendall_ci": {m: (a or {}).get("kendall_ci") for m, a in ceilings.items()},
        "spearman": {m: (a or {}).get("spearman") for m, a in ceilings.items()},
        "pooled_std": {m: v["std"] for m, v in (table.pooled_std or {}).items()},
    }


def length_comparison(tables: list[BenchRecord], metric: str = KNEE_METRIC) -> dict[str, Any]:
    """Rows by length (shortest first) and the knee of `metric` (see the module docstring)."""
    rows = sorted((_row(t) for t in tables), key=lambda r: r["steps"])
    if len(rows) < 2:
        raise ValueError("a length study needs benches at two or more lengths")
    taus = [r["kendall"][metric] for r in rows]
    best = max(range(len(rows)), key=lambda i: taus[i])
    low, high = rows[best]["kendall_ci"][metric]
    se = (high - low) / (2 * 1.96)
    knee = next(r for r, tau in zip(rows, taus) if tau >= taus[best] - se)
    return {"metric": metric, "rows": rows, "best_steps": rows[best]["steps"], "best_kendall_se": se, "knee_steps": knee["steps"],
            "knee_epochs": knee["epochs"]}
