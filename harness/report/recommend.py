"""A recommendation written from a job's figures, the way ADR-001 ends with a hand-written one.

``python -m harness recommend DIR [--max-memory MiB] [--max-train-time S] [--max-artifact MiB]
[--min-gain-share F]`` reads the job's rows (variants.point_rows: each variant at its chosen rate, mean and
95% CI over seeds, the paired difference against standard with its four-way verdict, the share of
standard's gain over the baseline) and says which variants meet the constraints, which of those are
Pareto-optimal (quality against train time), and which one to use and why, every figure with its CI.

The rule, in order (never on a difference that is not significant):
1. A variant significantly **better** than standard that meets the constraints: the best of them.
2. Else the **cheapest** (train time) of the variants that meet the constraints and are equivalent to
   standard within the job's margin (standard itself counts): "indistinguishable here".
3. Else standard, if it meets the constraints: the others are worse or cannot be told apart from it.
4. Else the best-quality variant that meets the constraints, with what it loses against standard.
A constraint on a figure is met by the variant's mean; a minimum gain share is met only when the CI's
lower bound is above it (a share that may be below it is not claimed). When nothing meets the
constraints, the variant closest to meeting them is named.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness import jobfile, methods

FILE = "recommendation.md"  # written by report into every job folder, with no constraints

# constraint -> (row key of the mean, unit, what it is)
LIMITS = {"max_memory": ("peak_memory_mib", "MiB", "peak training memory"),
          "max_train_time": ("train_wall_s", "s", "train time"),
          "max_artifact": ("artifact_mib", "MiB", "artifact")}


@dataclass(frozen=True)
class Constraints:
    max_memory: float | None = None
    max_train_time: float | None = None
    max_artifact: float | None = None
    min_gain_share: float | None = None

    def text(self) -> str:
        parts = [f"{LIMITS[k][2]} <= {getattr(self, k):g} {LIMITS[k][1]}" for k in LIMITS
                 if getattr(self, k) is not None]
        if self.min_gain_share is not None:
            parts.append(f"share of standard's gain >= {100 * self.min_gain_share:g}%")
        return ", ".join(parts) or "none"


def job_rows(out: Path, records: list[dict] | None = None,
             manifest: jobfile.Manifest = jobfile.NOT_GIVEN) -> list[dict]:
    """The job's variant rows, as its methods and sweep tables compute them (``records``: all of the
    job's records, and ``manifest``: its job.json, where the caller has read them already, so that a
    bad file is not warned of twice)."""
    from harness import results
    from harness.report import variants
    records = results.load_runs(out) if records is None else records
    if not [r for r in records if r["status"] == "success"]:
        return []
    return variants.job_point_rows(records, out, manifest)


def amount(value: float) -> str:
    """A cost as people read it: 1,452 (no exponent), 391, 12.5, 0.284."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def percent(value: float) -> str:
    """42%, 9.4%, 0.33%: never 0% for a share that is not zero."""
    return f"{value:.0f}%" if abs(value) >= 10 else f"{value:.2g}%"


def _ci(row: dict, key: str, fmt: str = ".3f", unit: str = "") -> str:
    mean, lo, hi = row.get(f"{key}_mean"), row.get(f"{key}_lo"), row.get(f"{key}_hi")
    if mean is None:
        return "—"
    show = amount if fmt == "amount" else (lambda v: f"{v:{fmt}}")
    text = f"{show(mean)}{unit}"
    return text + (f" [{show(lo)}, {show(hi)}]" if lo is not None and hi is not None else "")


def _name(ref: dict | None) -> str:
    """The reference as the sentence names it: its variant label ("standard", or "standard bf16" in a job
    compared in bf16, where plain "standard" is another variant)."""
    return (ref or {}).get("point") or "standard"


def _share(row: dict, ref: dict | None) -> str:
    if row.get("gain_share_mean") is None:
        return ""
    return (f", {100 * row['gain_share_mean']:.0f}% [{100 * row['gain_share_lo']:.0f}%, "
            f"{100 * row['gain_share_hi']:.0f}%] of {_name(ref)}'s gain")


def _delta(row: dict) -> str:
    if row.get("vs_standard_spearman_diff") is None:
        return ""
    from harness.report import cells
    return "Δ " + cells.paired(cells.versus_test(row), None, None)[0]


def _costs(row: dict, ref: dict | None) -> str:
    parts = []
    for key, unit, what in (LIMITS["max_train_time"], LIMITS["max_memory"], LIMITS["max_artifact"]):
        mine = row.get(f"{key}_mean")
        if mine is None:
            continue
        text = f"{what} {_ci(row, key, 'amount', ' ' + unit)}"
        theirs = (ref or {}).get(f"{key}_mean")
        if ref is not None and row is not ref and theirs:
            text += f" ({percent(100 * mine / theirs)} of {_name(ref)}'s)"
        parts.append(text)
    return "; ".join(parts)


def _violations(row: dict, c: Constraints) -> list[tuple[str, float]]:
    """(what is violated, by how much relative to the limit); empty when the row meets every constraint."""
    out = []
    for name, (key, unit, what) in LIMITS.items():
        limit, mine = getattr(c, name), row.get(f"{key}_mean")
        if limit is not None and (mine is None or mine > limit):
            out.append((f"{what} {'unmeasured' if mine is None else f'{amount(mine)} {unit}'} > {limit:g} {unit}",
                        float("inf") if mine is None else (mine - limit) / limit))
    if c.min_gain_share is not None and not row.get("is_reference"):
        lo = row.get("gain_share_lo")
        if lo is None or lo < c.min_gain_share:
            out.append((f"share of standard's gain {'unknown' if lo is None else f'may be {100 * lo:.0f}%'} "
                        f"< {100 * c.min_gain_share:g}%",
                        float("inf") if lo is None else (c.min_gain_share - lo) / c.min_gain_share))
    return out


