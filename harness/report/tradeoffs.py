"""Tradeoff tables from run records: pure functions over DataFrames, thin writers at the end.

The table has one row per metric and one column per arm (baseline | standard | lora r=N), plus
"<lora> vs standard" columns, like ADR-001's table, with efficiency and quality joined. How a column
sets an arm against standard follows the figure (figures.Figure.relative): a cost or size as % of
standard (they are positive), a quality figure as the share of standard's gain over the untrained
baseline (they are signed), a figure near zero (forgetting, drift, counts) as the difference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from harness import cpu_share, figures, files, hardware, methods, results
from harness.figures import lookup, number
from harness.report import cells


def runs_frame(records: list[dict]) -> pd.DataFrame:
    """One row per run: identity columns plus every figure of the registry (already scaled), by label."""
    rows = []
    for r in records:
        row = {"run_id": r["run_id"], "label": label_of(r), "order": methods.sort_key(r["spec"]), "method": r["method"],
               "status": r["status"], "seed": lookup(r, "spec.seed"), "dataset": lookup(r, "data.name")}
        for figure in figures.every():
            row[figure.label] = figure.value(r)
        rows.append(row)
    return pd.DataFrame(rows)


def label_of(record: dict) -> str:
    """A record's variant label, from its spec (methods.variant_label), never from stored text."""
    return methods.variant_label(record["spec"])


def label_order(records: list[dict]) -> list[str]:
    """The variant labels of these records in table order (methods.sort_key)."""
    keys = {label_of(r): methods.sort_key(r["spec"]) for r in records}
    return sorted(keys, key=keys.get)


def reference_label(records: list[dict]) -> str | None:
    return methods.reference_label([r["spec"] for r in records])


VERSUS = " vs "  # the comparison columns: "<arm> vs <standard>"


def _relative_kind(metric: str) -> str:
    figure = figures.by_label(metric)
    return figure.relative if figure else "ratio"


def tradeoff_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows = metrics, columns = arms (mean over successful runs of each arm) and each arm against
    standard: a ratio (%) for costs, the share of standard's gain over the baseline for quality (only
    where standard moved it: a gain of 1e-5 has no shares), the difference for figures near zero."""
    metrics = [f.label for f in figures.every()]
    table = pd.DataFrame(index=metrics)
    if frame.empty:  # a sweep none of whose variants has a chosen rate yet: nothing to tabulate
        return table
    ok = frame[frame["status"] == "success"]
    labels = sorted(set(ok["label"]), key=lambda lab: ok[ok["label"] == lab]["order"].iloc[0])
    for label in labels:
        table[label] = ok[ok["label"] == label][metrics].astype(float).mean(skipna=True)
    standard = sorted(set(ok[ok["method"] == "standard"]["label"]),
                      key=lambda lab: ok[ok["label"] == lab]["order"].iloc[0])
    if standard:
        ref = standard[0]
        base = next((lab for lab in labels if (ok[ok["label"] == lab]["method"] == "baseline").all()), None)
        for label in [c for c in labels if c != ref and not (ok[ok["label"] == c]["method"] == "baseline").all()]:
            table[f"{label}{VERSUS}{ref}"] = [_relative(metric, table.loc[metric, label], table.loc[metric, ref],
                                                        table.loc[metric, base] if base else None)
                                              for metric in table.index]
    table.index.name = "metric"
    # a figure that no record carries (forgetting in records made before it existed) gets no row
    return table.dropna(how="all")


GAIN_FLOOR = 0.01  # standard must move a quality figure by more than this (in its unit) for a share of it


def _relative(metric: str, mine, theirs, base):
    """One comparison cell's value: a ratio in %, a share of the gain (a fraction) or a difference."""
    kind = _relative_kind(metric)
    if any(v is None or pd.isna(v) for v in (mine, theirs)):
        return None
    if kind == "ratio":
        return 100 * mine / theirs if theirs > 0 and mine >= 0 else None
    if kind == "gain":
        if base is None or pd.isna(base) or not theirs - base > GAIN_FLOOR:
            return None
        return (mine - base) / (theirs - base)
    return mine - theirs


