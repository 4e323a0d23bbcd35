"""The methods table: one row per variant (method, rank, precision) of a job, set against full
fine-tuning, for jobs that compare several methods or precisions.

OUT/methods.md and OUT/methods.csv, and two plots: quality against trainable parameters (log x) for
every method, and the Pareto front of quality against training time and peak memory across methods
and precisions (plots.pareto). Everything comes from variants.point_rows, so the figures, intervals and
significance marks are those of the sweep table, computed from the run records.
"""

from __future__ import annotations

from pathlib import Path

from harness import figures, files, hardware, jobfile, methods, results, stats, sweep
from harness.report import cells, plots, seed_split, sweep_table, variants
from harness.report.tradeoffs import machines, method_notes

_num, _ci = cells.num, cells.interval


def _costs() -> list[str]:
    """The methods table's costs: its figures that are positive (relative="ratio"), each also shown as
    % of standard's mean."""
    return [f.key for f in figures.shown_in("methods") if f.relative == "ratio"]


def wanted(records: list[dict]) -> bool:
    """A job gets the methods table when it holds more than one adapter method or precision."""
    trained = [r["spec"] for r in records if r["status"] == "success" and methods.trains(r["method"])]
    adapter_methods = {s["arm"] for s in trained if s["arm"] in methods.METHODS and methods.METHODS[s["arm"]].adapter}
    precisions = {s.get("precision", "fp32") for s in trained}
    return len(adapter_methods) > 1 or len(precisions) > 1


def _machines_by_point(runs: list[dict], records: list[dict]) -> tuple[dict, dict, str | None]:
    """How many of each variant's final runs (``runs``) and tuning runs (the rest of ``records``) ran on
    each machine (hardware.machine_label), and the job's main machine, the one that ran most of
    ``records``: None where they all ran on one."""
    from collections import Counter, defaultdict

    final_ids = {r["run_id"] for r in runs}
    final: dict[str, Counter] = defaultdict(Counter)
    tuning: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        (final if r["run_id"] in final_ids else tuning)[sweep.group_key(r["spec"])][
            hardware.machine_label(r.get("environment") or {})] += 1
    totals = machines(records)
    main = max(totals, key=totals.get) if len(totals) > 1 else None
    return final, tuning, main


def method_rows(point_rows: list[dict], runs: list[dict] = (), records: list[dict] | None = None) -> list[dict]:
    """point_rows plus each cost as % of the reference (standard), whether the method merged and, where the
    job's runs come from more than one machine, which of each row's runs ran on a machine other than the
    job's main one (the one that ran most of them): ``other_machines``, counting its final runs (``runs``, at
    the chosen rates: its time, memory and energy) and its tuning runs (the rest of ``records``, all of the
    job's runs: its tuning cost) apart."""
    ref = next((r for r in point_rows if r.get("is_reference")), None)
    records = list(runs) if records is None else records
    final, tuning, main = _machines_by_point(runs, records)
    out = []
    for row in point_rows:
        row = dict(row)
        other = []
        for machine in sorted(set(final[row["point"]]) | set(tuning[row["point"]])):
            if main and machine != main:
                parts = [f"{mine[machine]} of its {sum(mine.values())} {kind} runs"
                         for mine, kind in ((final[row["point"]], "final"), (tuning[row["point"]], "tuning"))
                         if mine[machine]]
                other.append(f"{' and '.join(parts)} on {machine}")
        row["other_machines"] = "; ".join(other)
        row["main_machine"] = main or ""
        for key in _costs():
            mine_cost, theirs = row.get(f"{key}_mean"), (ref or {}).get(f"{key}_mean")
            row[f"{key}_pct_of_standard"] = 100 * mine_cost / theirs if mine_cost is not None and theirs else None
        if row.get("forgetting_mean") is not None and (ref or {}).get("forgetting_mean") is not None \
                and not row.get("is_reference") and methods.trains(row["method"]):
            row["forgetting_vs_standard"] = row["forgetting_mean"] - ref["forgetting_mean"]  # a difference
        method = methods.METHODS.get(row["method"])
        row["merges"] = None if method is None or not method.adapter else method.merges
        row["summary"] = method.summary if method else ""
        out.append(row)
    return out


