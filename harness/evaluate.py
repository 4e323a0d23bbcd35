"""ADR-001's eight quality metrics, as pure functions over arrays (no model, no I/O).

Inputs are cosine similarities ``cos`` and gold scores ``gold`` in [0, 1]. A pair is
*compatible* when ``gold >= threshold`` (0.5 by default).

1. ``spearman`` / ``pearson``: rank and linear correlation of cos against gold.
2. ``margin``: mean cos of compatible pairs minus mean cos of incompatible pairs.
3. ``cohens_d``: that difference over the pooled standard deviation (ddof=1 in each group).
4. ``auc_roc``: area under the ROC curve of cos as a score for "compatible".
5. ``f1``: F1 at the decision threshold chosen on the *validation* split (the cos cut that
   maximises validation F1); ``best_f1_oracle`` is the best F1 over all cuts on test itself,
   an optimistic upper bound labelled as such.
6. ``cluster_purity``: does the embedding space separate compatible from incompatible pairs
   without supervision? k-means (k = 2, n_init=10, seeded) on the pair features
   ``[u * v, |u - v|]`` of the two L2-normalised text embeddings u, v (the relation between the
   texts, not their topic); purity = (1/N) * sum over clusters of the size of the cluster's most
   common label (compatible or not). Its floor is the larger class's share
   (``cluster_purity_floor``), reached by a clustering that ignores compatibility. (Until dating
   v2 it clustered by category, which measures topic: the stock model scored 1.0 there.)
7. ``per_category``: metrics 1-4 within each category.
8. ``false_positives``: incompatible pairs whose cos is above the decision threshold: the
   count, and the top ones by cos with their texts.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from sklearn.cluster import KMeans
from sklearn.metrics import roc_auc_score


def _finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def correlations(cos: np.ndarray, gold: np.ndarray) -> dict[str, float | None]:
    if len(cos) < 2 or np.ptp(gold) == 0 or np.ptp(cos) == 0:
        return {"spearman": None, "pearson": None}
    return {"spearman": _finite_or_none(stats.spearmanr(cos, gold).statistic),
            "pearson": _finite_or_none(stats.pearsonr(cos, gold).statistic)}


def margin(cos: np.ndarray, labels: np.ndarray) -> float | None:
    if labels.all() or not labels.any():
        return None
    return float(cos[labels].mean() - cos[~labels].mean())


def cohens_d(cos: np.ndarray, labels: np.ndarray) -> float | None:
    pos, neg = cos[labels], cos[~labels]
    if len(pos) < 2 or len(neg) < 2:
        return None
    pooled = math.sqrt(((len(pos) - 1) * pos.var(ddof=1) + (len(neg) - 1) * neg.var(ddof=1))
                       / (len(pos) + len(neg) - 2))
    return None if pooled == 0 else float((pos.mean() - neg.mean()) / pooled)


def auc_roc(cos: np.ndarray, labels: np.ndarray) -> float | None:
    if labels.all() or not labels.any():
        return None
    return float(roc_auc_score(labels, cos))


def f1_at(cos: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    pred = cos >= threshold
    tp = int((pred & labels).sum())
    fp = int((pred & ~labels).sum())
    fn = int((~pred & labels).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def best_f1_threshold(cos: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The cos cut (one of the observed values) with the highest F1, and that F1.

    Ties go to the highest cut, so the choice is deterministic.
    """
    best = (math.inf, 0.0)
    for t in np.unique(cos)[::-1]:
        f1 = f1_at(cos, labels, float(t))
        if f1 > best[1]:
            best = (float(t), f1)
    return best


def cluster_purity(features: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> float | None:
    """Purity of a seeded 2-means clustering of the pair features against the binary labels."""
    labels = np.asarray(labels, dtype=int)
    if len(np.unique(labels)) < 2 or len(labels) < 4:
        return None
    assign = KMeans(n_clusters=2, n_init=10, random_state=seed).fit_predict(features)
    majority = sum(np.bincount(labels[assign == k]).max() for k in np.unique(assign))
    return float(majority / len(labels))


def spearman_ceiling(gold: np.ndarray) -> float | None:
    """The best Spearman any model can reach against ``gold``: with ties in gold, a model's distinct
    scores cannot reproduce them (a gold with three values caps it near 0.91)."""
    if len(gold) < 2 or np.ptp(gold) == 0:
        return None
    return _finite_or_none(stats.spearmanr(gold, stats.rankdata(gold, method="ordinal")).statistic)


def score_pairs(cos: np.ndarray, gold: np.ndarray, *, threshold: float) -> dict[str, float | None]:
    """Metrics 1-4 on one set of pairs."""
    labels = gold >= threshold
    return {**correlations(cos, gold), "margin": margin(cos, labels), "cohens_d": cohens_d(cos, labels),
            "auc_roc": auc_roc(cos, labels), "n_pairs": int(len(cos)),
            "n_compatible": int(labels.sum())}


def evaluate(
    *,
    test_cos: np.ndarray,
    test_gold: np.ndarray,
    val_cos: np.ndarray,
    val_gold: np.ndarray,
    pair_features: np.ndarray,
    categories: list[str | None],
    texts: tuple[list[str], list[str]],
    threshold: float = 0.5,
    top_false_positives: int = 10,
    seed: int = 0,
) -> dict:
    """All eight metrics for one model on the test split (threshold for F1 from validation)."""
    labels = test_gold >= threshold
    decision, val_f1 = best_f1_threshold(val_cos, val_gold >= threshold)
    oracle_t, oracle_f1 = best_f1_threshold(test_cos, labels)
    fp_idx = np.flatnonzero((test_cos >= decision) & ~labels)
    fp_idx = fp_idx[np.argsort(-test_cos[fp_idx], kind="stable")]
    return {
        **score_pairs(test_cos, test_gold, threshold=threshold),
        "f1": f1_at(test_cos, labels, decision),
        "decision_threshold": decision,
        "validation_f1": val_f1,
        "best_f1_oracle": oracle_f1,
        "best_f1_oracle_threshold": oracle_t,
        "compatible_threshold": threshold,
        "cluster_purity": cluster_purity(pair_features, labels, seed=seed),
        "cluster_purity_floor": float(max(labels.mean(), 1 - labels.mean())) if len(labels) else None,
        "spearman_ceiling": spearman_ceiling(test_gold),
        "per_category": per_category(test_cos, test_gold, categories, threshold=threshold),
        "false_positives": {
            "count": int(len(fp_idx)),
            "n_incompatible": int((~labels).sum()),
            "top": [{"cos": float(test_cos[i]), "gold": float(test_gold[i]), "category": categories[i],
                     "text_a": texts[0][i], "text_b": texts[1][i]} for i in fp_idx[:top_false_positives]],
        },
    }


def per_category(cos, gold, categories, *, threshold: float) -> dict[str, dict]:
    cats = sorted({c for c in categories if c is not None})
    out = {}
    for c in cats:
        idx = np.array([i for i, k in enumerate(categories) if k == c])
        out[c] = score_pairs(cos[idx], gold[idx], threshold=threshold)
    return out


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity (works whether or not the rows are normalised)."""
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(na * nb, 1e-12)


def pair_features(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[u * v, |u - v|]`` of the two L2-normalised text embeddings (metric 6's definition): the
    relation between the texts, symmetric in the pair's order."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.concatenate([a * b, np.abs(a - b)], axis=1)
