"""The variant rows every study table reads: one row per point of a job (method, rank, precision) at
its chosen learning rate, with the mean and 95% CI of every figure over its seeds (the figure
registry's row_figures), the paired test against standard with its verdict and the share of
standard's gain, how its rate was chosen, convergence, the merge and reload checks, and time to
quality. Computed from the run records only; the sweep, methods and recommendation read them.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from harness import convergence, figures, jobfile, methods, results, stats, tuning
from harness.figures import lookup
from harness.sweep import grid_edges, group_key, job_selection, selected, unfinished_grids


def job_point_rows(records: list[dict], out, manifest: jobfile.Manifest = jobfile.NOT_GIVEN) -> list[dict]:
    """point_rows with the job folder ``out``'s own options, from its manifest (job.json: ``manifest``
    where the caller read it, else read here once): the grids its sweeps asked for, its rate rule, its
    margin and its sweep's ``--lr-extend``. The one way the sweep, methods and recommendation tables
    build their rows, so that they cannot disagree."""
    manifest = jobfile.resolved(out, manifest)
    return point_rows(records, planned=jobfile.grids(out, manifest), selection=job_selection(manifest=manifest),
                      margin=jobfile.margin(out, manifest), extend=jobfile.extend_limit(out, manifest))


def point_rows(records: list[dict], *, ttq_fraction: float = 0.95,
               planned: dict[str, list[float]] | None = None,
               selection: tuning.Selection | None = None, margin: float = stats.SPEARMAN_MARGIN,
               extend: int | None = None) -> list[dict]:
    """One row per sweep point with mean and 95% CI of every figure, vs standard: the difference, its
    four-way verdict at ``margin`` (stats.verdict) and the share of standard's gain over the baseline;
    how its rate was chosen, its stable range and what tuning cost; whether its runs converged.
    ``planned``: the grids the job's sweeps asked for (jobfile.grids), for the lr mark;
    ``selection``: the job's rate rule (job_selection); ``extend``: its sweep's ``--lr-extend``
    (jobfile.extend_limit), so that a rate whose extension is still to run is not taken as tuned."""
    selection = selection or tuning.Selection()
    choices = selection.choose(records)
    tried = tuning.points(records)
    runs = selected(records, selection)
    points = defaultdict(list)
    for r in runs:
        points[group_key(r["spec"])].append(r)
    evalset = results.evaluation_set(runs)
    gold, groups = evalset if evalset else (None, None)
    ref = methods.reference_label([r["spec"] for r in runs])
    std_cos = _cos_by_seed(points.get(ref, []))
    base_cos = _cos_by_seed(points.get("baseline", []))
    std_wall = stats.t_interval([lookup(r, "timings.train_wall_s") for r in points.get(ref, [])])["mean"]
    std_final_val = stats.t_interval([lookup(r, "quality.validation_spearman")
                                      for r in points.get(ref, [])])["mean"]
    base_val = tuning.baseline_validation(runs)
    edges = grid_edges(records, planned, selection, extend)
    rows = []
    for point in sorted(points, key=lambda p: methods.sort_key(points[p][0]["spec"])):
        group = sorted(points[point], key=lambda r: r["spec"]["seed"])
        row = {"point": point, "method": group[0]["method"], "series": methods.series_label(group[0]["spec"]),
               "is_reference": point == ref,
               "rank": group[0]["spec"]["lora"]["r"] if group[0]["spec"].get("lora") else None,
               "learning_rate": None if not methods.trains(group[0]["method"]) else group[0]["spec"]["learning_rate"],
               "lr_grid_edge": edges.get(point),
               "seeds": len(group),
               "trainable_params": lookup(group[0], "params.trainable_params")}
        if point in choices:
            row.update(_tuning_columns(choices[point], tried[point], choices, group[0]["spec"]))
        row.update({f"convergence_{k}": v for k, v in convergence.summary(group).items()})
        cos = _cos_by_seed(group)
        if gold is not None and cos:
            ci = stats.bootstrap_spearman(cos, gold, groups=groups)
            row.update(ci_columns("spearman", ci), test_pairs=ci["n_pairs"], test_groups=ci["n_groups"])
        for figure in figures.row_figures():
            row.update(ci_columns(figure.key, stats.t_interval([figure.value(r) for r in group])))
        # a point (or standard) whose grid is unfinished trains at a rate not yet tuned: its difference
        # would measure the rate, not the method, so the tables withhold it (as the precision table does)
        unfinished = unfinished_grids(edges, (point, ref))
        if point != ref and unfinished:
            row["vs_standard_withheld"] = f"grid unfinished: {unfinished}"
        elif point != ref and std_cos and gold is not None and cos:
            row.update(versus_columns(cos, std_cos, gold, groups, margin,
                                      base_cos if methods.trains(group[0]["method"]) else None))
        if std_wall and row.get("train_wall_s_mean") is not None:
            row["train_wall_pct_of_standard"] = 100 * row["train_wall_s_mean"] / std_wall
        target = quality_target(std_final_val, base_val, ttq_fraction)
        if target is not None:
            row["time_to_95pct_standard_s"] = _time_to_quality(group, target)
        row.update(merge_columns([lookup(r, "merge") for r in group]))
        row.update(reload_columns([lookup(r, "artifact_check") for r in group]))
        rows.append(row)
    return rows



def versus_columns(cos, std_cos, gold, groups, margin: float, base_cos=None) -> dict:
    """A point against standard over the same test groups, seeds paired: the difference with its
    cluster-bootstrap CI, p and four-way verdict at ``margin``; with the baseline's cosines, the share
    of standard's gain over it (stats.gain_share)."""
    test = stats.paired_spearman_test(cos, std_cos, gold, groups=groups)
    row = dict(vs_standard_spearman_diff=test["diff"], vs_standard_diff_lo=test["lo"],
               vs_standard_diff_hi=test["hi"], vs_standard_p=test["p_value"],
               vs_standard_seeds_agree=test["seeds_agree"], vs_standard_significant=test["significant"],
               vs_standard_verdict=stats.verdict(test, margin), vs_standard_margin=margin)
    if base_cos:
        share = stats.gain_share(cos, std_cos, base_cos, gold, groups=groups)
        row.update(ci_columns("gain_share", share), gain_share_withheld=share.get("why"))
    return row



