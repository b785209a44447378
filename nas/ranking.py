"""Rank agreement between two scorings of the same candidates (higher score = better): Kendall's
tau-b, Spearman's rho, top-k overlap, and percentile bootstrap confidence intervals over candidates.

Small-n statistics in NumPy (n is ~20 trained models): tau-b and average ranks handle the ties that
bootstrap resampling creates.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Statistic = Callable[[np.ndarray, np.ndarray], float]


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either ranking adjust the denominator); NaN when a ranking is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    i, j = np.triu_indices(len(x), k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    concordance = float((dx * dy).sum())
    denom = np.sqrt(float((dx != 0).sum()) * float((dy != 0).sum()))
    return concordance / denom if denom > 0 else float("nan")


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with tied values sharing their mean rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=float)
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0
            start = end
    return ranks


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of the average ranks; NaN when a ranking is constant."""
    rx, ry = average_ranks(np.asarray(x, dtype=float)), average_ranks(np.asarray(y, dtype=float))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = float(np.sqrt((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum()) / denom if denom > 0 else float("nan")


def top_k_overlap(x: Sequence[float], y: Sequence[float], k: int = 5) -> float:
    """Fraction of the k best candidates by `x` that are also among the k best by `y`."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    k = min(k, len(x))
    best_x = set(np.argsort(-x, kind="mergesort")[:k].tolist())
    best_y = set(np.argsort(-y, kind="mergesort")[:k].tolist())
    return len(best_x & best_y) / k


def bootstrap_ci(
    x: Sequence[float], y: Sequence[float], statistic: Statistic, samples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of `statistic` over candidates resampled with replacement (NaN draws,
    e.g. every resampled candidate identical, are left out)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(samples):
        index = rng.integers(0, len(x), len(x))
        value = statistic(x[index], y[index])
        if np.isfinite(value):
            draws.append(value)
    if not draws:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(draws, [tail, 100.0 - tail])
    return float(low), float(high)


def rank_agreement(truth: Sequence[float], proxy: Sequence[float], top_k: int = 5, samples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Kendall tau, Spearman rho and top-k overlap of `proxy` against `truth`, each with a 95% bootstrap interval."""
    if len(truth) != len(proxy) or len(truth) < 3:
        raise ValueError(f"rank agreement needs two equally long score lists of >= 3 candidates, got {len(truth)} and {len(proxy)}")
    out: dict[str, float] = {"n": float(len(truth))}
    stats: dict[str, Statistic] = {
        "kendall_tau": kendall_tau,
        "spearman_rho": spearman_rho,
        f"top{top_k}_overlap": lambda a, b: top_k_overlap(a, b, top_k),
    }
    for name, stat in stats.items():
        out[name] = stat(np.asarray(truth, dtype=float), np.asarray(proxy, dtype=float))
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = bootstrap_ci(truth, proxy, stat, samples, seed=seed)
    return out
