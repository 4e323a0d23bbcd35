"""Confidence intervals, the paired significance test and the Pareto front (pure, vectorised).

Methods
-------
* The unit of resampling is the *group* (``Pairs.group``): the unit that is really independent
  (dating: the pair of profiles; STS-B: the distinct sentence pair; a user file: its ``group``
  column, else the row). Resampling rows that repeat one underlying pair would treat copies as
  independent evidence and make intervals far too narrow (``tests/test_stats.py`` shows it).
* Cluster bootstrap, vectorised: a replicate draws G groups with replacement from the G groups,
  which is the same as giving every row the weight "how often its group was drawn". Spearman on
  the resampled data equals a *weighted* Spearman (tie-averaged weighted ranks, weighted Pearson),
  so all replicates are computed at once as arrays, without building resampled copies.
* Several seeds: the test set is shared by all seeds, so seeds and groups are crossed. A replicate
  draws seeds with replacement and one set of group weights, and averages the drawn seeds'
  Spearman. The 95% CI is the 2.5th-97.5th percentile of the replicates.
* Other figures (quality and efficiency): mean over seeds with a Student-t 95% interval; with a
  single seed there is no interval (None), never a made-up one.
* Paired test of arm A against arm B: the same replicates (the same groups, seeds paired by
  seed), of the difference in Spearman. Two-sided p = 2 x min(P(d <= 0), P(d >= 0)).
  *Significant* needs p < 0.05 and, with several seeds, every seed's own difference on the same
  side as the mean difference (the seed-level spread must agree).
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


# --- weighted Spearman, many weight vectors at once ----------------------------------------------

def _weighted_ranks(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average ranks of ``x`` in the data set where row i appears ``weights[b, i]`` times, for every
    row b of ``weights`` (shape B x n). Tied values share the mean of the ranks they span."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    tie_start = np.r_[True, xs[1:] != xs[:-1]]
    tie_id = np.cumsum(tie_start) - 1  # the tie group of each sorted position (contiguous when sorted)
    totals = np.add.reduceat(weights[:, order], np.flatnonzero(tie_start), axis=1)  # weight per tie group
    below = np.cumsum(totals, axis=1) - totals  # weight of all smaller values
    ranks_sorted = (below + (totals + 1) / 2)[:, tie_id]
    ranks = np.empty_like(ranks_sorted)
    ranks[:, order] = ranks_sorted
    return ranks


def weighted_spearman(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Spearman of (x, y) on the data set that repeats row i ``weights[b, i]`` times; one value per b.

    Equal to ``fast_spearman`` on the expanded data (a test checks it)."""
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    rx, ry = _weighted_ranks(np.asarray(x), weights), _weighted_ranks(np.asarray(y), weights)
    total = weights.sum(axis=1, keepdims=True)
    mx, my = (weights * rx).sum(1, keepdims=True) / total, (weights * ry).sum(1, keepdims=True) / total
    dx, dy = rx - mx, ry - my
    cov = (weights * dx * dy).sum(1)
    denom = np.sqrt((weights * dx * dx).sum(1) * (weights * dy * dy).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, cov / denom, np.nan)


def group_weights(groups, *, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """B x n row weights of a cluster bootstrap: each replicate draws the G groups with replacement."""
    _, index = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n_groups = int(index.max()) + 1
    counts = rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=n_boot)  # B x G
    return counts[:, index].astype(float)


def _seed_draws(n_seeds: int, *, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """B x S counts: how often each seed is drawn in each replicate (all ones with one seed)."""
    if n_seeds == 1:
        return np.ones((n_boot, 1))
    return rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_boot).astype(float)


def _replicate_means(per_seed: list[np.ndarray], seed_counts: np.ndarray) -> np.ndarray:
    """Mean over the drawn seeds of each replicate's per-seed statistic."""
    values = np.stack(per_seed, axis=1)  # B x S
    return (values * seed_counts).sum(1) / seed_counts.sum(1)


def _groups_or_rows(groups, n: int):
    return [f"row{i}" for i in range(n)] if groups is None else groups


