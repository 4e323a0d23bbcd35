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


# --- clustered statistics ------------------------------------------------------------------------

def test_weighted_spearman_equals_spearman_on_the_expanded_data():
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 12, 60).astype(float), rng.integers(0, 5, 60).astype(float)  # many ties on both
    weights = rng.integers(0, 4, (6, 60)).astype(float)
    expected = [stats.fast_spearman(np.repeat(x, w.astype(int)), np.repeat(y, w.astype(int))) for w in weights]
    assert stats.weighted_spearman(x, y, weights) == pytest.approx(expected, abs=1e-12)


def _clustered_sample(rng, *, n_groups, per_group, rho, noise):
    """Each group is one underlying pair (a latent bivariate normal with correlation rho), repeated
    per_group times with a little row noise, like one profile pair worded several ways."""
    latent = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n_groups)
    rows = np.repeat(latent, per_group, axis=0) + rng.normal(scale=noise, size=(n_groups * per_group, 2))
    return rows[:, 0], rows[:, 1], np.repeat(np.arange(n_groups), per_group).astype(str)


def _coverage(method, *, replications=200, rho=0.5, noise=0.1):
    # The truth: Spearman of a bivariate normal with correlation r is (6/pi) asin(r/2); with the row
    # noise the rows' correlation is rho / (1 + noise^2).
    r = rho / (1 + noise**2)
    truth = 6 / np.pi * np.arcsin(r / 2)
    rng = np.random.default_rng(11)
    hits = 0
    for rep in range(replications):
        x, y, groups = _clustered_sample(rng, n_groups=60, per_group=8, rho=rho, noise=noise)
        ci = method(x, y, groups, rep)
        hits += ci["lo"] <= truth <= ci["hi"]
    return hits / replications


def test_cluster_bootstrap_has_its_nominal_coverage_and_the_row_bootstrap_does_not():
    """200 simulated clustered test sets with a known Spearman: the nominal 95% cluster-bootstrap
    interval must cover the truth 90-99% of the time; the old bootstrap over rows, on the same data,
    treats 8 copies of a pair as 8 pieces of evidence and covers far less often."""
    clustered = _coverage(lambda x, y, g, rep: stats.bootstrap_spearman([x], y, groups=g, n_boot=1000, seed=rep))
    rows = _coverage(lambda x, y, g, rep: stats.row_bootstrap_spearman(x, y, n_boot=1000, seed=rep))
    assert 0.90 <= clustered <= 0.99, clustered
    assert rows < 0.80, rows


def test_clustered_paired_test_does_not_call_noise_significant():
    """Two models equally good on clustered data: the clustered test is rarely significant (about 5%);
    the row test, on the same data, much more often."""
    rng = np.random.default_rng(5)
    false_clustered = false_rows = 0
    trials = 60
    for t in range(trials):
        x, gold, groups = _clustered_sample(rng, n_groups=40, per_group=8, rho=0.6, noise=0.05)
        # two models that differ only by group-level noise: no true difference
        shift_a = np.repeat(rng.normal(scale=0.5, size=40), 8)
        shift_b = np.repeat(rng.normal(scale=0.5, size=40), 8)
        a, b = x + shift_a, x + shift_b
        false_clustered += stats.paired_spearman_test([a], [b], gold, groups=groups, n_boot=400, seed=t)["significant"]
        false_rows += stats.paired_spearman_test([a], [b], gold, n_boot=400, seed=t)["significant"]
    assert false_clustered / trials <= 0.15
    assert false_rows > false_clustered


def test_significance_needs_the_seeds_to_agree():
    rng = np.random.default_rng(6)
    gold = rng.random(300)
    good = [gold + rng.normal(scale=0.1, size=300) for _ in range(3)]
    mixed = [gold + rng.normal(scale=0.1, size=300), gold + rng.normal(scale=0.9, size=300),
             gold + rng.normal(scale=0.9, size=300)]
    agree = stats.paired_spearman_test(good, mixed, gold, n_boot=300)
    assert agree["seeds_agree"] and agree["significant"]
    # one seed's difference on the other side: not significant whatever p says
    flipped = stats.paired_spearman_test([good[0], mixed[1]], [mixed[1], good[0]], gold, n_boot=300)
    assert not flipped["seeds_agree"] and not flipped["significant"]


def test_cluster_bootstrap_over_seeds_counts_groups_not_rows():
    rng = np.random.default_rng(7)
    gold = rng.random(1500)
    cos = [gold + rng.normal(size=1500) for _ in range(3)]
    out = stats.bootstrap_spearman(cos, gold, groups=np.arange(1500) // 2, n_boot=2000)
    assert out["n_groups"] == 750 and out["n_pairs"] == 1500 and out["lo"] < out["mean"] < out["hi"]


def test_separation_warning_only_when_standard_does_not_beat_the_baseline():
    from harness.report import tradeoffs
    rng = np.random.default_rng(8)
    gold = rng.random(300)
    trained, untrained = gold + rng.normal(scale=0.2, size=300), -gold + rng.normal(scale=0.2, size=300)
    records = [{"status": "success", "label": label, "method": label, "run_id": label,
                "spec": {"seed": 0, "arm": label},
                "data": {"fingerprint": "f"},
                "quality": {"test_cos": list(cos), "test_gold": list(gold), "test_group": [str(i) for i in range(300)]}}
               for label, cos in (("baseline", untrained), ("standard", trained))]
    assert tradeoffs.separation_warning(tradeoffs.spearman_stats(records)) == []
    records[1]["quality"]["test_cos"] = list(untrained + rng.normal(scale=0.01, size=300))
    assert "do not tell the arms apart" in tradeoffs.separation_warning(tradeoffs.spearman_stats(records))[0]
