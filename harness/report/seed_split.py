"""Does a study's ranking of methods survive another seed? Its seeds are split in two, every way, and each
half is a study of its own: every variant's rate is chosen again on that half alone (the mean rule over
the half's validation runs, instability judged on them too), and the variants are ranked by their mean
test Spearman over the half's seeds at that rate. Kendall's tau compares the two halves' rankings.

Reads run records only (the records a job holds, every rate tried); the methods table shows it
(methods.md, "Does the ranking hold when the seeds are split in two?").
"""

from __future__ import annotations

import itertools
import math

from harness import methods, tuning

MAX_SPLITS = 15  # every split of up to five seeds; beyond that, the first fifteen in order


def splits(seeds) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every split of ``seeds`` into two non-empty halves, the first half holding the smallest seed."""
    seeds = sorted(set(seeds))
    if len(seeds) < 2:
        return []
    first, rest = seeds[0], seeds[1:]
    out = []
    for k in range(len(rest)):
        for other in itertools.combinations(rest, k):
            half = (first, *other)
            out.append((half, tuple(s for s in seeds if s not in half)))
    return out[:MAX_SPLITS]


def half_scores(records: list[dict], half) -> dict[str, float]:
    """Per trained variant that ran every seed of ``half`` at the rate chosen on ``half`` alone: its mean
    test Spearman over those seeds at that rate."""
    mine = [r for r in records if r["spec"].get("seed") in half]  # the baseline's too: instability needs it
    choices = tuning.choose(mine, "mean", seeds=list(half))
    out = {}
    for name, point in tuning.points(mine).items():
        rate = choices[name].rate
        if rate is None:
            continue
        at_rate = {r["spec"]["seed"]: (r.get("quality") or {}).get("spearman") for r in point.records
                   if r["status"] == "success" and math.isclose(r["spec"]["learning_rate"], rate, rel_tol=1e-9)}
        values = [at_rate.get(s) for s in half]
        if all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            out[name] = sum(values) / len(values)
    return out


def kendall_tau(a: dict[str, float], b: dict[str, float]) -> float | None:
    """Kendall's tau-b of two scorings of the same variants (None with fewer than three, or no order)."""
    from scipy.stats import kendalltau
    common = sorted(set(a) & set(b))
    if len(common) < 3:
        return None
    tau = kendalltau([a[n] for n in common], [b[n] for n in common]).statistic
    return float(tau) if math.isfinite(tau) else None


def split_rows(records: list[dict]) -> list[dict]:
    """One row per split of the study's seeds (the seeds its reference variant ran): the variants ranked
    in both halves (a variant with no stable rate run on every seed of a half is not ranked) of the
    ``trained`` variants of the study, Kendall's tau between the halves, each half's best variant, and the variants that
    sit above the reference in one half and below it in the other."""
    ref = methods.reference_label([r["spec"] for r in records if r.get("status") == "success"])
    seeds = sorted({r["spec"]["seed"] for r in records if r.get("status") == "success"
                    and methods.variant_label(r["spec"]) == ref})
    trained = len(tuning.points(records))
    rows = []
    for a, b in splits(seeds):
        left, right = half_scores(records, a), half_scores(records, b)
        common = [n for n in left if n in right]
        if len(common) < 3:
            continue
        flips = []
        if ref in common:
            flips = [n for n in common if n != ref and (left[n] > left[ref]) != (right[n] > right[ref])]
        rows.append({"half_a": a, "half_b": b, "variants": len(common), "trained": trained,
                     "kendall_tau": kendall_tau({n: left[n] for n in common}, {n: right[n] for n in common}),
                     "best_a": max(common, key=left.get), "best_b": max(common, key=right.get),
                     "reference": ref if ref in common else None, "sides_flipped": flips})
    return rows


def markdown(rows: list[dict]) -> list[str]:
    """The section of methods.md (nothing where the study has fewer than two seeds to split)."""
    if not rows:
        return []
    from tabulate import tabulate

    def seeds(half):
        return ", ".join(map(str, half))

    def tau(row):
        return "—" if row["kendall_tau"] is None else f"{row['kendall_tau']:+.2f}"

    table = [[f"{seeds(r['half_a'])} / {seeds(r['half_b'])}", f"{r['variants']} of {r['trained']}", tau(r),
              r["best_a"] if r["best_a"] == r["best_b"] else f"{r['best_a']} / {r['best_b']}",
              ", ".join(r["sides_flipped"]) or "none"] for r in rows]
    taus = [r["kendall_tau"] for r in rows if r["kendall_tau"] is not None]
    same_best = sum(r["best_a"] == r["best_b"] for r in rows)
    flipped = sorted({n for r in rows for n in r["sides_flipped"]})
    ref = next((r["reference"] for r in rows if r["reference"]), "the reference")
    summary = (f"Over {len(rows)} split{'s' if len(rows) > 1 else ''}: Kendall's tau "
               + (f"from {min(taus):+.2f} to {max(taus):+.2f}" if taus else "not defined")
               + f"; the same best variant in both halves in {same_best} of {len(rows)}; "
               + (f"on different sides of {ref} in the two halves of some split: {', '.join(flipped)}."
                  if flipped else f"no variant changes sides of {ref}."))
    return ["## Does the ranking hold when the seeds are split in two?", "",
            "Each split of the study's seeds makes two smaller studies. In each half every variant's rate is "
            "chosen again on that half's validation runs alone (the mean rule; a rate unstable on one of its "
            "seeds is never chosen), and the variants are ranked by mean test Spearman over the half's seeds "
            "at that rate; a variant with no stable rate run on every seed of a half is not ranked. Kendall's "
            "tau compares the two rankings of the variants ranked in both (+1: the same order, 0: unrelated); a "
            f"variant \"changes sides\" when it is above {ref} in one half and below it in the other.", "",
            tabulate(table, headers=["seeds (half / half)", "variants ranked", "Kendall's tau", "best variant",
                                     f"changes sides of {ref}"], tablefmt="github", disable_numparse=True), "",
            summary, ""]
