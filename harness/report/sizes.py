"""LoRA's saving against model size: ``python -m harness sizes DIR DIR ... --out OUT``.

Each DIR is one job (a ``run`` or ``sweep`` folder) of one model on one dataset, on one machine:
for example the STS-B ADR job of all-MiniLM-L6-v2 and the same job of all-mpnet-base-v2. For every
LoRA variant of each job, set against the same job's standard arm in the same precision:

- each cost of the figure registry's ``sizes`` view (train time, step time, peak memory, the memory
  increment over the loaded model, energy, the artifact) as % of standard: the ratio of the two runs
  of each seed (paired), mean over seeds with a Student-t 95% CI (costs are positive, so a ratio
  means something);
- its share of standard's gain in test Spearman over the untrained baseline, with its
  cluster-bootstrap 95% CI (harness/report/variants.py), and the verdict of the paired test against standard.

Rows are ordered by the model's total parameters: the table and plot say where LoRA starts to pay.
Jobs from two machines, or on two datasets, are refused: their timings or quality do not compare.
Writes OUT/sizes.md, OUT/sizes.csv and OUT/plots/lora_saving_vs_size.{png,svg,csv}.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tabulate import tabulate

from harness import catalog, figures, files, methods, results, stats
from harness.report import cells, recommend


class SizesError(ValueError):
    """Jobs that cannot be set side by side (one line, naming the folders)."""


def _model_of(records: list[dict]) -> tuple[str, int | None]:
    models = sorted({str(figures.lookup(r, "spec.model")) for r in records})
    if len(models) != 1:
        raise SizesError(f"a job of several models ({', '.join(models)}): give one folder per model")
    totals = [figures.lookup(r, "params.total_params") for r in records if methods.trains(r["method"])]
    return models[0], next((t for t in totals if t), None)


def job_rows(folder: Path) -> list[dict]:
    """The LoRA rows of one job folder: costs as % of standard (paired by seed) and the gain share."""
    job = catalog.read_job(folder, quiet=False)  # one read of the runs and job.json, as publish's
    records = job.records  # successful runs only, each point at its chosen rate (sweep.reported)
    if not records:
        raise SizesError(f"{folder}: no successful run records in {results.runs_dir(folder)}")
    model, total = _model_of(records)
    points = {r["point"]: r for r in recommend.job_rows(folder, job.loaded, job.manifest)}
    by_label: dict[str, dict[int, dict]] = {}
    for r in records:
        by_label.setdefault(methods.variant_label(r["spec"]), {})[r["spec"]["seed"]] = r
    rows = []
    for label, runs in by_label.items():
        first = next(iter(runs.values()))
        if first["method"] != "lora":
            continue
        precision = first["spec"].get("precision", "fp32")
        std_label = methods.variant_label({"arm": "standard", "precision": precision})
        standard = by_label.get(std_label)
        row = {"order": methods.sort_key(first["spec"]), "folder": str(folder), "model": model,
               "total_params": total, "variant": label, "against": std_label if standard else None,
               "hardware": catalog.hardware_id(first.get("environment") or {}),
               "dataset": figures.lookup(first, "data.name")}
        seeds = sorted(set(runs) & set(standard or {}))
        row["seeds"] = len(seeds)
        for figure in figures.shown_in("sizes"):
            pairs = [(figure.value(runs[s]), figure.value(standard[s])) for s in seeds]
            ratios = [100 * a / b for a, b in pairs if a is not None and b]
            interval = stats.t_interval(ratios)
            row.update({f"{figure.key}_pct_{k}": interval[k] for k in ("mean", "lo", "hi")})
        point = points.get(label, {})
        same_reference = point.get("vs_standard_spearman_diff") is not None and std_label == next(
            (p["point"] for p in points.values() if p.get("is_reference")), None)
        for key in ("spearman_mean", "spearman_lo", "spearman_hi", "gain_share_mean", "gain_share_lo",
                    "gain_share_hi", "vs_standard_spearman_diff", "vs_standard_diff_lo", "vs_standard_diff_hi",
                    "vs_standard_p", "vs_standard_verdict", "vs_standard_margin", "vs_standard_seeds_agree"):
            if key.startswith("spearman") or same_reference:
                row[key] = point.get(key)
        rows.append(row)
    if not rows:
        raise SizesError(f"{folder}: no LoRA variant with a standard arm to set it against")
    return rows


def table(folders: list[Path]) -> list[dict]:
    """Every LoRA row of every job, smallest model first; jobs must share one machine and dataset."""
    rows = [row for folder in folders for row in job_rows(Path(folder))]
    for field, why in (("hardware", "timings from two machines do not compare"),
                       ("dataset", "quality on two test sets does not compare")):
        seen = sorted({str(r[field]) for r in rows})
        if len(seen) > 1:
            raise SizesError(f"the jobs differ in {field} ({', '.join(seen)}): {why}; give jobs of one {field}")
    rows.sort(key=lambda r: (r["total_params"] or 0, r["order"]))
    return [{k: v for k, v in r.items() if k != "order"} for r in rows]


def _pct(row: dict, key: str) -> str:
    mean, lo, hi = (row.get(f"{key}_pct_{k}") for k in ("mean", "lo", "hi"))
    if mean is None:
        return "—"
    text = f"{mean:.3g}%"
    return text + (f" [{lo:.3g}, {hi:.3g}]" if lo is not None else "")


def markdown(rows: list[dict]) -> str:
    shown = figures.shown_in("sizes")
    headers = ["model", "total params", "variant", "seeds", *[f"{f.header} % of std" for f in shown],
               "share of std's gain (95% CI)", "Δ vs std (95% CI, verdict)"]
    body = []
    for r in rows:
        share = cells.gain_share({**r, "method": "lora"})
        versus = (cells.paired_cell(cells.versus_test(r), r.get("vs_standard_verdict"), r.get("vs_standard_margin"),
                                    with_p=False) if r.get("vs_standard_spearman_diff") is not None else "—")
        body.append([r["model"], "—" if r["total_params"] is None else f"{r['total_params']:,}", r["variant"],
                     str(r["seeds"]), *[_pct(r, f.key) for f in shown], share, versus])
    machines = sorted({r["hardware"] for r in rows})
    return "\n".join([
        "# LoRA's saving against model size", "",
        f"Machine: {', '.join(machines)}. Dataset: {rows[0]['dataset']}. Jobs: "
        + ", ".join(f"`{f}`" for f in dict.fromkeys(r["folder"] for r in rows)) + ".", "",
        tabulate(body, headers=headers, tablefmt="github", disable_numparse=True), "",
        "- Costs: each seed's LoRA run over the same seed's standard run in the same precision, mean over "
        "seeds with a Student-t 95% CI (none with one seed). Memory increment: peak training memory above "
        "what the loaded model already held.",
        "- Share of std's gain: (S_lora - S_baseline) / (S_standard - S_baseline) in test Spearman with a "
        "cluster-bootstrap 95% CI; Δ vs std: the paired cluster bootstrap with its verdict at the job's "
        "margin (both only where the job's reference is the standard arm of the variant's precision).", ""])


def plot(rows: list[dict], out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.report import plots
    frame = pd.DataFrame(rows)
    shown = figures.shown_in("sizes")
    fig, (costs, quality) = plt.subplots(1, 2, figsize=(11, 4))
    for variant, sub in frame.groupby("variant", sort=False):
        for figure in shown:
            col = f"{figure.key}_pct_mean"
            if sub[col].notna().any():
                costs.plot(sub["total_params"], sub[col], "o-", label=f"{figure.short}, {variant}")
        if sub["gain_share_mean"].notna().any():
            lo = (sub["gain_share_mean"] - sub["gain_share_lo"]).fillna(0)
            hi = (sub["gain_share_hi"] - sub["gain_share_mean"]).fillna(0)
            quality.errorbar(sub["total_params"], 100 * sub["gain_share_mean"], yerr=[100 * lo, 100 * hi],
                             fmt="o-", capsize=3, label=variant)
    for ax, label in ((costs, "LoRA as % of standard"), (quality, "share of standard's gain (%)")):
        ax.set_xscale("log")
        ax.set_xlabel("total parameters (log)")
        ax.set_ylabel(label)
        ax.axhline(100, color="grey", linestyle=":")
        ax.legend(fontsize=7)
    cols = ["model", "total_params", "variant", *[f"{f.key}_pct_{k}" for f in shown for k in ("mean", "lo", "hi")],
            "gain_share_mean", "gain_share_lo", "gain_share_hi"]
    return plots.save(fig, frame[[c for c in cols if c in frame]], out / "plots", "lora_saving_vs_size")


def run(folders: list[Path], *, out: Path) -> dict[str, Path]:
    rows = table(folders)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "sizes.md", "csv": out / "sizes.csv"}
    files.write_text_atomic(paths["md"], markdown(rows))
    files.frame_to_csv_atomic(pd.DataFrame(rows), paths["csv"], index=False)
    for p in plot(rows, out):
        paths[p.suffix[1:]] = p
    return paths
