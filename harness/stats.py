"""Confidence intervals, the paired significance test and the Pareto front (pure functions).

Methods
-------
* Spearman on test: a hierarchical percentile bootstrap. Each replicate draws seeds with
  replacement (when there are several), then test pairs with replacement within each drawn seed,
  and averages the seeds' Spearman. The 95% CI is the 2.5th-97.5th percentile of the replicates.
  With one seed this is the plain bootstrap over test pairs.
* Other figures (quality and efficiency): mean over seeds with a Student-t 95% interval; with a
  single seed there is no interval (None), never a made-up one.
* Significance of LoRA(r) vs standard: a paired bootstrap over the *same* test pairs (and seeds
  paired by seed), of the difference in Spearman. Two-sided p = 2 x min(P(d <= 0), P(d >= 0));
  significant when p < 0.05.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

N_BOOT = 2000
ALPHA = 0.05


def fast_spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman as the Pearson correlation of average ranks (ties handled like scipy)."""
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / denom) if denom else float("nan")


def t_interval(values: list[float], *, confidence: float = 0.95) -> dict:
    vals = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(vals) == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    mean = float(vals.mean())
    if len(vals) < 2:
        return {"mean": mean, "lo": None, "hi": None, "n": 1}
    half = stats.t.ppf(0.5 + confidence / 2, len(vals) - 1) * vals.std(ddof=1) / math.sqrt(len(vals))
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": int(len(vals))}


def _replicates(cos_by_seed: list[np.ndarray], gold: np.ndarray, *, n_boot: int, seed: int):
    """Hierarchical bootstrap: draws of seed indices and, per draw, pair indices."""
    rng = np.random.default_rng(seed)
    n_seeds, n_pairs = len(cos_by_seed), len(gold)
    for _ in range(n_boot):
        seeds = rng.integers(n_seeds, size=n_seeds) if n_seeds > 1 else np.zeros(1, dtype=int)
        yield [(s, rng.integers(n_pairs, size=n_pairs)) for s in seeds]


def bootstrap_spearman(cos_by_seed: list[np.ndarray], gold: np.ndarray, *, n_boot: int = N_BOOT,
                       seed: int = 0) -> dict:
    point = float(np.mean([fast_spearman(c, gold) for c in cos_by_seed]))
    reps = [np.mean([fast_spearman(cos_by_seed[s][idx], gold[idx]) for s, idx in draw])
            for draw in _replicates(cos_by_seed, gold, n_boot=n_boot, seed=seed)]
    lo, hi = np.nanpercentile(reps, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return {"mean": point, "lo": float(lo), "hi": float(hi), "n": len(cos_by_seed), "method": "bootstrap"}


def paired_spearman_test(cos_a: list[np.ndarray], cos_b: list[np.ndarray], gold: np.ndarray, *,
                         n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Difference in Spearman (a - b) over the same test pairs; seeds paired by position."""
    n = min(len(cos_a), len(cos_b))
    cos_a, cos_b = cos_a[:n], cos_b[:n]
    diff = float(np.mean([fast_spearman(a, gold) - fast_spearman(b, gold) for a, b in zip(cos_a, cos_b,
                                                                                            strict=True)]))
    reps = np.array([np.mean([fast_spearman(cos_a[s][idx], gold[idx]) - fast_spearman(cos_b[s][idx], gold[idx])
                              for s, idx in draw])
                     for draw in _replicates(cos_a, gold, n_boot=n_boot, seed=seed)])
    p = min(1.0, 2 * min(float((reps <= 0).mean()), float((reps >= 0).mean())))
    lo, hi = np.percentile(reps, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return {"diff": diff, "lo": float(lo), "hi": float(hi), "p_value": p, "significant": p < ALPHA,
            "n_seeds": n, "method": "paired bootstrap over test pairs"}


def pareto_front(costs: list[float], qualities: list[float]) -> list[bool]:
    """True for each point no other point beats: cost <= and quality >= with one strictly better."""
    out = []
    for i, (c, q) in enumerate(zip(costs, qualities, strict=True)):
        dominated = any((c2 <= c and q2 >= q) and (c2 < c or q2 > q)
                        for j, (c2, q2) in enumerate(zip(costs, qualities, strict=True)) if j != i)
        out.append(not dominated)
    return out