def _fmt_relative(value, metric: str) -> str:
    if value is None or pd.isna(value):
        return "—"
    kind = _relative_kind(metric)
    if kind == "ratio":
        return _fmt_pct(value)
    if kind == "gain":
        return f"{100 * value:.0f}% of gain"
    return f"{value:+,.0f}" if _integer(metric) else f"{value:+.3f}"


def _integer(metric: str) -> bool:
    figure = figures.by_label(metric)
    return bool(figure and figure.integer)


def _fmt(value, metric: str) -> str:
    if value is None or pd.isna(value):
        return "—"
    if _integer(metric):
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2e}"


def _fmt_pct(value) -> str:
    """A share with enough digits to be read: 0.325%, 92.2%, 148.0%."""
    if value is None or pd.isna(value):
        return "—"
    return (f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}") + "%"


def format_table(table: pd.DataFrame, *, fmt: str = "github") -> str:
    cells = [[metric] + [(_fmt_relative(v, metric) if VERSUS in col else _fmt(v, metric)) for col, v in row.items()]
             for metric, row in table.iterrows()]
    return tabulate(cells, headers=["metric", *table.columns], tablefmt=fmt, disable_numparse=True)


def method_notes(records: list[dict]) -> list[str]:
    """How the figures were measured, taken from the records themselves."""
    ok = [r for r in records if r["status"] == "success"]
    notes = []
    for key, label in (("memory.source", "Peak memory"), ("energy.energy_method", "Energy")):
        seen = sorted({lookup(r, key) for r in ok if lookup(r, key)})
        if seen:
            notes.append(f"{label}: " + " | ".join(seen))
    if any(lookup(r, "energy.energy_is_estimate") for r in ok):
        notes.append("Energy figures are ESTIMATES (no hardware energy counters were readable for every part).")
    missing = sorted({lookup(r, "energy.energy_unavailable_reason") for r in ok
                      if methods.trains(r["method"]) and lookup(r, "energy.energy_unavailable_reason")})
    notes += [f"Energy not measured: {m}" for m in missing]
    first = ok[0] if ok else None
    if first:
        q = first["quality"]
        notes.append(f"Quality on the held-out test split ({q.get('n_pairs')} pairs, "
                     f"{q.get('n_compatible')} compatible at gold >= {q.get('compatible_threshold')}); "
                     "the F1 decision threshold is chosen on the validation split.")
        env = first["environment"]
        signature = hardware.describe_cpu(env)
        notes.append(f"Device: {env.get('device')} ({env.get('device_name') or env.get('cpu_model')}"
                     f"{'; ' + signature if signature else ''}), {env.get('torch_threads')} torch threads, "
                     f"torch {env.get('torch_version')}.")
        notes += machine_notes(ok)
        notes += shared_notes(ok)
        notes.append(f"Timing: {lookup(first, 'timings.method') or lookup(ok[-1], 'timings.method') or 'n/a'}")
    notes += precision_notes(ok)
    return notes


def machines(records: list[dict]) -> dict[str, int]:
    """The machines the records ran on (hardware.machine_label) and how many runs each."""
    from collections import Counter
    return dict(Counter(hardware.machine_label(r.get("environment") or {}) for r in records))


def machine_notes(ok: list[dict]) -> list[str]:
    """Where a folder's runs come from more than one machine, the note beside its timings: machines
    that differ in what they recorded, or runs that recorded only the CPU's name (before the harness
    kept its signature) beside runs of a named CPU, which may or may not be the same."""
    mixed = machines(ok)
    if len(mixed) < 2:
        return []
    runs = "; ".join(f"{m} ({n} runs)" for m, n in mixed.items())
    envs = [r.get("environment") or {} for r in ok]
    names = {hardware.machine_label({**env, "cpu_vendor": None}) for env in envs}
    signatures = {hardware.describe_cpu(env) for env in envs} - {""}
    if len(names) == 1 and len(signatures) == 1:  # one named CPU, and runs that recorded only its name
        return [f"TIMINGS MAY MIX MACHINES: {runs}. The runs without a CPU signature recorded only the CPU's "
                "name, which can stand for CPUs of different speed; quality is comparable across them, time, "
                "memory and energy figures may not be."]
    return [f"TIMINGS MIX {len(mixed)} MACHINES: {runs}. Quality is comparable across them; time, memory and "
            "energy figures are not, and every mean of them here averages runs of different machines."]


