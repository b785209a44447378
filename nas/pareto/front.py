"""Pareto dominance and hypervolume over objective vectors.

Every function takes values already turned into minimization (`to_minimization` negates the maximized
objectives, and the reference point with them). The hypervolume is Optuna's (WFG algorithm), of the
region dominated by the points and bounded by the reference point; a point not strictly better than
the reference point in every objective adds nothing.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from optuna._hypervolume import compute_hypervolume


def to_minimization(values: Sequence[Sequence[float]], directions: Sequence[str]) -> np.ndarray:
    """`values` (rows of objective vectors) with the `maximize` columns negated."""
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return np.asarray(values, dtype=float).reshape(-1, len(directions)) * signs


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """`a` is no worse than `b` in every objective and better in one (minimization)."""
    return bool(np.all(a <= b) and np.any(a < b))


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """True for the points no other point dominates (equal points are all kept)."""
    points = np.asarray(points, dtype=float)
    return np.array([not any(dominates(q, p) for q in points) for p in points], dtype=bool)


def hypervolume(points: np.ndarray, reference: Sequence[float]) -> float:
    """The hypervolume of `points` against `reference` (minimization)."""
    ref = np.asarray(reference, dtype=float)
    points = np.asarray(points, dtype=float).reshape(-1, ref.size)
    inside = points[np.all(points < ref, axis=1)]
    if inside.size == 0:
        return 0.0
    return float(compute_hypervolume(inside[pareto_mask(inside)], ref, assume_pareto=True))


@dataclass(frozen=True)
class Dominance:
    dominated: bool
    by: int | None
    """The index of the front member that dominates it with the best first objective; None if not dominated."""


def dominated_by(point: np.ndarray, others: np.ndarray, exclude: int | None = None) -> Dominance:
    """Whether some row of `others` (other than row `exclude`, the point itself) dominates `point`,
    and which: of the dominating rows on the front, the one best in the first objective (the loss)."""
    others = np.asarray(others, dtype=float)
    front = pareto_mask(others)
    hits = [i for i, q in enumerate(others) if i != exclude and dominates(q, np.asarray(point))]
    if not hits:
        return Dominance(False, None)
    on_front = [i for i in hits if front[i]] or hits
    return Dominance(True, min(on_front, key=lambda i: (others[i][0], i)))
