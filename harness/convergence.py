"""Has a run converged? A verdict from its own validation curve (pure).

The rule: a run with validation probes (``--eval-every``) has **converged** when the last quarter of
its training raised validation Spearman by less than ``TOLERANCE`` (0.01): the final validation
Spearman minus the one probed at (or last before) three quarters of its steps. A run still rising by
more than that was stopped while it was learning, so a comparison at its budget measures how fast each
method moves in that many steps, not where it ends. Without probes there is no verdict (None).

The worker records the verdict in each run (``training.convergence``); the tables compute it with this
same function from the curve, so runs recorded before the verdict existed get one too.
"""

from __future__ import annotations

import math

TOLERANCE = 0.01
WINDOW = 0.25  # the share of training at the end whose gain decides

RULE = (f"converged: the last {WINDOW:.0%} of training raised validation Spearman by less than {TOLERANCE:g} "
        "(final validation Spearman minus the probe at three quarters of the steps)")


def verdict(curve: list[dict] | None, *, steps: int | None, final: float | None) -> dict | None:
    """``curve``: the probes ({step, val_spearman}); ``steps``: the run's last step; ``final``: its
    validation Spearman after training. None where the curve cannot say (no probe at or before three
    quarters of the steps, or no final figure)."""
    if not curve or not steps or final is None or not math.isfinite(final):
        return None
    mark = (1 - WINDOW) * steps
    before = [p for p in curve if p.get("step") is not None and p["step"] <= mark
              and isinstance(p.get("val_spearman"), (int, float)) and math.isfinite(p["val_spearman"])]
    if not before:
        return None
    probe = before[-1]
    gain = float(final - probe["val_spearman"])
    return {"converged": gain < TOLERANCE, "gain_last_quarter": gain, "from_step": int(probe["step"]),
            "to_step": int(steps), "rule": RULE}


def of_record(record: dict) -> dict | None:
    """A run record's verdict: from its curve, final step and final validation Spearman."""
    training = record.get("training") or {}
    quality = record.get("quality") or {}
    return verdict(training.get("validation_curve"), steps=training.get("global_step"),
                   final=quality.get("validation_spearman"))


def summary(records: list[dict]) -> dict:
    """The verdicts of one variant's runs (its seeds): how many converged of how many could say, and the
    largest gain of the last quarter. ``{"converged": None}`` where no run can say."""
    found = [v for r in records if (v := of_record(r)) is not None]
    if not found:
        return {"converged": None, "converged_runs": 0, "judged_runs": 0, "max_gain_last_quarter": None}
    done = sum(v["converged"] for v in found)
    return {"converged": done == len(found), "converged_runs": done, "judged_runs": len(found),
            "max_gain_last_quarter": max(v["gain_last_quarter"] for v in found)}


def cell(summary_: dict) -> str:
    """A table cell: "yes (3/3)", "no: 1 of 3 (+0.052 in the last quarter)" or "—"."""
    if summary_.get("converged") is None:
        return "—"
    n, k = summary_["judged_runs"], summary_["converged_runs"]
    if summary_["converged"]:
        return f"yes ({k}/{n})"
    return f"no: {k} of {n} (+{summary_['max_gain_last_quarter']:.3f} in the last quarter)"