def shared_notes(ok: list[dict]) -> list[str]:
    """Runs that trained while other work used the CPUs (harness/cpu_share.py): their
    timings are not a quiet machine's, so the tables say which. Runs recorded before the harness measured
    it are counted apart, as not known."""
    trained = [r for r in ok if methods.trains(r["method"])]
    beside = {r["run_id"]: cpu_share.shared_cores(r.get("environment")) for r in trained}
    shared = {run: cores for run, cores in beside.items() if cores is not None and cores > cpu_share.SHARED_CORES}
    unknown = sum(cores is None for cores in beside.values())
    notes = []
    if shared:
        notes.append(f"TIMINGS SHARED: {len(shared)} of {len(trained)} trained runs ran while other work used more "
                     f"than {cpu_share.SHARED_CORES:g} of a core on average ("
                     + ", ".join(f"{run}: {cores:.2f}" for run, cores in sorted(shared.items()))
                     + " cores); their time and energy figures are not those of a quiet machine.")
    if shared or (unknown and unknown < len(trained)):
        notes.append(f"CPU beside training: measured for {len(trained) - unknown} of {len(trained)} trained runs "
                     f"({cpu_share.CPU_SHARE_SOURCE}); the others were recorded before the harness measured it.")
    return notes


def precision_notes(ok: list[dict]) -> list[str]:
    """Which precision trained and which evaluated. Records written before the worker removed the
    trainer's autocast (no quality.eval_precision) evaluated mixed-precision runs in that precision."""
    notes = []
    for precision in sorted({lookup(r, "spec.precision") for r in ok} - {"fp32", None}):
        runs = [r for r in ok if lookup(r, "spec.precision") == precision and methods.trains(r["method"])]
        old = [r for r in runs if lookup(r, "quality.eval_precision") is None]
        if old:
            notes.append(f"Precision {precision}: mixed-precision training; {len(old)} of {len(runs)} runs were "
                         f"also EVALUATED under the trainer's {precision} autocast (recorded before the harness "
                         "evaluated in fp32), so their quality includes {precision} inference.".replace(
                             "{precision}", precision))
        else:
            notes.append(f"Precision {precision}: mixed-precision training (fp32 master weights); evaluation in fp32.")
    return notes


def failures(records: list[dict]) -> list[str]:
    return [f"{r['run_id']}: {r['error']['reason']}: {r['error']['message'].splitlines()[0]}"
            for r in records if r["status"] != "success"]


def category_table(records: list[dict]) -> pd.DataFrame:
    """Spearman per category (ADR metric 7) for each successful arm."""
    ok = [r for r in records if r["status"] == "success"]
    data = {}
    for label in label_order(ok):
        runs = [r for r in ok if label_of(r) == label]
        cats = runs[0]["quality"].get("per_category", {})
        data[label] = {c: pd.Series([number(r, f"quality.per_category.{c}.spearman") for r in runs],
                                    dtype=float).mean() for c in cats}
    frame = pd.DataFrame(data)
    frame.index.name = "category"
    return frame


def ordered(records: list[dict]) -> list[dict]:
    """Records in a canonical order (arm, then run id), so reports do not depend on file order."""
    return sorted(records, key=lambda r: (methods.sort_key(r["spec"]), r["run_id"]))


def spearman_stats(records: list[dict], *, margin: float | None = None,
                   withheld: dict[str, str] | None = None) -> list[dict]:
    """Per arm: mean test Spearman over seeds with its cluster-bootstrap 95% CI, and the paired test
    against standard with its four-way verdict at ``margin`` (harness/stats.py). ``withheld`` (label: why,
    the sweep rows' vs_standard_withheld: a rate grid, screening or extension still to run): those arms get
    no paired test, as the sweep and methods tables give them none: it would measure the rate, not the
    method. Empty when the records carry no per-pair scores."""
    from harness import stats
    ok = [r for r in ordered(records) if r["status"] == "success" and r["quality"].get("test_cos")]
    evalset = results.evaluation_set(ok)
    if evalset is None:
        return []
    gold, groups = evalset
    by_label: dict[str, list] = {}
    for r in sorted(ok, key=lambda r: r["spec"]["seed"]):
        by_label.setdefault(label_of(r), []).append(np.asarray(r["quality"]["test_cos"]))
    ref = reference_label(ok)
    rows = []
    for label, cos in by_label.items():
        row = {"label": label, "seeds": len(cos), **stats.bootstrap_spearman(cos, gold, groups=groups)}
        if label != ref and ref in by_label:
            row["margin"] = stats.SPEARMAN_MARGIN if margin is None else margin
            if (withheld or {}).get(label):
                row["withheld"] = withheld[label]
            else:
                row["vs_standard"] = stats.paired_spearman_test(cos, by_label[ref], gold, groups=groups)
                row["verdict"] = stats.verdict(row["vs_standard"], row["margin"])
        rows.append(row)
    return rows


