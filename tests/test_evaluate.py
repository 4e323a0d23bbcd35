"""Each metric against values computed by hand on small inputs."""

import math

import numpy as np
import pytest

from harness import evaluate

COS = np.array([0.9, 0.8, 0.3, 0.6, 0.1])
GOLD = np.array([1.0, 0.7, 0.2, 0.4, 0.0])
LABELS = GOLD >= 0.5  # T, T, F, F, F


def test_correlations_by_hand():
    # ranks of cos: 5,4,2,3,1; ranks of gold: 5,4,2,3,1 -> identical -> spearman 1
    out = evaluate.correlations(COS, GOLD)
    assert out["spearman"] == pytest.approx(1.0)
    cx, gx = COS - COS.mean(), GOLD - GOLD.mean()
    assert out["pearson"] == pytest.approx((cx * gx).sum() / math.sqrt((cx**2).sum() * (gx**2).sum()))


def test_inverted_correlation_is_negative():
    assert evaluate.correlations(-COS, GOLD)["spearman"] == pytest.approx(-1.0)


def test_margin_by_hand():
    # compatible mean (0.9+0.8)/2 = 0.85; incompatible (0.3+0.6+0.1)/3 = 1/3
    assert evaluate.margin(COS, LABELS) == pytest.approx(0.85 - 1 / 3)


def test_cohens_d_by_hand():
    pos, neg = np.array([0.9, 0.8]), np.array([0.3, 0.6, 0.1])
    var_p = ((pos - pos.mean()) ** 2).sum() / 1
    var_n = ((neg - neg.mean()) ** 2).sum() / 2
    pooled = math.sqrt((1 * var_p + 2 * var_n) / 3)
    assert evaluate.cohens_d(COS, LABELS) == pytest.approx((pos.mean() - neg.mean()) / pooled)


def test_auc_by_hand():
    # every compatible cos (0.9, 0.8) beats every incompatible one -> 1.0
    assert evaluate.auc_roc(COS, LABELS) == pytest.approx(1.0)
    # one swap: 0.8 now below 0.85 -> of 2*3 = 6 pairs, (0.8 < 0.85) loses 1 -> 5/6
    cos = np.array([0.9, 0.8, 0.3, 0.85, 0.1])
    assert evaluate.auc_roc(cos, LABELS) == pytest.approx(5 / 6)


def test_f1_at_threshold_by_hand():
    # threshold 0.5: predicted positive 0.9, 0.8, 0.6 -> tp=2, fp=1, fn=0 -> 4/5
    assert evaluate.f1_at(COS, LABELS, 0.5) == pytest.approx(2 * 2 / (2 * 2 + 1 + 0))
    assert evaluate.f1_at(COS, LABELS, 0.95) == 0.0


def test_best_f1_threshold_picks_the_separating_cut():
    t, f1 = evaluate.best_f1_threshold(COS, LABELS)
    assert f1 == pytest.approx(1.0)
    assert t == pytest.approx(0.8)  # the highest cut that keeps both positives


def test_cluster_purity_by_hand():
    # two tight, well separated groups; labels split 3/1 inside the first group
    features = np.array([[0, 0], [0, 0.01], [0.01, 0], [0, 0.02], [10, 10], [10, 10.01]])
    labels = np.array([1, 1, 1, 0, 0, 0])
    # clusters {0,1,2,3} -> majority 1 (3); {4,5} -> majority 0 (2) -> 5/6
    assert evaluate.cluster_purity(features, labels, seed=0) == pytest.approx(5 / 6)


def test_cluster_purity_needs_both_labels():
    assert evaluate.cluster_purity(np.zeros((5, 2)), np.ones(5)) is None


def test_cluster_purity_measures_compatibility_not_topic():
    """Pairs of two topics, half compatible: a space that clusters by topic scores the floor (0.5);
    one whose pair features separate compatible from incompatible pairs scores 1."""
    rng = np.random.default_rng(0)
    topic = np.repeat([0, 1], 20)
    compatible = np.tile([0, 1], 20)
    by_topic = np.c_[topic * 10.0, np.zeros(40)] + rng.normal(scale=0.01, size=(40, 2))
    by_relation = np.c_[compatible * 10.0, np.zeros(40)] + rng.normal(scale=0.01, size=(40, 2))
    assert evaluate.cluster_purity(by_topic, compatible) == pytest.approx(0.5)
    assert evaluate.cluster_purity(by_relation, compatible) == pytest.approx(1.0)


def test_spearman_ceiling_with_three_gold_values():
    gold = np.repeat([0.0, 0.4, 1.0], [40, 20, 40])
    ceiling = evaluate.spearman_ceiling(gold)
    assert 0.85 < ceiling < 0.95
    assert evaluate.spearman_ceiling(np.linspace(0, 1, 50)) == pytest.approx(1.0)


def test_degenerate_groups_give_none_not_a_number():
    all_pos = np.ones(4, dtype=bool)
    assert evaluate.margin(COS[:4], all_pos) is None
    assert evaluate.auc_roc(COS[:4], all_pos) is None
    assert evaluate.cohens_d(COS[:4], all_pos) is None


def test_evaluate_uses_validation_threshold_and_lists_false_positives():
    val_cos = np.array([0.9, 0.7, 0.65, 0.2])
    val_gold = np.array([1.0, 1.0, 0.0, 0.0])  # best validation cut = 0.7
    out = evaluate.evaluate(
        test_cos=COS, test_gold=GOLD, val_cos=val_cos, val_gold=val_gold,
        pair_features=np.eye(5), categories=["x", "y", "x", "y", "x"],
        texts=([f"a{i}" for i in range(5)], [f"b{i}" for i in range(5)]))
    assert out["decision_threshold"] == pytest.approx(0.7)
    # at 0.7 on test: predicted 0.9, 0.8 -> tp 2, no fp -> F1 1.0; no false positives
    assert out["f1"] == pytest.approx(1.0)
    assert out["false_positives"]["count"] == 0
    assert out["n_pairs"] == 5 and out["n_compatible"] == 2
    assert set(out["per_category"]) == {"x", "y"}


def test_false_positives_are_ranked_by_cosine():
    val_cos, val_gold = np.array([0.5, 0.4]), np.array([1.0, 0.0])  # cut 0.5
    cos = np.array([0.55, 0.95, 0.7, 0.9])
    gold = np.array([0.0, 1.0, 0.0, 0.0])
    out = evaluate.evaluate(test_cos=cos, test_gold=gold, val_cos=val_cos, val_gold=val_gold,
                            pair_features=np.eye(4), categories=[None] * 4,
                            texts=(["a0", "a1", "a2", "a3"], ["b0", "b1", "b2", "b3"]))
    fp = out["false_positives"]
    assert fp["count"] == 3 and fp["n_incompatible"] == 3
    assert [t["text_a"] for t in fp["top"]] == ["a3", "a2", "a0"]
    assert out["cluster_purity_floor"] == pytest.approx(0.75)  # 3 of 4 pairs are incompatible
