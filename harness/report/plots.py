"""Sweep plots: each written as PNG and SVG, next to the CSV it was drawn from."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from harness import figures, files, stats  # noqa: E402


def save(fig, frame: pd.DataFrame, out: Path, name: str) -> list[Path]:
    """OUT/NAME.png, .svg and .csv (the plotted numbers): every plot of the harness is written here."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.svg", out / f"{name}.csv"]
    fig.tight_layout()
    files.save_figure_atomic(fig, paths[0], dpi=120)
    files.save_figure_atomic(fig, paths[1])
    plt.close(fig)
    files.frame_to_csv_atomic(frame, paths[2], index=False)
    return paths


def _reference(ax, row, column: str, label: str, color: str, band: bool = True):
    if row is None or pd.isna(row.get(f"{column}_mean")):
        return
    ax.axhline(row[f"{column}_mean"], color=color, linestyle="--", label=label)
    if band and not pd.isna(row.get(f"{column}_lo")):
        ax.axhspan(row[f"{column}_lo"], row[f"{column}_hi"], color=color, alpha=0.15)


def ranked_series(rows: pd.DataFrame):
    """(series label, its rows by rank) for every method with a rank axis (lora, dora, ...)."""
    ranked = rows[rows["rank"].notna()]
    for series in dict.fromkeys(ranked["series"]):
        yield series, ranked[ranked["series"] == series].sort_values("rank")


def _reference_row(rows: pd.DataFrame):
    match = rows[rows["is_reference"].astype(bool)] if "is_reference" in rows else rows[rows["point"] == "standard"]
    return None if match.empty else match.iloc[0]


def rank_vs_quality(rows: pd.DataFrame, out: Path) -> list[Path]:
    std = _reference_row(rows)
    base = _row(rows, "baseline")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = ((axes[0], "rank", "rank r (log2)"), (axes[1], "trainable_params", "trainable parameters"))
    for ax, x, xlabel in panels:
        for series, sub in ranked_series(rows):
            ax.plot(sub[x], sub["spearman_mean"], "o-", label=series)
            ax.fill_between(sub[x], sub["spearman_lo"], sub["spearman_hi"], alpha=0.25, label=f"{series} 95% CI")
        _reference(ax, std, "spearman", "standard (95% CI band)", "tab:green")
        _reference(ax, base, "spearman", "baseline (untrained)", "tab:red", band=False)
        if x == "rank":
            ax.set_xscale("log", base=2)
        else:
            ax.set_xscale("log")
            if std is not None:
                ax.plot([std["trainable_params"]], [std["spearman_mean"]], "s", color="tab:green")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Spearman (test)")
        ax.legend(fontsize=8)
    cols = ["point", "method", "rank", "trainable_params", "spearman_mean", "spearman_lo", "spearman_hi"]
    return save(fig, rows[[c for c in cols if c in rows]], out, "rank_vs_quality")


