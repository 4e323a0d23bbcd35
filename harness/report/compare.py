"""Compare the same benchmark across machines: ``python -m harness compare DIR [DIR ...]``.

The folders must hold the same specs; only hardware may differ (the ``device`` field, and the
recorded environment). Anything else that differs is an error listing each differing field.
In a tuned sweep each arm counts only at its chosen learning rate (sweep.reported).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tabulate import tabulate

from harness import catalog, figures, files, methods, results
from harness.catalog import hardware_id
from harness.report import tradeoffs

HARDWARE_FIELDS = {"device"}
QUALITY_TOLERANCE = 0.02  # Spearman gap between machines above which a row is flagged


TUNED_NOTE = ("Tuned sweeps: each arm counts only its runs at its chosen learning rate (the best validation "
              "Spearman on its first seed); successful runs at other rates left out: ")


class CompareError(ValueError):
    """Folders that did not run the same spec."""


def load_machine(folder: Path) -> tuple[str, dict[str, list[dict]], int]:
    """(hardware id, successful runs by arm label, successful runs left out) of one folder: the runs
    its own tables report (sweep.reported), so that where an arm ran at several learning rates (a
    tuned sweep) a figure is never a mean over the rate grid; the third item counts the runs at
    other rates."""
    job = catalog.read_job(folder, quiet=False)  # a skipped file is a warning (one line: cli.warnings_as_lines)
    if not job.records:
        raise CompareError(f"{folder}: no successful run records in {results.runs_dir(folder)}")
    return hardware_id(job.records[0]["environment"]), by_arm(job.records), job.left_out


def by_arm(records: list[dict]) -> dict[str, list[dict]]:
    """One folder's reported runs by arm label."""
    by_label: dict[str, list[dict]] = {}
    for r in records:
        by_label.setdefault(tradeoffs.label_of(r), []).append(r)
    return by_label


