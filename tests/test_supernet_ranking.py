"""Rank-agreement statistics (scipy.stats underneath) used by the bench and the rank check."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from nas.bench.ranking import bootstrap_ci, kendall_tau, null_kendall_sd, rank_agreement, spearman_rho, top_k_overlap


def test_tau_and_rho_match_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.integers(0, 6, 20).astype(float)
        y = x + rng.normal(0, 2, 20).round()
        assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)
        assert spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    # tau-b by hand for x = [1, 2, 2, 3], y = [1, 3, 2, 3]: 4 concordant, 0 discordant, one tie in each.
    assert kendall_tau([1, 2, 2, 3], [1, 3, 2, 3]) == pytest.approx(4 / 5)


def test_null_spread_matches_the_formula_and_simulation():
    assert null_kendall_sd(22) == pytest.approx(0.1527, abs=1e-3)
    rng = np.random.default_rng(0)
    draws = [stats.kendalltau(np.arange(22), rng.permutation(22)).statistic for _ in range(3000)]
    assert np.std(draws) == pytest.approx(null_kendall_sd(22), rel=0.06)


def test_top_k_overlap():
    truth = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert top_k_overlap(truth, truth, 5) == 1.0
    assert top_k_overlap(truth, truth[::-1], 5) == 0.0
    assert top_k_overlap(truth, [9, 8, 0, 1, 2, 7, 6, 5, 4, 3], 3) == pytest.approx(2 / 3)


def test_bootstrap_interval_brackets_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=22)
    proxy = truth + rng.normal(0, 0.7, size=22)
    low, high = bootstrap_ci(truth, proxy, kendall_tau, samples=500, seed=3)
    assert low < kendall_tau(truth, proxy) < high and high - low < 0.8
    assert (low, high) == bootstrap_ci(truth, proxy, kendall_tau, samples=500, seed=3)
    report = rank_agreement(truth, proxy, top_k=5, samples=300)
    assert report["n"] == 22 and report["kendall_ci"][0] <= report["kendall"] <= report["kendall_ci"][1]
    assert report["kendall"] == pytest.approx(stats.kendalltau(truth, proxy).statistic)
    assert 0 <= report["top5_overlap"] <= 1
    with pytest.raises(ValueError, match=">= 3 candidates"):
        rank_agreement([1.0, 2.0], [1.0, 2.0])