def rank_vs_cost(rows: pd.DataFrame, out: Path) -> list[Path]:
    """One panel per figure of the registry's plot view, against the rank."""
    std = _reference_row(rows)
    costs = [(f.key, f.short) for f in figures.shown_in("plot")]
    fig, axes = plt.subplots(1, len(costs), figsize=(4 * len(costs), 3.6), squeeze=False)
    for ax, (col, label) in zip(axes[0], costs, strict=True):
        for series, sub in ranked_series(rows):
            if f"{col}_mean" in sub:
                ax.plot(sub["rank"], sub[f"{col}_mean"], "o-", label=series)
        _reference(ax, std, col, "standard", "tab:green")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("rank r (log2)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    cols = ["point", "rank"] + [f"{c}_{s}" for c, _ in costs for s in ("mean", "lo", "hi")]
    return save(fig, rows[[c for c in cols if c in rows]], out, "rank_vs_cost")


def pareto(rows: pd.DataFrame, out: Path) -> tuple[list[Path], pd.DataFrame]:
    trained = rows[rows["method"] != "baseline"].copy()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, col, label in ((axes[0], "train_wall_s_mean", "train wall time (s)"),
                           (axes[1], "peak_memory_mib_mean", "peak memory (MiB)")):
        ok = trained.dropna(subset=[col, "spearman_mean"])
        front = stats.pareto_front(list(ok[col]), list(ok["spearman_mean"]))
        # A whole column at once (rows without the figure stay empty): pandas 3.0 refuses to set
        # booleans into the float column that a partial .loc assignment creates.
        trained[f"pareto_{col.removesuffix('_mean')}"] = pd.Series(front, index=ok.index, dtype="boolean")
        ax.scatter(ok[col], ok["spearman_mean"], c=["tab:orange" if f else "tab:gray" for f in front])
        for (_, r), f in zip(ok.iterrows(), front, strict=True):
            ax.annotate(r["point"] + (" *" if f else ""), (r[col], r["spearman_mean"]), fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("Spearman (test)")
        ax.set_title("* = non-dominated (Pareto front)", fontsize=9)
    cols = ["point", "spearman_mean", "train_wall_s_mean", "peak_memory_mib_mean", "pareto_train_wall_s",
            "pareto_peak_memory_mib"]
    table = trained[[c for c in cols if c in trained]]
    return save(fig, table, out, "pareto"), table


def quality_vs_params(rows: pd.DataFrame, out: Path) -> list[Path]:
    """Test Spearman (95% CI) against trainable parameters (log x), one series per method and
    precision, standard as its own point and the untrained baseline as a line."""
    trained = rows[(rows["method"] != "baseline")].dropna(subset=["spearman_mean", "trainable_params"])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for series in dict.fromkeys(trained["series"]):
        sub = trained[trained["series"] == series].sort_values("trainable_params")
        yerr = [sub["spearman_mean"] - sub["spearman_lo"], sub["spearman_hi"] - sub["spearman_mean"]]
        ax.errorbar(sub["trainable_params"], sub["spearman_mean"], yerr=yerr, fmt="o-" if len(sub) > 1 else "s",
                    capsize=3, label=series)
    _reference(ax, _row(rows, "baseline"), "spearman", "baseline (untrained)", "tab:red", band=False)
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log)")
    ax.set_ylabel("Spearman (test, 95% CI)")
    ax.legend(fontsize=8, ncol=2)
    cols = ["point", "series", "method", "rank", "trainable_params", "spearman_mean", "spearman_lo", "spearman_hi"]
    return save(fig, trained[[c for c in cols if c in trained]], out, "quality_vs_params")


def time_to_quality(curves: pd.DataFrame, out: Path, *, target: float | None) -> list[Path]:
    fig, ax = plt.subplots(figsize=(7, 4))
    for (point, seed), group in curves.groupby(["point", "seed"], sort=False):
        ax.plot(group["train_s"], group["val_spearman"], marker=".", label=f"{point} (seed {seed})")
    if target is not None:
        ax.axhline(target, color="black", linestyle=":", label="95% of standard's gain over the untrained model")
    ax.set_xlabel("training wall time, evaluation excluded (s)")
    ax.set_ylabel("Spearman (validation)")
    ax.legend(fontsize=7)
    return save(fig, curves, out, "time_to_quality")


def _row(rows: pd.DataFrame, point: str):
    match = rows[rows["point"] == point]
    return None if match.empty else match.iloc[0]


def quality_vs_forgetting(rows: pd.DataFrame, out: Path) -> list[Path]:
    """Task quality against forgetting on the reference benchmark, one point per variant with its
    95% intervals (Biderman et al. 2024, "LoRA Learns Less and Forgets Less", Figure 1's axes)."""
    ok = rows.dropna(subset=["spearman_mean", "forgetting_mean"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for _, r in ok.iterrows():
        ax.errorbar(r["forgetting_mean"], r["spearman_mean"],
                    xerr=[[r["forgetting_mean"] - r["forgetting_lo"]], [r["forgetting_hi"] - r["forgetting_mean"]]]
                    if pd.notna(r.get("forgetting_lo")) else None,
                    yerr=[[r["spearman_mean"] - r["spearman_lo"]], [r["spearman_hi"] - r["spearman_mean"]]],
                    fmt="o", capsize=3)
        ax.annotate(r["point"], (r["forgetting_mean"], r["spearman_mean"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.axvline(0, color="gray", linewidth=0.8)
    ax.set_xlabel("forgetting: reference Spearman lost vs the base model (lower is better)")
    ax.set_ylabel("task Spearman (test)")
    cols = ["point", "spearman_mean", "spearman_lo", "spearman_hi", "forgetting_mean", "forgetting_lo",
            "forgetting_hi", "drift_mean_cos_mean"]
    return save(fig, ok[[c for c in cols if c in ok]], out, "quality_vs_forgetting")


def lr_sensitivity(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Validation and test Spearman against the learning rate, one panel per variant: one point per seed,
    the mean over seeds joined, unstable rates marked with a red cross, rates passed over at the edge of
    divergence with a red ring, the chosen rate with a line (tuning.sensitivity_rows)."""
    import math

    import numpy as np
    variants = list(dict.fromkeys(frame["point"]))
    cols = min(4, max(1, len(variants)))
    rows = math.ceil(len(variants) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False, sharey=True)
    for ax in axes.flat[len(variants):]:
        ax.set_visible(False)
    for ax, variant in zip(axes.flat, variants, strict=False):
        sub = frame[frame["point"] == variant]
        for column, color, marker, label in (("val_spearman", "tab:blue", "o", "validation"),
                                             ("test_spearman", "tab:orange", "^", "test")):
            ax.scatter(sub["learning_rate"], sub[column], color=color, marker=marker, s=14, alpha=0.7, label=label)
            means = sub.groupby("learning_rate")[column].mean()
            ax.plot(means.index, means.values, color=color, linewidth=1)
        bad = sub[sub["unstable"].astype(bool)]
        if not bad.empty:
            y = bad["val_spearman"].where(bad["val_spearman"].notna(), np.nanmin(frame["val_spearman"]))
            ax.scatter(bad["learning_rate"], y, color="tab:red", marker="x", s=40, label="unstable rate")
        edge = sub[sub["why_edge"].notna()] if "why_edge" in sub else sub.iloc[:0]
        if not edge.empty:  # stable, but passed over: a rate above it failed within the headroom
            ax.scatter(edge["learning_rate"], edge["val_spearman"], facecolors="none", edgecolors="tab:red",
                       marker="o", s=60, label="at the edge of divergence")
        chosen = sub[sub["chosen"].astype(bool)]["learning_rate"]
        if not chosen.empty:
            ax.axvline(chosen.iloc[0], color="black", linestyle=":", linewidth=1, label="chosen rate")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels collide on short grids
        ax.set_title(variant, fontsize=9)
        ax.tick_params(labelsize=7)
    axes.flat[0].set_ylabel("Spearman")
    axes.flat[0].legend(fontsize=6)
    fig.supxlabel("learning rate (log)", fontsize=9)
    return save(fig, frame, out, "lr_sensitivity")