def merge_columns(checks: list[dict | None]) -> dict:
    """A point's merge check over its seeds (the worker's merge record): the largest difference between
    merged and unmerged embeddings, whether every seed was within tolerance, and the encode rates."""
    merge = [m for m in checks if m]
    if not merge:
        return {}
    return dict(merge_max_abs_diff=max(m["max_abs_diff"] for m in merge),
                merge_within_tolerance=all(m.get("within_tolerance", True) for m in merge),
                merge_tolerance=max(m.get("tolerance") or 0 for m in merge) or None,
                unmerged_sentences_per_s=float(np.mean([m["unmerged_sentences_per_s"] for m in merge])),
                merged_sentences_per_s=float(np.mean([m["merged_sentences_per_s"] for m in merge])),
                base_sentences_per_s=float(np.mean([m["base_sentences_per_s"] for m in merge])))



def reload_columns(checks: list[dict | None]) -> dict:
    """The artifact round trip over a variant's seeds (harness/artifacts.py): the worst difference,
    whether every seed was within tolerance, and whether sentence-transformers' one-liner
    ``SentenceTransformer(folder)`` loaded every seed's adapter correctly (None where not tried)."""
    checks = [c for c in checks if c]
    if not checks:
        return {}
    one_liner = [c["sentence_transformers_load"] for c in checks if c.get("sentence_transformers_load")]
    return {"reload_max_abs_diff": max(c["max_abs_diff"] for c in checks),
            "reload_within_tolerance": all(c["within_tolerance"] for c in checks),
            "reload_tolerance": max(c["tolerance"] for c in checks), "reload_loader": checks[0]["loader"],
            "reload_one_liner": None if not one_liner else
            "error" if any("error" in o for o in one_liner) else all(o.get("within_tolerance") is True
                                                                      for o in one_liner)}



