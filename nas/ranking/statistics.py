"""Rank agreement between two scorings of the same candidates (higher score = better): Kendall's
tau-b, Spearman's rho and top-k overlap (scipy.stats), each with a paired percentile bootstrap
interval over candidates (scipy.stats.bootstrap).

With n candidates, the spread of Kendall's tau under no agreement at all is about
sqrt(2(2n+5) / (9n(n-1))) (0.15 at n = 22, 0.12 at n = 31): intervals are wide at bench sizes, and
more candidates, not more decimals, make a figure meaningful.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

Statistic = Callable[[np.ndarray, np.ndarray], float]


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b; NaN when a ranking is constant."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.kendalltau(x, y).statistic)


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (ties share their mean rank); NaN when a ranking is constant."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.spearmanr(x, y).statistic)


def top_k_overlap(x: Sequence[float], y: Sequence[float], k: int = 5) -> float:
    """Fraction of the k best candidates by `x` that are also among the k best by `y`."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    k = min(k, len(x))
    best_x = set(np.argsort(-x, kind="mergesort")[:k].tolist())
    best_y = set(np.argsort(-y, kind="mergesort")[:k].tolist())
    return len(best_x & best_y) / k


def null_kendall_sd(n: int) -> float:
    """Standard deviation of Kendall's tau between two independent rankings of n candidates."""
    return float(np.sqrt(2 * (2 * n + 5) / (9 * n * (n - 1))))


def bootstrap_ci(
    x: Sequence[float], y: Sequence[float], statistic: Statistic, samples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of `statistic` over candidates resampled in pairs with replacement; draws
    where the statistic is undefined (e.g. every resampled candidate tied) are left out."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)

    def finite(a: np.ndarray, b: np.ndarray) -> float:
        value = statistic(a, b)
        return value if np.isfinite(value) else np.nan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (x, y), finite, paired=True, vectorized=False, n_resamples=samples, confidence_level=level,
            method="percentile", rng=np.random.default_rng(seed),
        )
    low, high = result.confidence_interval
    if not (np.isfinite(low) and np.isfinite(high)):
        draws = result.bootstrap_distribution[np.isfinite(result.bootstrap_distribution)]
        if draws.size == 0:
            return float("nan"), float("nan")
        tail = (1.0 - level) / 2.0 * 100.0
        low, high = np.percentile(draws, [tail, 100.0 - tail])
    return float(low), float(high)


def rank_agreement(truth: Sequence[float], proxy: Sequence[float], top_k: int = 5, samples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Kendall tau, Spearman rho and top-k overlap of `proxy` against `truth`, each with a 95% bootstrap
    interval, plus `n` and the no-agreement spread of tau."""
    if len(truth) != len(proxy) or len(truth) < 3:
        raise ValueError(f"rank agreement needs two equally long score lists of >= 3 candidates, got {len(truth)} and {len(proxy)}")
    truth_a, proxy_a = np.asarray(truth, dtype=float), np.asarray(proxy, dtype=float)
    out: dict[str, float] = {"n": len(truth_a), "null_kendall_sd": null_kendall_sd(len(truth_a))}
    measures: dict[str, Statistic] = {
        "kendall": kendall_tau,
        "spearman": spearman_rho,
        f"top{top_k}_overlap": lambda a, b: top_k_overlap(a, b, top_k),
    }
    for name, stat in measures.items():
        out[name] = stat(truth_a, proxy_a)
        out[f"{name}_ci"] = list(bootstrap_ci(truth_a, proxy_a, stat, samples, seed=seed))
    return out