# (key, record path, label): the costs whose ratio lower precision / fp32 the precision table shows
PRECISION_RATIOS = [("step_s_median", "timings.step_s_median", "step time"),
                    ("train_wall_s", "timings.train_wall_s", "train time"),
                    ("peak_memory", "memory.peak_memory_bytes", "peak memory")]


def precision_rows(records: list[dict], edges: dict[str, str | None] | None = None, *,
                   margin: float | None = None) -> list[dict]:
    """Each variant trained in a precision other than fp32, set against the same variant in fp32.

    Seeds are paired: the cost ratios are per seed (bf16 run / fp32 run of the same seed), with a
    Student-t 95% CI over seeds; quality is the Spearman difference by the paired cluster bootstrap
    over the same test groups (stats.paired_spearman_test) and the ratio of the mean Spearmans.
    Where either side's learning-rate grid is not finished (``edges``: each point's grid mark,
    sweep.grid_edges, as variants.point_rows gives it), its rate is not yet the tuned one, so the quality
    comparison would measure the rate, not the precision: the row keeps its cost ratios and says
    ``unfinished`` instead of a quality figure. ``margin``: the smallest difference of interest of the
    four-way verdict (stats.verdict)."""
    from collections import defaultdict

    import numpy as np

    runs = [r for r in sweep.selected(records) if methods.trains(r["method"])]
    by_point: dict[str, dict[int, dict]] = defaultdict(dict)
    for r in runs:
        by_point[sweep.group_key(r["spec"])][r["spec"]["seed"]] = r
    evalset = results.evaluation_set(runs)
    edges = edges or {}
    margin = stats.SPEARMAN_MARGIN if margin is None else margin
    rows = []
    for point, mine in by_point.items():
        spec = next(iter(mine.values()))["spec"]
        if spec.get("precision", "fp32") == "fp32":
            continue
        against = methods.variant_label({**spec, "precision": "fp32"})
        theirs = by_point.get(against, {})
        seeds = sorted(set(mine) & set(theirs))
        if not seeds:
            continue
        differ = sorted({f for s in seeds for f in results.setup_differences(mine[s].get("environment", {}),
                                                                          theirs[s].get("environment", {}))})
        unfinished = sweep.unfinished_grids(edges, (point, against))
        rate, their_rate = spec["learning_rate"], theirs[seeds[0]]["spec"]["learning_rate"]
        row = {"point": point, "against": against, "precision": spec["precision"], "seeds": len(seeds),
               "learning_rate": rate, "against_learning_rate": their_rate,
               "setup_differs": ", ".join(differ), "unfinished": unfinished, "sort": methods.sort_key(spec)}
        for key, path, _ in PRECISION_RATIOS:
            pairs = [(figures.lookup(mine[s], path), figures.lookup(theirs[s], path)) for s in seeds]
            ratios = [a / b for a, b in pairs if a is not None and b]
            row.update(variants.ci_columns(f"{key}_ratio", stats.t_interval(ratios)))
        if unfinished:
            rows.append({**row, **dict.fromkeys(("spearman_diff", "spearman_diff_lo", "spearman_diff_hi",
                                                  "spearman_diff_p", "spearman_diff_significant",
                                                  "spearman_diff_verdict"))})
            continue
        cos_a = [mine[s]["quality"].get("test_cos") for s in seeds]
        cos_b = [theirs[s]["quality"].get("test_cos") for s in seeds]
        if evalset and all(cos_a) and all(cos_b):
            gold, groups = evalset
            test = stats.paired_spearman_test([np.array(c) for c in cos_a], [np.array(c) for c in cos_b],
                                              np.array(gold), groups=groups)
            row.update(spearman_diff=test["diff"], spearman_diff_lo=test["lo"], spearman_diff_hi=test["hi"],
                       spearman_diff_p=test["p_value"], spearman_diff_significant=test["significant"],
                       spearman_diff_verdict=stats.verdict(test, margin), spearman_diff_margin=margin,
                       spearman_diff_seeds_agree=test["seeds_agree"])
        rows.append(row)
    rows.sort(key=lambda r: r.pop("sort"))
    return rows


