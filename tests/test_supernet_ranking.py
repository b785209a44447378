"""Rank-agreement statistics used by the bench and the rank check, checked against values worked by hand."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from nas.ranking.statistics import bootstrap_ci, kendall_tau, null_kendall_sd, rank_agreement, spearman_rho, top_k_overlap


# Two scorings of five candidates, with a tie in the second (the bench's hand-made noise-ceiling table).
X5 = [-1.0, -1.2, -1.1, -1.5, -1.3]
Y5 = [-1.1, -1.1, -1.3, -1.6, -1.2]
# Of the 10 pairs, 7 are concordant, 2 discordant ((1, 2) and (2, 4)), and (0, 1) is tied in Y5 only:
# tau-b = (7 - 2) / sqrt(10 * 9) = 0.52705 (tau-a would be 0.5). Ranks X5: [5, 3, 4, 1, 2],
# Y5: [4.5, 4.5, 2, 1, 3]; centred, sum dx dy = 6, sum dx^2 = 10, sum dy^2 = 9.5: rho = 6 / sqrt(95) = 0.61559.
TAU_B_5, RHO_5 = 5 / 90**0.5, 6 / 95**0.5


def test_tau_b_and_rho_by_hand_with_ties():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    # tau-b by hand for x = [1, 2, 2, 3], y = [1, 3, 2, 3]: 4 concordant, 0 discordant, one tie in each.
    assert kendall_tau([1, 2, 2, 3], [1, 3, 2, 3]) == pytest.approx(4 / 5)
    # rho: ranks [1, 2.5, 2.5, 4] and [1, 3.5, 2, 3.5]; centred, sum dx dy = 3.75, sum dx^2 = sum dy^2 = 4.5
    assert spearman_rho([1, 2, 2, 3], [1, 3, 2, 3]) == pytest.approx(3.75 / 4.5)
    assert kendall_tau(X5, Y5) == pytest.approx(TAU_B_5) and spearman_rho(X5, Y5) == pytest.approx(RHO_5)
    assert np.isnan(spearman_rho([1, 1, 1], [1, 2, 3]))


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
    assert 0 <= report["top5_overlap"] <= 1


def test_rank_agreement_by_hand():
    report = rank_agreement(X5, Y5, top_k=2, samples=300)
    assert report["kendall"] == pytest.approx(TAU_B_5) and report["spearman"] == pytest.approx(RHO_5)
    # the two best by X5 are candidates {0, 2}, by Y5 {0, 1} (the tie at -1.1 keeps list order): 1 of 2
    assert report["top2_overlap"] == 0.5
    assert report["n"] == 5 and report["null_kendall_sd"] == pytest.approx((1 / 6) ** 0.5)  # sqrt(2 * 15 / (9 * 5 * 4))
    with pytest.raises(ValueError, match=">= 3 candidates"):
        rank_agreement([1.0, 2.0], [1.0, 2.0])
