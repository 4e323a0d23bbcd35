"""Table cells of a row of variants.point_rows, formatted in one place for the sweep, methods and
precision tables (Markdown) and the site: a number, an interval, the paired test against standard with
its verdict, the share of standard's gain, the learning rate and how it was chosen, convergence, the
merge check and what tuning cost."""

from __future__ import annotations

import math

from harness import convergence, methods, tuning


def num(value, fmt: str = ".3g") -> str:
    """A number, or "—" where there is none (None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, fmt)


def pct(value, fmt: str = ".0f") -> str:
    """A percentage (the value is already in %), or "—": "42%", "9.4%"."""
    text = num(value, fmt)
    return text if text == "—" else f"{text}%"


def interval(row: dict, key: str, fmt: str = ".3f") -> str:
    """``KEY_mean [KEY_lo, KEY_hi]`` of a row (no brackets without an interval: one seed)."""
    mean, lo, hi = row.get(f"{key}_mean"), row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if mean is None:
        return "—"
    return num(mean, fmt) + (f" [{num(lo, fmt)}, {num(hi, fmt)}]" if lo is not None else "")


def paired(test: dict, verdict_of: str | None, margin: float | None) -> tuple[str, str, str]:
    """The parts of a paired test against a reference (stats.paired_spearman_test, stats.verdict), as
    every table shows them: the difference with its 95% CI, p, and the verdict in words."""
    return (f"{test['diff']:+.3f} [{test['lo']:+.3f}, {test['hi']:+.3f}]", f"{test['p_value']:.3f}",
            verdict_text(verdict_of, margin, test.get("seeds_agree", True)))


def paired_cell(test: dict, verdict_of: str | None, margin: float | None, *, with_p: bool = True) -> str:
    """One cell of a paired test: "-0.052 [-0.140, +0.023] p=0.210 (inconclusive)"."""
    ci, p, words = paired(test, verdict_of, margin)
    return f"{ci}{f' p={p}' if with_p else ''} ({words})"


def verdict_text(verdict_of: str | None, margin: float | None, seeds_agree: bool = True) -> str:
    """"equivalent within ±0.02", "worse", "better", "inconclusive" (and why, where seeds disagree)."""
    if verdict_of is None:
        return "—"
    if verdict_of == "equivalent":
        return f"equivalent within ±{margin:g}"
    if verdict_of == "inconclusive" and not seeds_agree:
        return "inconclusive: seeds disagree"
    return verdict_of


def versus_standard(row: dict, *, with_p: bool = True) -> str:
    """The paired difference against standard with its CI, p and four-way verdict (stats.verdict):
    "-0.052 [-0.140, +0.023] p=0.210 (inconclusive)"; why it is withheld; or "reference"."""
    if row.get("vs_standard_spearman_diff") is None:
        if row.get("vs_standard_withheld"):
            return f"— ({row['vs_standard_withheld']})"
        return "reference" if row.get("is_reference") else "—"
    return paired_cell(versus_test(row), row.get("vs_standard_verdict"), row.get("vs_standard_margin"),
                       with_p=with_p)


def versus_test(row: dict) -> dict:
    """A point row's paired test against standard (variants.versus_columns) as stats.paired_spearman_test
    gives it, for paired()."""
    return {"diff": row["vs_standard_spearman_diff"], "lo": row["vs_standard_diff_lo"],
            "hi": row["vs_standard_diff_hi"], "p_value": row["vs_standard_p"],
            "seeds_agree": row.get("vs_standard_seeds_agree", True)}


def versus_fp32(row: dict) -> str:
    """The precision table's paired difference of a variant against itself in fp32."""
    if row.get("spearman_diff") is None:
        return f"— (grid unfinished: {row['unfinished']})" if row.get("unfinished") else "—"
    test = {"diff": row["spearman_diff"], "lo": row["spearman_diff_lo"], "hi": row["spearman_diff_hi"],
            "p_value": row["spearman_diff_p"], "seeds_agree": row.get("spearman_diff_seeds_agree", True)}
    return paired_cell(test, row.get("spearman_diff_verdict"), row.get("spearman_diff_margin"))


def gain_share(row: dict) -> str:
    """The share of standard's gain over the baseline, as a percentage with its CI, or "—"."""
    if row.get("is_reference") or not methods.trains(row.get("method")):
        return "—"
    mean, lo, hi = row.get("gain_share_mean"), row.get("gain_share_lo"), row.get("gain_share_hi")
    if mean is None:
        return "—"
    return f"{100 * mean:.0f}% [{100 * lo:.0f}%, {100 * hi:.0f}%]"