def precision_markdown(rows: list[dict]) -> list[str]:
    """The precision section of methods.md (empty without a variant trained in two precisions)."""
    if not rows:
        return []
    from tabulate import tabulate
    body = []
    for r in rows:
        ratios = [_ci(r, f"{k}_ratio") for k, _, _ in PRECISION_RATIOS]
        diff = cells.versus_fp32(r)
        verb = "differ" if "," in r["setup_differs"] else "differs"
        measured = f"across setups ({r['setup_differs']} {verb})" if r["setup_differs"] else "side by side"
        rates = f"{_num(r['learning_rate'], 'g')} / {_num(r['against_learning_rate'], 'g')}"
        body.append([r["point"], r["against"], rates, str(r["seeds"]), *ratios, diff, measured])
    headers = ["variant", "against", "lr (variant / against)", "seeds",
               *[f"{label} ratio" for _, _, label in PRECISION_RATIOS],
               "Spearman Δ (95% CI, p, verdict)", "measured"]
    return ["## Precision: each lower-precision variant against the same variant in fp32", "",
            tabulate(body, headers=headers, tablefmt="github", disable_numparse=True), "",
            "- Ratios are lower precision / fp32, per seed (seeds paired), mean with a Student-t 95% CI over "
            "seeds (no CI with one seed); below 1 means cheaper. Step time: median step of trainer.train() "
            "(burn-in excluded); peak memory as in the table above.",
            "- Spearman Δ: lower precision minus fp32 by the paired cluster bootstrap over the same test groups "
            "(and seeds), with the verdict of the table above (no ratio: Spearman is signed). Evaluation runs in "
            "fp32 (then a difference comes from training) unless a note below says otherwise.",
            "- lr: each side trains at its own learning rate (with a grid: chosen by the job's rule, in its own "
            "precision). Where the two differ, the Spearman figures compare the two tuned recipes, rate choice "
            "included, not precision at one rate.",
            "- Measured: side by side when both runs of every pair share one setup (machine, library versions "
            "and harness commit, from their records); otherwise the cost ratios span two setups (two leases of "
            "a GPU, two sessions of a study) and the fields that differ are named. A speed ratio measured side "
            "by side in one run is the bench suite's (`pytest bench --benchmark-only`).", ""]


def _cost(row: dict, key: str) -> str:
    mean = row.get(f"{key}_mean")
    if mean is None:
        return "—"
    pct = row.get(f"{key}_pct_of_standard")
    if pct is None or row.get("is_reference"):
        return _num(mean)
    return _num(mean) + (f" ({pct:.0f}%)" if pct >= 10 else f" ({pct:.2g}%)")  # 0.33%, never 0%


# The methods table's own columns (header, cell, position); the figure registry places its figures among
# them (figures.shown_in("methods")): a cost as mean (% of standard), any other figure as mean [95% CI].
_OWN_COLUMNS = [
    ("variant", lambda row: row["point"] + (" ‡" if row.get("other_machines") else ""), 0), ("lr", cells.rate, 1),
    ("lr rule", lambda row: row.get("lr_rule") or "—", 2),
    ("stable lr range", cells.stable_range, 3), ("lr × standard's", cells.times_standard, 4),
    ("seeds", lambda row: str(row.get("seeds", "")), 5),
    ("trainable params", lambda row: "—" if row.get("trainable_params") is None else f"{row['trainable_params']:,}", 6),
    ("Spearman (95% CI)", lambda row: _ci(row, "spearman"), 7),
    ("Δ vs standard (95% CI, p, verdict)", cells.versus_standard, 8), ("share of standard's gain", cells.gain_share, 9),
    ("converged", cells.converged, 10), ("Δ forgetting vs standard",
                                         lambda row: _num(row.get("forgetting_vs_standard"), "+.3f"), 12),
    ("reloads", cells.reload, 17), ("enc/s unmerged", lambda row: _num(row.get("unmerged_sentences_per_s"), ".0f"), 18),
    ("enc/s merged", lambda row: _num(row.get("merged_sentences_per_s"), ".0f"), 19),
    ("merges", lambda row: cells.merge(row, row["merges"]), 20), ("tuning cost", cells.tuning_cost, 21),
]


