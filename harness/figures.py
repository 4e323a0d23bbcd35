"""The figure registry: every number the reports show, where it lives in a run record, its unit and
which direction is better. Report, sweep, compare, plots and publish take their rows, columns and
axes from here. Not yet one entry per new figure: the cost lists below (SWEEP_COSTS, PLOT_COSTS) and
the methods table, the sweep's columns and the site still name the figures they show.

``scale`` converts the record's unit to the shown one (bytes -> MiB, kWh -> Wh, s -> ms).
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 2**20


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

    def value(self, record: dict):
        node = lookup(record, self.path)
        return None if node is None else node * self.scale


def lookup(record: dict, dotted: str):
    """The value at a dotted path of a run record (``timings.train_wall_s``), None where absent."""
    node = record
    for part in dotted.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            return None
        node = node[part]
    return node


_ALL = (
    Figure("spearman", "Spearman (test)", "Spearman (test)", "quality.spearman", better="higher", relative="gain"),
    Figure("pearson", "Pearson (test)", "Pearson (test)", "quality.pearson", better="higher", relative="gain"),
    Figure("margin", "Compatibility margin (cos)", "margin", "quality.margin", unit="cos", better="higher",
           relative="gain"),
    Figure("cohens_d", "Cohen's d", "Cohen's d", "quality.cohens_d", better="higher", relative="gain"),
    Figure("auc_roc", "AUC-ROC", "AUC-ROC", "quality.auc_roc", better="higher", relative="gain"),
    Figure("f1", "F1 (threshold from validation)", "F1", "quality.f1", better="higher", relative="gain"),
    Figure("best_f1_oracle", "Best F1 (oracle threshold on test)", "best F1 (oracle)", "quality.best_f1_oracle",
           better="higher", relative="gain"),
    Figure("cluster_purity", "Cluster purity (compatible vs not, 2-means)", "cluster purity",
           "quality.cluster_purity", better="higher", relative="gain"),
    Figure("false_positives", "False positives (count)", "false positives", "quality.false_positives.count",
           better="lower", relative="difference"),
    Figure("reference_spearman", "Spearman on the forgetting reference (zero-shot)", "reference Spearman",
           "quality.forgetting.spearman", better="higher", relative="gain"),
    Figure("forgetting", "Forgetting (reference Spearman lost vs the base model)", "forgetting",
           "quality.forgetting.forgetting", better="lower", relative="difference"),
    Figure("drift_mean_cos", "Drift (mean cos of base vs tuned reference embeddings)", "drift (mean cos)",
           "quality.forgetting.drift_mean_cos", relative="difference"),
    Figure("trainable_params", "Trainable parameters", "trainable parameters", "params.trainable_params"),
    Figure("trainable_pct", "Trainable parameters (% of total)", "trainable %", "params.trainable_pct", unit="%"),
    Figure("total_params", "Total parameters", "total parameters", "params.total_params"),
    Figure("train_wall_s", "Train wall time (s)", "train wall time (s)", "timings.train_wall_s", unit="s",
           better="lower"),
    Figure("step_ms_median", "Step time, median (ms)", "step time (ms)", "timings.step_s_median", 1000, "ms",
           "lower"),
    Figure("step_ms_p90", "Step time, p90 (ms)", "step time p90 (ms)", "timings.step_s_p90", 1000, "ms", "lower"),
    Figure("samples_per_s", "Throughput (samples/s)", "samples/s", "timings.samples_per_s", unit="samples/s",
           better="higher"),
    Figure("tokens_per_s", "Throughput (tokens/s)", "tokens/s", "timings.tokens_per_s", unit="tokens/s",
           better="higher"),
    Figure("peak_memory_mib", "Peak memory, training (MiB)", "peak memory (MiB)", "memory.peak_memory_bytes",
           1 / MIB, "MiB", "lower"),
    Figure("memory_increment_mib", "Memory increment over pre-training (MiB)", "memory increment (MiB)",
           "memory.peak_increment_bytes", 1 / MIB, "MiB", "lower"),
    Figure("artifact_mib", "Artifact to ship (MiB)", "artifact to ship (MiB)", "params.artifact_bytes", 1 / MIB,
           "MiB", "lower"),
    Figure("energy_wh", "Energy, training (Wh)", "energy (Wh, see method)", "energy.energy_kwh", 1000, "Wh",
           "lower"),
    Figure("co2_g", "CO2eq, training (g)", "CO2eq (g)", "energy.co2_kg", 1000, "g", "lower"),
    Figure("load_s", "Model load time (s)", "load time (s)", "timings.load_s", unit="s", better="lower"),
    Figure("eval_s", "Evaluation time (s)", "evaluation time (s)", "timings.eval_s", unit="s", better="lower"),
)
FIGURES: dict[str, Figure] = {f.key: f for f in _ALL}

# Which figures each output shows, in order.
TRADEOFF_ROWS = [f.key for f in _ALL]
SWEEP_QUALITY = ["auc_roc", "margin", "f1", "cohens_d", "reference_spearman", "forgetting", "drift_mean_cos"]
SWEEP_COSTS = ["train_wall_s", "peak_memory_mib", "energy_wh", "artifact_mib", "samples_per_s"]
PLOT_COSTS = ["train_wall_s", "peak_memory_mib", "energy_wh", "artifact_mib"]
COMPARE = ["samples_per_s", "train_wall_s", "peak_memory_mib", "energy_wh"]