def rate(row: dict) -> str:
    """The learning rate with its grid mark: "0.00125", "0.00313 (top of grid)"."""
    text = num(row.get("learning_rate"), "g")
    marks = [m for m in (row.get("lr_grid_edge"), row.get("lr_chosen_unstable") and
                         f"UNSTABLE: {row['lr_chosen_unstable']}") if m]
    return text + "".join(f" ({m})" for m in marks)


def stable_range(row: dict) -> str:
    """"1e-4 – 1.25e-3 (3 steps)": the contiguous stable rates tried around the chosen one."""
    if row.get("lr_stable_lo") is None:
        return "—"
    steps = row["lr_stable_steps"]
    return f"{row['lr_stable_lo']:g} – {row['lr_stable_hi']:g} ({steps} step{'' if steps == 1 else 's'})"


def times_standard(row: dict) -> str:
    return "—" if row.get("lr_x_standard") is None else f"{row['lr_x_standard']:.2g}×"


def converged(row: dict) -> str:
    return convergence.cell({k.removeprefix("convergence_"): v for k, v in row.items()
                             if k.startswith("convergence_")})


def tuning_cost(row: dict) -> str:
    """"7 runs, 0.71 h (final: 3 runs, 0.30 h)"."""
    if row.get("tuning_runs") is None:
        return "—"
    return (f"{row['tuning_runs']} runs, {row['tuning_hours']:.2f} h "
            f"(final: {row['final_runs']} runs, {row['final_hours']:.2f} h)")


def merge(row: dict, merges: bool | None) -> str:
    """Whether the adapter merged: "yes (max abs diff 3.3e-07)", "no (max abs diff 3.0e-05 > 1e-05)"."""
    if merges is None:
        return "—"
    if not merges:
        return "no (unmerged)"
    if row.get("merge_max_abs_diff") is None:
        return "yes"
    diff = f"max abs diff {row['merge_max_abs_diff']:.1e}"
    if row.get("merge_within_tolerance") is False:
        return f"no ({diff} > {row['merge_tolerance']:.0e})"
    return f"yes ({diff})"


RELOAD_NOTE = ("reloads: the saved artifact, loaded back as a user would (a full model with "
               "SentenceTransformer(folder), an adapter with peft's PeftModel.from_pretrained on the base model), "
               "embeds the test texts like the evaluated model (largest difference, float32, worst seed); a run out "
               "of tolerance fails "
               "(artifact_mismatch). Where sentence-transformers' one-liner SentenceTransformer(folder) loads the "
               "adapter wrong or not at all, the cell says so.")


def reload(row: dict) -> str:
    """Whether the saved artifact, loaded back as a user would, reproduced the evaluated model:
    "yes (peft, max abs diff 0.0e+00)", "no (max abs diff 3.4e-03 > 1e-05)"; and where
    ``SentenceTransformer(folder)`` got it wrong or could not load it, that too."""
    if row.get("reload_max_abs_diff") is None:
        return "—"
    diff = f"max abs diff {row['reload_max_abs_diff']:.1e}"
    if not row["reload_within_tolerance"]:
        return f"no ({diff} > {row['reload_tolerance']:.0e})"
    text = f"yes ({row['reload_loader']}, {diff})"
    one_liner = row.get("reload_one_liner")
    if one_liner == "error":
        return text + "; SentenceTransformer(folder) cannot load it"
    if one_liner is False:
        return text + "; SentenceTransformer(folder) loads it wrong"
    return text


def rate_notes(rows: list[dict]) -> list[str]:
    """The Markdown paragraphs both job tables print under their notes: the rates passed over at the edge of
    divergence (the mean rule's headroom, harness/tuning.py) and the rates that are not final yet."""
    parts = []
    edge = [f"{r['point']}: {r['lr_edge']}" for r in rows if r.get("lr_edge")]
    if edge:
        parts += [f"Passed over at the edge of divergence (a rate above proved unstable and {tuning.HEADROOM:g} "
                  "times the rate was not stable on every seed): " + "; ".join(edge) + ".", ""]
    pending = [f"{r['point']}: {r['lr_pending']}" for r in rows if r.get("lr_pending")]
    if pending:
        parts += ["Rates not final yet: " + "; ".join(pending) + ".", ""]
    return parts