def _figure_cell(figure):
    if figure.relative == "ratio":
        return lambda row: _cost(row, figure.key)
    return lambda row: _ci(row, figure.key)


def columns() -> list[tuple[str, object]]:
    """(header, cell function of a row) of every column of the methods table, in order."""
    placed = [(pos, i, header, cell) for i, (header, cell, pos) in enumerate(_OWN_COLUMNS)]
    placed += [(f.shows["methods"], len(placed) + i, f.header, _figure_cell(f))
               for i, f in enumerate(figures.shown_in("methods"))]
    return [(header, cell) for _, _, header, cell in sorted(placed, key=lambda p: p[:2])]


def machine_marks(rows: list[dict]) -> list[str]:
    """The note under the methods table for its rows marked ‡: some of their runs ran on a machine other
    than the one that ran most of the job, so their costs compare machines as well as methods."""
    marked = [r for r in rows if r.get("other_machines")]
    if not marked:
        return []
    lines = [f"‡ Runs on another machine: most of this job's runs ran on {marked[0]['main_machine']}. Where some "
             "of a marked row's final runs ran elsewhere, its time, memory and energy figures (and their % of "
             "standard) compare machines as well as methods; where some of its tuning runs did, its tuning cost "
             "does. Quality is comparable across them.", ""]
    lines += [f"- {r['point']}: {r['other_machines']}" for r in marked]
    return lines + [""]


VERDICTS = ("better", "equivalent", "inconclusive", "worse")


def survivors(rows: list[dict]) -> list[str]:
    """What survives, in one line per verdict: the variants better than, equivalent to, worse than
    standard or inconclusive against it (the table's four-way verdicts at the job's margin)."""
    compared = [r for r in rows if r.get("vs_standard_verdict") in VERDICTS and methods.trains(r["method"])]
    if not compared:
        return []
    ref = next((r["point"] for r in rows if r.get("is_reference")), "standard")
    margin = compared[0].get("vs_standard_margin")
    lines = [f"**What survives** ({len(compared)} variants against {ref}, verdicts at a smallest difference of "
             f"±{margin:g} Spearman):", ""]
    for verdict in VERDICTS:
        names = [r["point"] for r in compared if r["vs_standard_verdict"] == verdict]
        shown = cells.verdict_text(verdict, margin) if verdict == "equivalent" else verdict
        lines.append(f"- {shown}: {', '.join(names) if names else 'none'}")
    withheld = [r["point"] for r in rows if r.get("vs_standard_withheld") and methods.trains(r["method"])]
    if withheld:
        lines.append(f"- not compared yet (a rate grid still running): {', '.join(withheld)}")
    return [*lines, ""]


