"""Seed spread that a difference can be judged by. A policy's std over two or three seeds has one or
two degrees of freedom, so it understates the noise more often than not (with one, in 68% of cases); and a seed's effect is largely
shared across policies (the same seed is good or bad for all of them). Hence:

- the pooled seed std of a metric: the within-policy variance pooled over every policy, with
  sum(n_i - 1) degrees of freedom;
- each policy's difference from a reference policy paired by seed: the mean over the seeds both have
  of (policy - reference), its standard error (std of the differences, ddof 1, over sqrt n) and a 95%
  Student-t interval with n - 1 degrees of freedom.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats


def finite(value: Any) -> float | None:
    """`value` as a float, None where it is None, NaN or infinite (JSON has no NaN)."""
    value = float(value) if value is not None else float("nan")
    return value if np.isfinite(value) else None


def pooled_std(runs: pd.DataFrame, column: str) -> dict[str, Any]:
    """`runs`: one row per (policy, seed). `std` is None when no policy has two seeds (`df` 0)."""
    values = runs.dropna(subset=[column])
    grouped = values.groupby("policy")[column]
    df = int((grouped.count() - 1).sum())
    squares = float(((values[column] - grouped.transform("mean")) ** 2).sum())
    return {"std": float(np.sqrt(squares / df)) if df else None, "df": df, "policies": int((grouped.count() >= 2).sum())}


def paired_differences(runs: pd.DataFrame, column: str, reference: str, level: float = 0.95) -> pd.DataFrame:
    """Per policy other than `reference`: the `seeds` both have and their number `n`, the `mean` of
    policy - reference over them, its `se` and the `level` interval (`low`, `high`); NaN where n is too
    small for a value."""
    wide = runs.pivot(index="seed", columns="policy", values=column)
    diff = wide.drop(columns=reference).sub(wide[reference], axis=0)
    out = pd.DataFrame({"n": diff.count(), "mean": diff.mean(), "se": diff.std(ddof=1) / np.sqrt(diff.count())})
    out["seeds"] = [diff[name].dropna().index.tolist() for name in out.index]
    with np.errstate(invalid="ignore", divide="ignore"):
        out["low"], out["high"] = stats.t.interval(level, out["n"] - 1, loc=out["mean"], scale=out["se"])
    return out


def paired_records(runs: pd.DataFrame, columns: list[str], reference: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Policy -> column -> {mean, se, n, ci95, seeds} of its difference from `reference` paired by seed;
    empty when the reference has no runs."""
    if reference not in set(runs["policy"]):
        return {}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for column in columns:
        for name, row in paired_differences(runs, column, reference).iterrows():
            out.setdefault(name, {})[column] = {
                "mean": finite(row["mean"]), "se": finite(row["se"]), "n": int(row["n"]),
                "ci95": [finite(row["low"]), finite(row["high"])], "seeds": [int(s) for s in row["seeds"]],
            }
    return out
