"""The sweep table: OUT/sweep.md, OUT/sweep.csv and the sweep's plots, from the variant rows
(harness/report/variants.py). Its own columns and the figure registry's (figures.shown_in("sweep")) are placed
by position; its title says what the job is.
"""

from __future__ import annotations

import math

import numpy as np

from harness import convergence, figures, files, jobfile, methods, stats, tuning
from harness.figures import lookup
from harness.report import cells, tradeoffs
from harness.report.variants import curves_frame, job_point_rows, quality_target
from harness.sweep import EXTENDING, group_key, job_selection, selected

# The sweep table's own columns (key, header, position); the figure registry places its figures among
# them (figures.shown_in("sweep")).
_OWN_COLUMNS = [
    ("point", "point", 0), ("learning_rate", "lr", 1), ("lr_stable", "stable lr range", 2), ("seeds", "seeds", 3),
    ("trainable_params", "trainable params", 4), ("test_size", "test pairs / groups", 5),
    ("spearman", "Spearman (95% CI)", 6), ("vs_standard_diff", "Δ vs std (95% CI, verdict)", 7),
    ("gain_share", "share of std's gain (95% CI)", 8), ("converged", "converged", 9),
    ("train_wall_pct_of_standard", "time % of std", 15),
    ("time_to_95pct_standard_s", "time to 95% of std's gain (s)", 19),
    ("vs_standard_p", "p vs std", 20), ("reload", "reloads", 21), ("merge_max_abs_diff", "merge max abs diff", 22),
    ("unmerged_sentences_per_s", "enc/s unmerged", 23), ("merged_sentences_per_s", "enc/s merged", 24),
    ("tuning", "tuning cost", 25),
]



def sweep_columns() -> list[tuple[str, str]]:
    """(row key, header) of every column of the sweep table, in order."""
    placed = [(pos, i, key, header) for i, (key, header, pos) in enumerate(_OWN_COLUMNS)]
    placed += [(f.shows["sweep"], len(placed) + i, f.key, f.header) for i, f in enumerate(figures.shown_in("sweep"))]
    return [(key, header) for _, _, key, header in sorted(placed)]



_CELLS = {"learning_rate": cells.rate, "lr_stable": cells.stable_range, "gain_share": cells.gain_share,
          "converged": cells.converged, "tuning": cells.tuning_cost, "reload": cells.reload,
          "vs_standard_diff": lambda row: cells.versus_standard(row, with_p=False) if methods.trains(row.get("method"))
          or row.get("vs_standard_spearman_diff") is not None else "—"}



def _cell(row: dict, key: str) -> str:
    if key in _CELLS:
        return _CELLS[key](row)
    if f"{key}_mean" in row:
        mean, lo, hi = row[f"{key}_mean"], row[f"{key}_lo"], row[f"{key}_hi"]
        if mean is None:
            return "—"
        return f"{mean:.3g}" + (f" [{lo:.3g}, {hi:.3g}]" if lo is not None else "")
    if key == "test_size":
        return f"{row['test_pairs']} / {row['test_groups']}" if row.get("test_pairs") else "—"
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if key == "vs_standard_p":
        return f"{value:.3f}"
    if key == "trainable_params":
        return f"{value:,}"
    return f"{value:.3g}" if isinstance(value, float) else str(value)



def title(rows: list[dict], records: list[dict]) -> str:
    """What the job is, from its rows: a method study, a rank sweep, a precision study or one method
    against standard; "at a fixed budget of N steps" unless every variant converged (the rule of
    harness/convergence.py), so that the title does not promise where the methods end up."""
    trained = [r for r in rows if r.get("method") not in (None, "baseline", "standard")]
    adapters = list(dict.fromkeys(r["method"] for r in trained))
    ranks = sorted({r["rank"] for r in trained if r.get("rank") is not None})
    precisions = {r["point"].rsplit(" ", 1)[-1] for r in rows if r["point"].endswith(("bf16", "fp16"))}
    if len(adapters) > 1:
        text = f"Method study: {len(adapters)} adapter methods against full fine-tuning (standard)"
    elif len(ranks) > 1:
        text = f"Rank sweep: {adapters[0]} at ranks {', '.join(map(str, ranks))} against full fine-tuning"
    elif precisions:
        text = "Precision study: " + ", ".join(r["point"] for r in rows if methods.trains(r.get("method")))
    else:
        text = ", ".join(r["point"] for r in rows if methods.trains(r.get("method")) and not r.get("is_reference"))
        text = f"{text or 'standard'} against full fine-tuning"
    trained_rows = [r for r in rows if methods.trains(r.get("method"))]
    return text + tradeoffs.budget(records, converged=bool(trained_rows) and all(
        r.get("convergence_converged") is True for r in trained_rows))