def methods_markdown(rows: list[dict], records: list[dict], precision: list[dict] = (),
                     splits: list[dict] = ()) -> str:
    """methods.md: ``rows`` (method_rows), ``records`` (the runs at the chosen rates), the precision
    section's rows (precision_rows) and the seed-split section's (seed_split.split_rows)."""
    from tabulate import tabulate

    seen = [m for m in dict.fromkeys(r["method"] for r in rows) if m in methods.METHODS]
    table = columns()
    parts = [f"# {sweep_table.title(rows, records)}", "",
             tabulate([[cell(r) for _, cell in table] for r in rows], headers=[h for h, _ in table],
                      tablefmt="github", disable_numparse=True), "",
             *survivors(rows),
             "## How to read it", "",
             "- Spearman: test split, mean over seeds, cluster-bootstrap 95% CI (groups and seeds resampled). "
             "Δ vs standard: paired cluster bootstrap over the same groups, seeds paired.",
             *[f"- {line}" for line in sweep_table.protocol_notes(rows)],
             "- lr: the learning rate the variant trained with; LoRA+'s is the rate of its A matrices. lr × "
             "standard's: the chosen rate over standard's chosen rate in the same precision.",
             "- Costs: mean over seeds; in brackets, % of standard's mean (costs are positive, so a ratio means "
             "something). Training time, memory and energy cover trainer.train() only; energy is labelled an "
             "estimate where it is one (see the notes below).",
             "- forgetting: the reference benchmark's Spearman lost against the untrained model (positive: "
             "general quality lost); Δ forgetting vs standard: the difference of the means (never a ratio: "
             "forgetting is signed and can be near zero).",
             "- merges: peft folded the adapter into the base weights; max abs diff is the largest embedding "
             "difference merged against unmerged (float32); \"no\" where any seed's merge was out of tolerance. "
             "enc/s: single passes over the test texts.",
             f"- {cells.RELOAD_NOTE}", ""]
    parts += machine_marks(rows)
    parts += cells.rate_notes(rows)
    costed = [r for r in rows if r.get("tuning_runs") is not None]
    if costed:
        parts += [f"Tuning cost of the whole job: {sum(r['tuning_runs'] for r in costed)} runs and "
                  f"{sum(r['tuning_hours'] for r in costed):.1f} h at rates that were not chosen, beside "
                  f"{sum(r['final_runs'] for r in costed)} runs and {sum(r['final_hours'] for r in costed):.1f} h "
                  "at the chosen rates (hours of the machine that ran them, from each worker's start to its "
                  "record).", ""]
    parts += seed_split.markdown(list(splits))
    parts += ["## The methods", ""]
    for name in seen:
        m = methods.METHODS[name]
        parts.append(f"- **{name}**: {m.summary}." + (f" {m.notes}." if m.notes else ""))
    parts += [""] + precision_markdown(list(precision))
    parts += ["## Notes", ""] + [f"- {n}" for n in method_notes(records)] + [""]
    return "\n".join(parts)


def write_methods(out, records: list[dict], points: list[dict] | None = None,
                  manifest: jobfile.Manifest = jobfile.NOT_GIVEN) -> list[Path]:
    """OUT/methods.md, OUT/methods.csv and plots/quality_vs_params, from the run records (``points``:
    their variants.point_rows with the job's options, recommend.job_rows, and ``manifest``: its job.json,
    where the caller has them)."""
    import pandas as pd

    out = Path(out)
    manifest = jobfile.resolved(out, manifest)
    runs = sweep.selected(records, sweep.job_selection(manifest=manifest))
    margin = jobfile.margin(out, manifest)
    if points is None:
        points = variants.job_point_rows(records, out, manifest)
    rows = method_rows(points, runs, records)
    frame = pd.DataFrame(rows)
    files.frame_to_csv_atomic(frame, out / "methods.csv", index=False)
    written = [out / "methods.csv"]
    if not frame.empty and "spearman_mean" in frame:
        written += plots.quality_vs_params(frame, out / "plots")
        paths, _ = plots.pareto(frame, out / "plots")
        written += paths
    precision = precision_rows(runs, edges={p["point"]: p["lr_grid_edge"] for p in points}, margin=margin)
    if precision:
        files.frame_to_csv_atomic(pd.DataFrame(precision), out / "precision.csv", index=False)
        written.append(out / "precision.csv")
    files.write_text_atomic(out / "methods.md", methods_markdown(rows, runs, precision, seed_split.split_rows(records)))
    return [out / "methods.md", *written]

