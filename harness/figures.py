"""The figure registry: every number the reports show, where it lives in a run record, its unit, which
direction is better, and where it is shown. A new figure is one entry here (plus its test): the
tradeoff table shows every figure; ``shows`` places it in the other views (VIEWS), each at a position
(tables interleave figure columns with their own columns by position; ties keep registry order).

``scale`` converts the record's unit to the shown one (bytes -> MiB, kWh -> Wh, s -> ms).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MIB = 2**20

# Where a figure can be shown besides the tradeoff table (which shows every figure, in registry order).
VIEWS = {
    "csv": "per-variant mean and 95% CI columns of sweep.csv and methods.csv (variants.point_rows)",
    "sweep": "a column of the sweep table (sweep.md)",
    "methods": "a column of the methods table (methods.md); a cost (relative='ratio') with its % of standard",
    "plot": "a panel of plots/rank_vs_cost, against the rank",
    "compare": "a row of the hardware comparison (compare.md) and a panel of its chart",
    "x": "an x axis (a cost) of the site's Pareto explorer",
    "y": "a y axis (a quality figure) of the site's Pareto explorer",
    "sizes": "a cost of LoRA as % of standard in `sizes` (LoRA's saving against model size)",
}
# the views whose figures variants.point_rows computes per variant (mean and 95% CI over seeds)
ROW_VIEWS = ("csv", "sweep", "methods", "plot")


@dataclass(frozen=True)
class Figure:
    key: str  # the column name in CSV files and sweep tables, e.g. train_wall_s, peak_memory_mib
    label: str  # the row label of the tradeoff table, with its unit
    short: str  # a compact label for plot axes and compare tables
    path: str  # dotted path in a run record
    scale: float = 1.0
    unit: str = ""
    better: str | None = None  # "higher", "lower" or None (a size, not a goal)
    # how the tradeoff table sets an arm against standard: "ratio" (% of standard: only for figures that
    # are positive, costs and sizes), "gain" (share of standard's gain over the untrained baseline: signed
    # quality figures) or "difference" (signed figures near zero: forgetting, drift, counts that can be 0)
    relative: str = "ratio"
    column: str = ""  # the compact header of the sweep and methods tables; the short label where empty
    integer: bool = False  # shown as a whole number with thousands separators (parameters, counts)
    shows: dict[str, float] = field(default_factory=dict)  # view (VIEWS) -> position in it

    def __post_init__(self):
        unknown = set(self.shows) - set(VIEWS)
        if unknown:
            raise ValueError(f"figure {self.key}: unknown views {sorted(unknown)}; the views are {sorted(VIEWS)}")
        if self.better not in ("higher", "lower", None) or self.relative not in ("ratio", "gain", "difference"):
            raise ValueError(f"figure {self.key}: better must be higher, lower or None and relative ratio, gain "
                             f"or difference (got {self.better!r}, {self.relative!r})")

    @property
    def header(self) -> str:
        return self.column or self.short

    def value(self, record: dict):
        node = number(record, self.path)
        return None if node is None else node * self.scale


def lookup(record: dict, dotted: str):
    """The value at a dotted path of a run record (``timings.train_wall_s``), None where absent."""
    node = record
    for part in dotted.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            return None
        node = node[part]
    return node


def number(record: dict, dotted: str) -> int | float | None:
    """The value at a dotted path as a figure: a real number (not a bool), else None. A record can pass
    its schema with a string, a list or an object where a figure is read (the schema does not type every
    nested figure, per-category ones for example); the tables treat that as a missing figure, never as
    something to multiply or average."""
    node = lookup(record, dotted)
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        return None
    return node


_ALL = (
    Figure("spearman", "Spearman (test)", "Spearman (test)", "quality.spearman", better="higher", relative="gain",
           shows={"y": 0}),
    Figure("pearson", "Pearson (test)", "Pearson (test)", "quality.pearson", better="higher", relative="gain",
           shows={"y": 1}),
    Figure("margin", "Compatibility margin (cos)", "margin", "quality.margin", unit="cos", better="higher",
           relative="gain", shows={"csv": 2, "sweep": 11, "y": 3}),
    Figure("cohens_d", "Cohen's d", "Cohen's d", "quality.cohens_d", better="higher", relative="gain",
           shows={"csv": 4, "y": 4}),
    Figure("auc_roc", "AUC-ROC", "AUC-ROC", "quality.auc_roc", better="higher", relative="gain",
           shows={"csv": 1, "sweep": 10, "y": 2}),
    Figure("f1", "F1 (threshold from validation)", "F1", "quality.f1", better="higher", relative="gain",
           shows={"csv": 3, "sweep": 12, "y": 5}),
    Figure("best_f1_oracle", "Best F1 (oracle threshold on test)", "best F1 (oracle)", "quality.best_f1_oracle",
           better="higher", relative="gain", shows={"y": 6}),
    Figure("cluster_purity", "Cluster purity (compatible vs not, 2-means)", "cluster purity",
           "quality.cluster_purity", better="higher", relative="gain", shows={"y": 7}),
    Figure("false_positives", "False positives (count)", "false positives", "quality.false_positives.count",
           better="lower", relative="difference", integer=True),
    Figure("reference_spearman", "Spearman on the forgetting reference (zero-shot)", "reference Spearman",
           "quality.forgetting.spearman", better="higher", relative="gain", shows={"csv": 5}),
    Figure("forgetting", "Forgetting (reference Spearman lost vs the base model)", "forgetting",
           "quality.forgetting.forgetting", better="lower", relative="difference",
           shows={"csv": 6, "sweep": 13, "methods": 11, "y": 8}),
    Figure("drift_mean_cos", "Drift (mean cos of base vs tuned reference embeddings)", "drift (mean cos)",
           "quality.forgetting.drift_mean_cos", relative="difference", shows={"csv": 7}),
    Figure("trainable_params", "Trainable parameters", "trainable parameters", "params.trainable_params",
           integer=True, shows={"x": 3}),
    Figure("trainable_pct", "Trainable parameters (% of total)", "trainable %", "params.trainable_pct", unit="%"),
    Figure("total_params", "Total parameters", "total parameters", "params.total_params", integer=True),
    Figure("train_wall_s", "Train wall time (s)", "train wall time (s)", "timings.train_wall_s", unit="s",
           better="lower", column="train wall (s)",
           shows={"csv": 8, "sweep": 14, "methods": 13, "plot": 0, "compare": 1, "x": 0, "sizes": 0}),
    Figure("step_ms_median", "Step time, median (ms)", "step time (ms)", "timings.step_s_median", 1000, "ms",
           "lower", column="step time (ms)", shows={"x": 5, "sizes": 1}),
    Figure("step_ms_p90", "Step time, p90 (ms)", "step time p90 (ms)", "timings.step_s_p90", 1000, "ms", "lower"),
    Figure("samples_per_s", "Throughput (samples/s)", "samples/s", "timings.samples_per_s", unit="samples/s",
           better="higher", shows={"csv": 12, "compare": 0}),
    Figure("tokens_per_s", "Throughput (tokens/s)", "tokens/s", "timings.tokens_per_s", unit="tokens/s",
           better="higher"),
    Figure("peak_memory_mib", "Peak memory, training (MiB)", "peak memory (MiB)", "memory.peak_memory_bytes",
           1 / MIB, "MiB", "lower", column="peak mem (MiB)",
           shows={"csv": 9, "sweep": 16, "methods": 14, "plot": 1, "compare": 2, "x": 1, "sizes": 2}),
    Figure("memory_increment_mib", "Memory increment over pre-training (MiB)", "memory increment (MiB)",
           "memory.peak_increment_bytes", 1 / MIB, "MiB", "lower", column="mem increment (MiB)", shows={"sizes": 3}),
    Figure("artifact_mib", "Artifact to ship (MiB)", "artifact to ship (MiB)", "params.artifact_bytes", 1 / MIB,
           "MiB", "lower", column="artifact (MiB)",
           shows={"csv": 11, "sweep": 18, "methods": 16, "plot": 3, "x": 4, "sizes": 5}),
    Figure("energy_wh", "Energy, training (Wh)", "energy (Wh, see method)", "energy.energy_kwh", 1000, "Wh",
           "lower", column="energy (Wh)", shows={"csv": 10, "sweep": 17, "methods": 15, "plot": 2, "compare": 3,
                                                 "x": 2, "sizes": 4}),
    Figure("co2_g", "CO2eq, training (g)", "CO2eq (g)", "energy.co2_kg", 1000, "g", "lower"),
    Figure("load_s", "Model load time (s)", "load time (s)", "timings.load_s", unit="s", better="lower"),
    Figure("eval_s", "Evaluation time (s)", "evaluation time (s)", "timings.eval_s", unit="s", better="lower"),
)
FIGURES: dict[str, Figure] = {f.key: f for f in _ALL}


def every() -> list[Figure]:
    """Every figure in registry order: the rows of the tradeoff table."""
    return list(FIGURES.values())


def by_label(label: str) -> Figure | None:
    """The figure whose tradeoff-table label this is (the tables index their rows by label)."""
    return next((f for f in FIGURES.values() if f.label == label), None)


def shown_in(view: str) -> list[Figure]:
    """The figures a view shows, by their position in it (ties in registry order)."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; the views are {sorted(VIEWS)}")
    order = {key: i for i, key in enumerate(FIGURES)}
    return sorted((f for f in FIGURES.values() if view in f.shows), key=lambda f: (f.shows[view], order[f.key]))


def row_figures() -> list[Figure]:
    """The figures variants.point_rows computes per variant: those of every view in ROW_VIEWS, the csv
    view's first in its order, then any other in registry order (so a figure placed only in a table
    is computed, and lands in the CSV files too)."""
    listed = shown_in("csv")
    rest = [f for f in FIGURES.values() if f not in listed and any(v in f.shows for v in ROW_VIEWS)]
    return listed + rest