def bootstrap_spearman(cos_by_seed: list[np.ndarray], gold: np.ndarray, *, groups=None, n_boot: int = N_BOOT,
                       seed: int = 0) -> dict:
    """Mean Spearman over seeds with a cluster-bootstrap 95% CI (groups, and seeds when several)."""
    rng = np.random.default_rng(seed)
    groups = _groups_or_rows(groups, len(gold))
    weights = group_weights(groups, n_boot=n_boot, rng=rng)
    seed_counts = _seed_draws(len(cos_by_seed), n_boot=n_boot, rng=rng)
    point = float(np.mean([fast_spearman(c, gold) for c in cos_by_seed]))
    reps = _replicate_means([weighted_spearman(c, gold, weights) for c in cos_by_seed], seed_counts)
    lo, hi = np.nanpercentile(reps, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return {"mean": point, "lo": float(lo), "hi": float(hi), "n": len(cos_by_seed), "n_pairs": int(len(gold)),
            "n_groups": int(len(set(map(str, groups)))), "method": "cluster bootstrap"}


def paired_spearman_test(cos_a: list[np.ndarray], cos_b: list[np.ndarray], gold: np.ndarray, *, groups=None,
                         n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Difference in Spearman (a - b) over the same test groups; seeds paired by position."""
    n = min(len(cos_a), len(cos_b))
    cos_a, cos_b = cos_a[:n], cos_b[:n]
    rng = np.random.default_rng(seed)
    groups = _groups_or_rows(groups, len(gold))
    weights = group_weights(groups, n_boot=n_boot, rng=rng)
    seed_counts = _seed_draws(n, n_boot=n_boot, rng=rng)
    per_seed = [fast_spearman(a, gold) - fast_spearman(b, gold) for a, b in zip(cos_a, cos_b, strict=True)]
    diff = float(np.mean(per_seed))
    reps = _replicate_means([weighted_spearman(a, gold, weights) - weighted_spearman(b, gold, weights)
                             for a, b in zip(cos_a, cos_b, strict=True)], seed_counts)
    reps = reps[np.isfinite(reps)]
    p = min(1.0, 2 * min(float((reps <= 0).mean()), float((reps >= 0).mean())))
    lo, hi = np.percentile(reps, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    seeds_agree = all(np.sign(d) == np.sign(diff) for d in per_seed) if n > 1 else True
    return {"diff": diff, "lo": float(lo), "hi": float(hi), "p_value": p, "seed_diffs": per_seed,
            "seeds_agree": bool(seeds_agree), "significant": bool(p < ALPHA and seeds_agree), "n_seeds": n,
            "n_groups": int(len(set(map(str, groups)))),
            "method": "paired cluster bootstrap over test groups (and seeds); significant: p < 0.05 and every "
                      "seed's difference on the side of the mean"}


# The smallest difference in Spearman that counts (settable per job: --margin on run and sweep, kept in
# job.json). A difference whose whole 95% CI lies within +-margin is "equivalent"; below it, a difference
# can be significant and still not matter (three warm-up steps move Spearman by 1e-5, consistently).
SPEARMAN_MARGIN = 0.02
VERDICTS = ("better", "worse", "equivalent", "inconclusive")


def verdict(test: dict, margin: float = SPEARMAN_MARGIN) -> str:
    """The four-way verdict of a paired test (paired_spearman_test) at a smallest difference of interest:
    **equivalent** where the whole 95% CI lies within +-margin (the two one-sided tests at 2.5% each),
    else **better** or **worse** where the difference is significant (p < 0.05, every seed on the side of
    the mean), else **inconclusive**."""
    if -margin <= test["lo"] and test["hi"] <= margin:
        return "equivalent"
    if test["significant"]:
        return "better" if test["diff"] > 0 else "worse"
    return "inconclusive"


def gain_share(cos_a: list[np.ndarray], cos_ref: list[np.ndarray], cos_base: list[np.ndarray], gold: np.ndarray,
               *, groups=None, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """The share of the reference's gain over the baseline that arm A recovers,
    (S_a - S_base) / (S_ref - S_base), in Spearman, with a cluster-bootstrap 95% CI over the same groups
    (seeds of A and the reference paired). Only where the reference's own gain is significant (its CI
    above zero): a share of a gain that may be nothing means nothing (mean None, with the reason)."""
    n = min(len(cos_a), len(cos_ref))
    rng = np.random.default_rng(seed)
    groups = _groups_or_rows(groups, len(gold))
    weights = group_weights(groups, n_boot=n_boot, rng=rng)
    seed_counts = _seed_draws(n, n_boot=n_boot, rng=rng)
    a = _replicate_means([weighted_spearman(c, gold, weights) for c in cos_a[:n]], seed_counts)
    ref = _replicate_means([weighted_spearman(c, gold, weights) for c in cos_ref[:n]], seed_counts)
    base = np.mean([weighted_spearman(c, gold, weights) for c in cos_base], axis=0)
    point_a = float(np.mean([fast_spearman(c, gold) for c in cos_a[:n]]))
    point_ref = float(np.mean([fast_spearman(c, gold) for c in cos_ref[:n]]))
    point_base = float(np.mean([fast_spearman(c, gold) for c in cos_base]))
    ref_gain_lo = float(np.nanpercentile(ref - base, 100 * ALPHA / 2))
    if not ref_gain_lo > 0:
        return {"mean": None, "lo": None, "hi": None,
                "why": f"the reference's gain over the baseline is not significant (95% CI from {ref_gain_lo:+.3f})"}
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = (a - base) / (ref - base)
    lo, hi = np.nanpercentile(reps, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return {"mean": (point_a - point_base) / (point_ref - point_base), "lo": float(lo), "hi": float(hi),
            "method": "cluster bootstrap of (S - S_baseline) / (S_standard - S_baseline) over the same groups"}


def row_bootstrap_spearman(cos: np.ndarray, gold: np.ndarray, *, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """The old method, kept for the coverage test only: every row treated as independent."""
    return bootstrap_spearman([cos], gold, groups=None, n_boot=n_boot, seed=seed)


def pareto_front(costs: list[float], qualities: list[float]) -> list[bool]:
    """True for each point no other point beats: cost <= and quality >= with one strictly better."""
    out = []
    for i, (c, q) in enumerate(zip(costs, qualities, strict=True)):
        dominated = any((c2 <= c and q2 >= q) and (c2 < c or q2 > q)
                        for j, (c2, q2) in enumerate(zip(costs, qualities, strict=True)) if j != i)
        out.append(not dominated)
    return out