def stats_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    from harness import stats
    margin = next((r["margin"] for r in rows if "margin" in r), stats.SPEARMAN_MARGIN)
    body = []
    for r in rows:
        test = r.get("vs_standard")
        if r.get("withheld"):
            versus = [f"— ({r['withheld']})", "—", "—"]
        elif test is None:
            versus = ["—", "—", "—"]
        else:
            versus = list(cells.paired(test, r["verdict"], r["margin"]))
        body.append([r["label"], r["seeds"], f"{r['n_pairs']} / {r['n_groups']}",
                     f"{r['mean']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]", *versus])
    lines = ["## Test Spearman with 95% confidence intervals", "",
             tabulate(body, headers=["arm", "seeds", "test pairs / groups", "Spearman [95% CI]",
                                     "Δ vs standard [95% CI]", "p", "verdict"],
                      tablefmt="github", disable_numparse=True), "",
             "Cluster bootstrap, 2000 replicates: each replicate resamples the test *groups* (the independent "
             "units: profile pairs on dating, distinct sentence pairs on STS-B, the `group` column of a user file) "
             "and, with several seeds, the seeds. Δ is the paired difference over the same groups and seeds. "
             f"Verdict, at a smallest difference of interest of ±{margin:g} Spearman (--margin): *equivalent* "
             "where the whole 95% CI lies within ±margin; else *better* or *worse* where the difference is "
             "significant (p < 0.05 and, with several seeds, every seed's own difference on the side of the "
             "mean); else *inconclusive*.", ""]
    return lines + separation_warning(rows)


def separation_warning(rows: list[dict]) -> list[str]:
    """A job whose standard arm does not significantly beat the baseline cannot rank methods by quality."""
    baseline = next((r for r in rows if r["label"] == "baseline"), None)
    if baseline is None or "vs_standard" not in baseline:  # no baseline, or no standard arm to compare with
        return []
    test = baseline["vs_standard"]
    if test["significant"] and test["diff"] < 0:
        return []
    return ["**Warning: the quality figures of this job do not tell the arms apart.** Standard fine-tuning does "
            f"not significantly beat the untrained baseline here (Δ baseline - standard = {test['diff']:+.3f}, "
            f"p = {test['p_value']:.3f}): too few steps or too little data (the `quick` profile is a smoke test). "
            "Use `--profile adr` for quality figures.", ""]


def dataset_notes(records: list[dict]) -> list[str]:
    """What the test set allows a metric to show (its ceiling or floor), from the records."""
    ok = [r for r in records if r["status"] == "success"]
    if not ok:
        return []
    q = ok[0]["quality"]
    notes = []
    if q.get("spearman_ceiling") is not None:
        notes.append(f"Spearman cannot exceed {q['spearman_ceiling']:.3f} on this test set (ties in the gold "
                     "scores).")
    if q.get("n_pairs") and q.get("n_compatible") is not None:
        share = q["n_compatible"] / q["n_pairs"]
        notes.append(f"F1 of calling every pair compatible (the trivial level): {2 * share / (1 + share):.3f} "
                     f"({q['n_compatible']} of {q['n_pairs']} test pairs are compatible); an F1 near it separates "
                     "nothing.")
    if q.get("cluster_purity_floor") is not None:
        notes.append(f"Cluster purity cannot fall below {q['cluster_purity_floor']:.3f} (the larger class's share); "
                     "only the part above it measures separation.")
    small = sorted(c for c, m in (q.get("per_category") or {}).items() if (m.get("n_pairs") or 0) < 30)
    if small:
        notes.append(f"Per-category figures rest on fewer than 30 pairs for: {', '.join(small)}.")
    return notes