def protocol_notes(rows: list[dict]) -> list[str]:
    """How the sweep and methods tables chose each rate, judged each difference and convergence: the
    bullet lines both tables print."""
    rules = sorted({r["lr_rule"] for r in rows if r.get("lr_rule") and r["lr_rule"] != "one rate, no grid"})
    margin = next((r["vs_standard_margin"] for r in rows if r.get("vs_standard_margin") is not None),
                  stats.SPEARMAN_MARGIN)
    lines = [(f"Learning rate: chosen by {' / '.join(rules)}" if rules else
              "Learning rate: each variant at its spec's rate (no grid)")
             + (" (the first seed screens the grid; its best stable rates run on the other seeds; the one with "
                "the best mean validation Spearman over every seed is chosen)" if any(
                    r.startswith("mean") for r in rules) else "")
             + ". " + tuning.RULE_TEXT + " Stable lr range: the contiguous stable rates tried around the chosen "
             "one, its width in grid steps. (top of grid) or (bottom of grid): the chosen rate is an end of the "
             "rates tried, so a rate beyond it might do better. (K of N rates run) or (screening unfinished): "
             "runs are still to come, so the rate is not tuned yet and no Δ vs std is given for it (nor for any "
             "point while standard's own choice is unfinished): it would measure the rate, not the method.",
             f"Verdict against standard, at a smallest difference of interest of ±{margin:g} Spearman (set with "
             "--margin on run and sweep): equivalent where the whole 95% CI of the difference lies within "
             "±margin; else better or worse where it is significant (p < 0.05 and, with several seeds, every "
             "seed's own difference on the side of the mean); else inconclusive. \"Is it as good as standard?\" "
             "is answered by equivalent, not by the absence of significance.",
             "Share of std's gain: (S - S_baseline) / (S_standard - S_baseline) in test Spearman, with a "
             "cluster-bootstrap 95% CI over the same groups; only where standard's own gain over the untrained "
             "model is significant. Spearman is signed, so no figure is given as a % of standard's Spearman.",
             "Converged: " + convergence.RULE + "; yes (k/n) where every seed's run did. A variant that had not "
             "converged was compared at a fixed budget: its figures say how far it got in that many steps.",
             "Tuning cost: the runs at other rates (the rate search) and their wall time, beside the final runs "
             "at the chosen rate; hours of this machine from each worker's start to its record."]
    if any(str(r.get("lr_grid_edge") or "").startswith(EXTENDING) for r in rows):
        lines.append("(extension unfinished: R to run): the best rate on the first seed or by the rule is an end "
                     "of the rates tried, and the sweep's --lr-extend allows one more step past it, R, not run "
                     "yet: like (screening unfinished), the rate is not tuned yet and no Δ vs std is given for it.")
    return lines



def sweep_markdown(rows: list[dict], pareto_table, records: list[dict]) -> str:
    from tabulate import tabulate

    from harness.report.tradeoffs import method_notes
    columns = sweep_columns()
    body = [[_cell(r, key) for key, _ in columns] for r in rows]
    parts = [f"# {title(rows, records)}", "",
             tabulate(body, headers=[h for _, h in columns], tablefmt="github", disable_numparse=True), "",
             "## Method", "",
             "- Spearman: mean over seeds with a cluster-bootstrap 95% CI: each of 2000 replicates resamples the "
             "test *groups* (the independent units: profile pairs on dating, distinct sentence pairs on STS-B) and, "
             "with several seeds, the seeds. Other figures: mean over seeds with a Student-t 95% CI; no CI with "
             "one seed.",
             "- Δ vs std and p vs std: paired cluster bootstrap of the point's Spearman minus standard's over the "
             "same groups (seeds paired).",
             *[f"- {line}" for line in protocol_notes(rows)],
             "- time to 95% of std's gain: training wall time (evaluation excluded) at which validation Spearman "
             "first recovered 95% of standard's final gain over the untrained model; median over seeds.",
             "- merge: peft's LoraLayer.merge folds the adapter into the base weights; max abs diff is the largest "
             "absolute embedding difference merged vs unmerged on the test texts (float32, tolerance 1e-5). "
             "enc/s are single passes over the test texts.", f"- {cells.RELOAD_NOTE}", ""]
    parts += [f"- {n}" for n in method_notes(records)] + [""]
    parts += cells.rate_notes(rows)
    if pareto_table is not None and not pareto_table.empty:
        parts += ["## Pareto front (quality vs cost)", "",
                  tabulate(pareto_table.values.tolist(), headers=list(pareto_table.columns), tablefmt="github"), ""]
    return "\n".join(parts)



def write_sweep(out, records: list[dict], rows: list[dict] | None = None,
                manifest: jobfile.Manifest = jobfile.NOT_GIVEN) -> list:
    """OUT/sweep.md, OUT/sweep.csv and the plots, all from the run records (``rows``: their point_rows
    with the job's options, recommend.job_rows, and ``manifest``: its job.json, where the caller has
    them already)."""
    from pathlib import Path

    import pandas as pd

    from harness.report import plots
    out = Path(out)
    manifest = jobfile.resolved(out, manifest)
    selection = job_selection(manifest=manifest)
    if rows is None:
        rows = job_point_rows(records, out, manifest)
    frame = pd.DataFrame(rows)
    files.frame_to_csv_atomic(frame, out / "sweep.csv", index=False)
    written = [out / "sweep.csv"]
    pareto_table = None
    if not frame.empty and "spearman_mean" in frame:
        written += plots.rank_vs_quality(frame, out / "plots")
        written += plots.rank_vs_cost(frame, out / "plots")
        paths, pareto_table = plots.pareto(frame, out / "plots")
        written += paths
        std = frame[frame["is_reference"]]
        target = None
        chosen = selected(records, selection)
        ref = methods.reference_label([r["spec"] for r in chosen])
        std_val = [lookup(r, "quality.validation_spearman") for r in chosen if group_key(r["spec"]) == ref]
        std_val = [v for v in std_val if v is not None]
        if not std.empty and std_val:
            target = quality_target(float(np.mean(std_val)), tuning.baseline_validation(chosen))
        written += plots.time_to_quality(curves_frame(chosen), out / "plots", target=target)
        if "forgetting_mean" in frame and frame["forgetting_mean"].notna().any():
            written += plots.quality_vs_forgetting(frame, out / "plots")
        sensitivity = pd.DataFrame(tuning.sensitivity_rows(records, selection))
        if not sensitivity.empty and sensitivity.groupby("point")["learning_rate"].nunique().max() > 1:
            written += plots.lr_sensitivity(sensitivity, out / "plots")  # only where some rate was tuned
    files.write_text_atomic(out / "sweep.md", sweep_markdown(rows, pareto_table, records))
    return [out / "sweep.md", *written]