def pareto(rows: list[dict]) -> list[dict]:
    """The rows that no other row beats on both mean test Spearman (higher) and train time (lower)."""
    def beats(a, b):
        return (a["spearman_mean"] >= b["spearman_mean"] and a["train_wall_s_mean"] <= b["train_wall_s_mean"]
                and (a["spearman_mean"] > b["spearman_mean"] or a["train_wall_s_mean"] < b["train_wall_s_mean"]))
    timed = [r for r in rows if r.get("spearman_mean") is not None and r.get("train_wall_s_mean") is not None]
    return [r for r in timed if not any(beats(o, r) for o in timed if o is not r)]


def recommend(rows: list[dict], c: Constraints = Constraints()) -> dict:
    """{"choice": row or None, "why": sentence, "meets": rows, "pareto": rows, "closest": row or None}."""
    trained = [r for r in rows if r.get("method") is not None and methods.trains(r["method"])
               and r.get("spearman_mean") is not None]
    ref = next((r for r in trained if r.get("is_reference")), None)
    meets = [r for r in trained if not _violations(r, c)]
    out = {"meets": meets, "pareto": pareto(meets), "reference": ref, "choice": None, "closest": None}
    if not meets:
        if trained:
            out["closest"] = min(trained, key=lambda r: sum(v for _, v in _violations(r, c)))
            why = "; ".join(w for w, _ in _violations(out["closest"], c))
            out["why"] = (f"No variant meets the constraints ({c.text()}). Closest: {out['closest']['point']} "
                          f"({why}).")
        else:
            out["why"] = "No trained variant with test figures in this job."
        return out
    std = _name(ref)
    better = [r for r in meets if r.get("vs_standard_verdict") == "better"]
    equivalent = [r for r in meets if r.get("vs_standard_verdict") == "equivalent" or r is ref]
    if better:
        choice = max(better, key=lambda r: r["vs_standard_spearman_diff"])
        why = (f"{choice['point']} is significantly better than {std} ({_delta(choice)}); "
               f"{_costs(choice, ref)}.")
    elif len(equivalent) > 1 or (equivalent and ref is None):
        timed = [r for r in equivalent if r.get("train_wall_s_mean") is not None] or equivalent
        choice = min(timed, key=lambda r: r.get("train_wall_s_mean") or float("inf"))
        others = [r for r in equivalent if r is not choice]
        if choice is ref:
            why = (f"{std}: " + ", ".join(f"{r['point']} is indistinguishable from it ({_delta(r)}, equivalent "
                                          f"within ±{r['vs_standard_margin']:g})" for r in others)
                   + f", but {std} trains fastest here; {_costs(choice, ref)}.")
        else:
            margin = choice["vs_standard_margin"]
            real = choice["vs_standard_diff_lo"] > 0 or choice["vs_standard_diff_hi"] < 0
            how = (f"is within ±{margin:g} of {std} here ({_delta(choice)}: a real difference, smaller than the "
                   f"margin{_share(choice, ref)})" if real else
                   f"and {std} are indistinguishable here ({_delta(choice)}, equivalent within ±{margin:g}"
                   f"{_share(choice, ref)})")
            why = f"{choice['point']} {how}; {choice['point']} costs less: {_costs(choice, ref)}."
    elif ref is not None and ref in meets:
        choice = ref
        rivals = sorted((r for r in meets if r is not ref), key=lambda r: -r["spearman_mean"])
        if rivals:
            best = rivals[0]
            verdict = best.get("vs_standard_verdict") or "not compared"
            meeting = " that meets the constraints" if c.text() != "none" else ""
            why = (f"{std}: no variant{meeting} is better or equivalent; the best other, "
                   f"{best['point']}, is {verdict} ({_delta(best)}{_share(best, ref)}) at {_costs(best, ref)}.")
        else:
            why = f"{std} is the only variant that meets the constraints; {_costs(ref, ref)}."
    else:
        choice = max(meets, key=lambda r: r["spearman_mean"])
        verdict = choice.get("vs_standard_verdict")
        loss = (f"; against {std} (which does not meet them) it is {verdict} ({_delta(choice)}{_share(choice, ref)})"
                if verdict else "")
        why = f"{choice['point']}: the best test Spearman among the variants that meet the constraints{loss}."
    out.update(choice=choice, why=why)
    return out


def markdown(rows: list[dict], c: Constraints = Constraints(), *, title: str = "Recommendation") -> str:
    from harness.report import cells
    rec = recommend(rows, c)
    lines = [f"## {title}", "", f"Constraints: {c.text()}. Generated by `python -m harness recommend` from the "
             "run files (each variant at its chosen rate; mean and 95% CI over seeds; Δ and verdicts against "
             "standard by the paired cluster bootstrap).", "", f"**{rec['why']}**", ""]
    if rec["meets"]:
        lines += ["| variant | Spearman (95% CI) | Δ vs standard (verdict) | share of standard's gain | "
                  "train time (s) | peak memory (MiB) | artifact (MiB) | Pareto-optimal |",
                  "|---|---|---|---|---|---|---|---|"]
        front = {id(r) for r in rec["pareto"]}
        for r in rec["meets"]:
            lines.append(f"| {r['point']} | {_ci(r, 'spearman')} | {cells.versus_standard(r, with_p=False)} | "
                         f"{cells.gain_share(r)} | {_ci(r, 'train_wall_s', 'amount')} | "
                         f"{_ci(r, 'peak_memory_mib', 'amount')} | {_ci(r, 'artifact_mib', 'amount')} | "
                         f"{'yes' if id(r) in front else ''} |")
        lines.append("")
    return "\n".join(lines) + "\n"