def title(records: list[dict]) -> str:
    """What the table compares and at which budget: "Tradeoffs: lora r=8 against full fine-tuning
    (standard), at a fixed budget of 500 steps". A job trains every arm for a set number of steps, so it
    compares where each arm got in that many steps, unless every run converged (harness/convergence.py)."""
    ok = [r for r in records if r["status"] == "success"]
    ref = reference_label(ok)
    if ref is None:  # nothing to set against full fine-tuning: say what there is
        return f"Tradeoffs: {', '.join(label_order(ok)) or 'no successful run'}{budget(ok)}"
    arms = [lab for lab in label_order(ok) if lab not in ("baseline", ref)]
    return f"Tradeoffs: {', '.join(arms) or 'the baseline'} against full fine-tuning ({ref}){budget(ok)}"


def budget(records: list[dict], converged: bool | None = None) -> str:
    """", at a fixed budget of 500 steps" (the title's end), or ", every run converged within 500
    steps" where every trained run converged by the rule of harness/convergence.py (``converged``: that
    verdict where the caller has it); "" without steps."""
    from harness import convergence
    trained = [r for r in records if r["status"] == "success" and methods.trains(r["method"])]
    steps = sorted({s for r in trained if (s := lookup(r, "training.global_step"))})
    if not steps:
        return ""
    span = f"{steps[0]}" if len(steps) == 1 else f"{steps[0]}-{steps[-1]}"
    if converged is None:
        verdicts = [convergence.of_record(r) for r in trained]
        converged = bool(verdicts) and all(v is not None and v["converged"] for v in verdicts)
    if converged:
        return f", every run converged within {span} steps"
    return f", at a fixed budget of {span} steps"


def markdown_report(records: list[dict], *, stats_rows: list[dict] | None = None) -> str:
    records = ordered(records)
    table = tradeoff_table(runs_frame(records))
    parts = [f"# {title(records)}", "", format_table(table), ""]
    parts += stats_markdown(spearman_stats(records) if stats_rows is None else stats_rows)
    notes = dataset_notes(records)
    if notes:
        parts += ["## What this test set lets each metric show", ""] + [f"- {n}" for n in notes] + [""]
    parts += ["## How these were measured", ""] + [f"- {n}" for n in method_notes(records)] + [""]
    cats = category_table(records)
    if not cats.empty:
        parts += ["## Spearman by category (test)", "",
                  tabulate(cats.round(3).reset_index().values.tolist(), headers=["category", *cats.columns],
                           tablefmt="github"), ""]
    fails = failures(records)
    if fails:
        parts += ["## Failed runs", ""] + [f"- {f}" for f in fails] + [""]
    parts += ["## Top false positives (incompatible pairs above the decision threshold)", "",
              "One block per arm, from its first seed; the count is that seed's.", ""]
    first = {}
    for r in sorted((r for r in records if r["status"] == "success"), key=lambda r: r["spec"]["seed"]):
        first.setdefault(label_of(r), r)
    for label, r in first.items():
        top = lookup(r, "quality.false_positives.top") or []
        parts.append(f"- **{label}** (seed {r['spec']['seed']}): {lookup(r, 'quality.false_positives.count')} of "
                     f"{lookup(r, 'quality.false_positives.n_incompatible')} incompatible pairs")
        parts += [f"  - cos {fp['cos']:.3f} ({fp.get('category')}): \"{fp['text_a']}\" / \"{fp['text_b']}\""
                  for fp in top[:3]]
    return "\n".join(parts) + "\n"


def write_report(out: Path, records: list[dict], *, stats_rows: list[dict] | None = None) -> dict[str, Path]:
    """Write OUT/tradeoffs.md and OUT/tradeoffs.csv (regenerated from the records every time)."""
    out = Path(out)
    paths = {"md": out / "tradeoffs.md", "csv": out / "tradeoffs.csv"}
    files.write_text_atomic(paths["md"], markdown_report(records, stats_rows=stats_rows))
    files.frame_to_csv_atomic(tradeoff_table(runs_frame(records)), paths["csv"])
    return paths