def check_same_specs(machines: list[tuple[str, str, dict]]) -> None:
    first_name, _, first = machines[0]
    problems = []
    for name, _, other in machines[1:]:
        if set(other) != set(first):
            problems.append(f"{name} vs {first_name}: arms differ: {sorted(other)} vs {sorted(first)}")
            continue
        for label in first:
            a = {k: v for k, v in first[label][0]["spec"].items() if k not in HARDWARE_FIELDS}
            b = {k: v for k, v in other[label][0]["spec"].items() if k not in HARDWARE_FIELDS}
            problems += [f"{name} vs {first_name}: {label}: spec field {k!r} differs: {b.get(k)!r} vs {a.get(k)!r}"
                         for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if problems:
        raise CompareError("the folders did not run the same spec (only hardware may differ):\n" + "\n".join(problems))


def software_differences(machines: list[tuple[str, str, dict]]) -> list[str]:
    """Library versions that differ between the machines: the comparison is of hardware *and* these."""
    lines = []
    for field in results.SOFTWARE_FIELDS:
        seen = {name: sorted({_recorded(r["environment"], field) for rs in by.values() for r in rs})
                for name, _, by in machines}
        if len({tuple(v) for v in seen.values()}) > 1:
            lines.append(f"{field}: " + "; ".join(f"{name} {', '.join(v)}" for name, v in seen.items()))
    return lines


def _recorded(env: dict, field: str) -> str:
    if field not in env:
        return "not recorded"  # records older than the field
    return "none" if env[field] is None else str(env[field])


def _mean(records: list[dict], figure: figures.Figure):
    vals = [v for v in (figure.value(r) for r in records) if v is not None]
    return sum(vals) / len(vals) if vals else None


def tables(machines: list[tuple[str, str, dict]], *, tolerance: float = QUALITY_TOLERANCE) -> dict[str, pd.DataFrame]:
    """Per arm, every figure of the registry's compare view on each machine (a throughput, better
    higher, with its speed-up over the first machine); per machine, each arm's costs as % of standard;
    the test Spearman on each machine, with gaps above ``tolerance`` flagged."""
    shown = figures.shown_in("compare")
    names = [n for n, _, _ in machines]
    labels = tradeoffs.label_order([r for rs in machines[0][2].values() for r in rs])
    per_arm = []
    for label in labels:
        for figure in shown:
            row = {"arm": label, "figure": figure.short}
            values = [_mean(by[label], figure) for _, _, by in machines]
            for name, v in zip(names, values, strict=True):
                row[name] = v
            if figure.better == "higher":
                for name, v in zip(names[1:], values[1:], strict=True):
                    row[f"{name} speed-up vs {names[0]}"] = v / values[0] if v and values[0] else None
            per_arm.append(row)
    ratios = []
    for name, _, by in machines:
        records = [r for rs in by.values() for r in rs]
        ref = tradeoffs.reference_label(records)
        std = by.get(ref)
        for label in [c for c in tradeoffs.label_order(records) if c != ref and methods.trains(by[c][0]["method"])]:
            row = {"machine": name, "arm": label}
            for figure in [f for f in shown if f.better != "higher"]:  # costs: positive, so a ratio means something
                theirs, mine = _mean(std, figure) if std else None, _mean(by[label], figure)
                row[f"{figure.short} % of standard"] = 100 * mine / theirs if theirs and mine is not None else None
            ratios.append(row)
    quality = []
    for label in labels:
        values = [_mean(by[label], figures.FIGURES["spearman"]) for _, _, by in machines]
        gap = max(values) - min(values) if all(v is not None for v in values) else None
        quality.append({"arm": label, **dict(zip(names, values, strict=True)), "max gap": gap,
                        "flag": "GAP ABOVE TOLERANCE" if gap is not None and gap > tolerance else ""})
    return {"per_arm": pd.DataFrame(per_arm), "ratios": pd.DataFrame(ratios), "quality": pd.DataFrame(quality)}


def bar_chart(per_arm: pd.DataFrame, names: list[str], out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names_of_figures = [f.short for f in figures.shown_in("compare")]
    fig, axes = plt.subplots(1, len(names_of_figures), figsize=(4 * len(names_of_figures), 3.6))
    for ax, figure in zip(axes, names_of_figures, strict=True):
        sub = per_arm[per_arm["figure"] == figure].set_index("arm")[names]
        sub.plot.bar(ax=ax, rot=0)
        ax.set_title(figure)
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths = [out / "compare.png", out / "compare.svg"]
    for p in paths:
        files.save_figure_atomic(fig, p, dpi=120)
    plt.close(fig)
    return paths


def run(folders: list[Path], *, out: Path, tolerance: float = QUALITY_TOLERANCE) -> dict[str, Path]:
    machines, left_out = [], {}
    for folder in folders:
        hw, by, others = load_machine(Path(folder))
        name = hw if hw not in [m[0] for m in machines] else f"{hw} ({Path(folder).name})"
        machines.append((name, str(folder), by))
        left_out[name] = others
    check_same_specs(machines)
    t = tables(machines, tolerance=tolerance)
    out.mkdir(parents=True, exist_ok=True)
    md = ["# Hardware comparison", "", "Folders: " + ", ".join(f"`{f}` ({n})" for n, f, _ in machines), "",
          *([TUNED_NOTE + "; ".join(f"{n}: {k}" for n, k in left_out.items()) + ".", ""]
            if any(left_out.values()) else []),
          "## Per arm", "", tabulate(t["per_arm"].values.tolist(), headers=list(t["per_arm"].columns),
                                     tablefmt="github", floatfmt=".4g"), "",
          "## LoRA against standard, per machine", "",
          tabulate(t["ratios"].values.tolist(), headers=list(t["ratios"].columns), tablefmt="github", floatfmt=".1f"),
          "", f"## Quality (test Spearman); gaps above {tolerance} are flagged", "",
          tabulate(t["quality"].values.tolist(), headers=list(t["quality"].columns), tablefmt="github",
                   floatfmt=".4f"), ""]
    software = software_differences(machines)
    md += ["## Software", "", *([f"- {line}" for line in software] or
                               ["- The recorded library versions are the same on every machine."]), ""]
    for name, _, by in machines:
        md += [f"- {name}: " + "; ".join(tradeoffs.method_notes([r for rs in by.values() for r in rs])[:2])]
    paths = {"md": out / "compare.md", "csv": out / "compare.csv"}
    files.write_text_atomic(paths["md"], "\n".join(md) + "\n")
    files.frame_to_csv_atomic(t["per_arm"], paths["csv"], index=False)
    files.frame_to_csv_atomic(t["ratios"], out / "compare-ratios.csv", index=False)
    files.frame_to_csv_atomic(t["quality"], out / "compare-quality.csv", index=False)
    for p in bar_chart(t["per_arm"], [n for n, _, _ in machines], out):
        paths[p.suffix[1:]] = p
    return paths
