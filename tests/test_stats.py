"""Confidence intervals, significance and the Pareto front against known cases."""

import numpy as np
import pytest
from scipy import stats as sps

from harness import stats


def test_t_interval_known_case():
    ci = stats.t_interval([1.0, 2.0, 3.0])
    half = sps.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)  # sd = 1
    assert ci["mean"] == 2.0 and ci["lo"] == pytest.approx(2 - half) and ci["hi"] == pytest.approx(2 + half)


def test_one_value_has_no_interval():
    assert stats.t_interval([0.5]) == {"mean": 0.5, "lo": None, "hi": None, "n": 1}
    assert stats.t_interval([None])["mean"] is None


def test_fast_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 50).astype(float), rng.normal(size=50)
    assert stats.fast_spearman(x, y) == pytest.approx(sps.spearmanr(x, y).statistic)


def test_bootstrap_ci_brackets_the_point_and_narrows_with_more_pairs():
    rng = np.random.default_rng(1)
    gold = rng.random(400)
    cos = gold + rng.normal(scale=0.3, size=400)
    wide = stats.bootstrap_spearman([cos[:50]], gold[:50], n_boot=500)
    narrow = stats.bootstrap_spearman([cos], gold, n_boot=500)
    assert wide["lo"] < wide["mean"] < wide["hi"] and narrow["lo"] < narrow["mean"] < narrow["hi"]
    assert narrow["hi"] - narrow["lo"] < wide["hi"] - wide["lo"]
    assert stats.bootstrap_spearman([cos], gold, n_boot=200) == stats.bootstrap_spearman([cos], gold, n_boot=200)


def test_paired_test_identical_models_are_not_different():
    rng = np.random.default_rng(2)
    gold = rng.random(200)
    cos = gold + rng.normal(scale=0.2, size=200)
    out = stats.paired_spearman_test([cos], [cos.copy()], gold, n_boot=300)
    assert out["diff"] == 0 and out["p_value"] == 1.0 and not out["significant"]


def test_paired_test_detects_a_clearly_better_model():
    rng = np.random.default_rng(3)
    gold = rng.random(300)
    good = gold + rng.normal(scale=0.05, size=300)
    bad = gold + rng.normal(scale=0.8, size=300)
    out = stats.paired_spearman_test([good], [bad], gold, n_boot=500)
    assert out["diff"] > 0 and out["significant"] and out["p_value"] < 0.01
    assert out["lo"] > 0


def test_pareto_front_hand_made():
    # (cost, quality): A cheap+bad, B mid+good, C expensive+best, D dominated by B, E ties B's cost, worse
    costs = [1.0, 2.0, 5.0, 3.0, 2.0]
    quality = [0.5, 0.8, 0.9, 0.7, 0.6]
    assert stats.pareto_front(costs, quality) == [True, True, True, False, False]