def quality_target(standard: float | None, baseline: float | None, fraction: float = 0.95) -> float | None:
    """The validation Spearman that recovers ``fraction`` of standard's gain over the untrained model (a
    share of a gain, never of a signed figure); None without both."""
    if standard is None or baseline is None or not standard > baseline:
        return None
    return baseline + fraction * (standard - baseline)



def _tuning_columns(choice: tuning.Choice, point: tuning.Point, choices: dict, spec: dict) -> dict:
    """How a point's rate was chosen and what the search cost: the rule, the stable range (and its width
    in grid steps), the unstable rates, the rate as a multiple of standard's in the same precision, and
    the runs and hours of tuning beside those of the final runs."""
    stable = choice.stable_range()
    standard = methods.variant_label({**spec, "arm": "standard", "lora": None})
    theirs = choices.get(standard)
    if len(point.runs) == 1:  # one rate tried: nothing was chosen, and there is no range to speak of
        return {"lr_rule": "one rate, no grid", "lr_pending": choice.pending or None,
                "lr_chosen_unstable": choice.unstable.get(choice.rate), **tuning.tuning_cost(point, choice.rate)}
    return {"lr_rule": choice.rule, "lr_pending": choice.pending or None,
            "lr_chosen_unstable": choice.unstable.get(choice.rate),  # only the first-seed rule can
            "lr_stable_lo": stable[0] if stable else None, "lr_stable_hi": stable[1] if stable else None,
            "lr_stable_steps": choice.stable_steps,
            "lr_unstable": "; ".join(f"{r:g}: {why}" for r, why in sorted(choice.unstable.items())) or None,
            "lr_edge": "; ".join(f"{r:g}: {why}" for r, why in sorted(choice.edge.items())) or None,
            "lr_x_standard": (choice.rate / theirs.rate if theirs and theirs.rate and choice.rate
                              and standard != point.name else None),
            **tuning.tuning_cost(point, choice.rate)}



def ci_columns(name: str, ci: dict) -> dict:
    """A confidence interval as table columns: NAME_mean, NAME_lo, NAME_hi (read back by the tables' cells)."""
    return {f"{name}_mean": ci["mean"], f"{name}_lo": ci["lo"], f"{name}_hi": ci["hi"]}



def _cos_by_seed(group: list[dict]) -> list[np.ndarray]:
    return [np.array(r["quality"]["test_cos"]) for r in sorted(group, key=lambda r: r["spec"]["seed"])
            if r["quality"].get("test_cos")]



def _time_to_quality(group: list[dict], target: float) -> float | None:
    """Median over seeds of the first training time at which validation Spearman reached target."""
    times = []
    for r in group:
        curve = list(lookup(r, "training.validation_curve") or [])
        final_t, final_q = lookup(r, "timings.train_wall_s"), lookup(r, "quality.validation_spearman")
        if final_t is not None and final_q is not None:
            curve.append({"train_s": final_t, "val_spearman": final_q})
        hit = next((p["train_s"] for p in curve if p["val_spearman"] is not None and p["val_spearman"] >= target), None)
        if hit is not None:
            times.append(hit)
    return float(np.median(times)) if times else None



def curves_frame(records: list[dict]):
    """Validation Spearman against training time (evaluation excluded), final point included."""
    import pandas as pd
    rows = []
    for r in selected(records):
        if not methods.trains(r["method"]):
            continue
        point, seed = group_key(r["spec"]), r["spec"]["seed"]
        for p in lookup(r, "training.validation_curve") or []:
            rows.append({"point": point, "seed": seed, "step": p["step"], "train_s": p["train_s"],
                         "val_spearman": p["val_spearman"]})
        rows.append({"point": point, "seed": seed, "step": lookup(r, "timings.steps"),
                     "train_s": lookup(r, "timings.train_wall_s"),
                     "val_spearman": lookup(r, "quality.validation_spearman")})
    return pd.DataFrame(rows, columns=["point", "seed", "step", "train_s", "val_spearman"])
