"""One adapter per task: OUT/tasks.md and OUT/tasks.csv for a job run with ``run --per-category``.

ADR-001 proposes "separate LoRA adapters per category" against one model for everything. Such a
job trains each adapter arm once per category, on that category's training pairs only (the spec's
``train_category``), and standard once on every pair; all are evaluated on the whole test set. Per
category and adapter method, from the run records (``quality.test_cos`` and ``test_category``):

- test Spearman on that category's test pairs of the baseline, of standard (trained on every pair)
  and of the category's own adapter, each a mean over seeds with its cluster-bootstrap 95% CI over
  the category's test groups;
- the adapter against standard on that category: the paired difference, its CI and four-way verdict
  at the job's margin (stats.verdict);
- both on the *other* categories' test pairs: what the adapter gave up by specialising.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
from tabulate import tabulate

from harness import files, jobfile, methods, results, stats
from harness.figures import lookup
from harness.report import cells, variants

FILE = "tasks.md"


def wanted(records: list[dict]) -> bool:
    """A job gets the task table when some successful run trained on one category."""
    return any(lookup(r, "spec.train_category") for r in records if r["status"] == "success")


def _by_seed(runs: list[dict]) -> dict[int, np.ndarray]:
    return {r["spec"]["seed"]: np.asarray(r["quality"]["test_cos"], dtype=float) for r in runs}


def _interval(cos: dict[int, np.ndarray], mask, gold, groups) -> dict:
    if not cos or not mask.any():
        return {}
    ci = stats.bootstrap_spearman([c[mask] for _, c in sorted(cos.items())], gold[mask],
                                  groups=[g for g, m in zip(groups, mask, strict=True) if m])
    return {"mean": ci["mean"], "lo": ci["lo"], "hi": ci["hi"]}


def rows(records: list[dict], *, margin: float = stats.SPEARMAN_MARGIN) -> list[dict]:
    """One row per (category, adapter method) of the job."""
    ok = [r for r in records if r["status"] == "success" and (r.get("quality") or {}).get("test_cos")]
    evalset = results.evaluation_set(ok)
    labelled = next((r["quality"]["test_category"] for r in ok if r["quality"].get("test_category")), None)
    if evalset is None or labelled is None:
        return []
    gold, groups = evalset
    categories = np.asarray([c if c is not None else "" for c in labelled], dtype=object)
    general = [r for r in ok if not lookup(r, "spec.train_category")]
    baseline = _by_seed([r for r in general if not methods.trains(r["method"])])
    ref = methods.reference_label([r["spec"] for r in general])
    standard = _by_seed([r for r in general if methods.variant_label(r["spec"]) == ref])
    tasks: dict[tuple[str, str], list[dict]] = {}
    for r in ok:
        if lookup(r, "spec.train_category"):
            method_label = methods.variant_label({**r["spec"], "train_category": ""})
            tasks.setdefault((r["spec"]["train_category"], method_label), []).append(r)
    out = []
    for (category, label), runs in sorted(tasks.items(), key=lambda kv: (kv[0][0],
                                                                          methods.sort_key(kv[1][0]["spec"]))):
        mine = _by_seed(runs)
        own, rest = categories == category, categories != category
        row = {"category": category, "adapter": label, "against": ref, "seeds": len(mine),
               "test_pairs": int(own.sum()), "test_groups": len({g for g, m in zip(groups, own, strict=True) if m})}
        for name, cos in (("baseline", baseline), ("standard", standard), ("adapter", mine)):
            for where, mask in (("own", own), ("rest", rest)):
                row.update({f"{name}_{where}_{k}": v for k, v in _interval(cos, mask, gold, groups).items()})
        seeds = sorted(set(mine) & set(standard))
        if seeds and own.any():
            row.update(variants.versus_columns([mine[s][own] for s in seeds], [standard[s][own] for s in seeds],
                                               gold[own], [g for g, m in zip(groups, own, strict=True) if m], margin))
        out.append(row)
    return out


def markdown(rows_: list[dict]) -> str:
    headers = ["category", "test pairs / groups", "adapter", "seeds", "baseline", "standard (all pairs)",
               "adapter (its category)", "Δ adapter − standard (95% CI, verdict)", "adapter on the other categories",
               "standard on the other categories"]
    body = [[r["category"], f"{r['test_pairs']} / {r['test_groups']}", r["adapter"], str(r["seeds"]),
             cells.interval(r, "baseline_own"), cells.interval(r, "standard_own"), cells.interval(r, "adapter_own"),
             cells.paired_cell(cells.versus_test(r), r.get("vs_standard_verdict"), r.get("vs_standard_margin"))
             if r.get("vs_standard_spearman_diff") is not None else "—",
             cells.interval(r, "adapter_rest"), cells.interval(r, "standard_rest")] for r in rows_]
    reference = next((r["against"] for r in rows_ if r.get("against")), "standard")
    return "\n".join([
        "# One adapter per category against one model for all", "",
        tabulate(body, headers=headers, tablefmt="github", disable_numparse=True), "",
        f"- Each adapter trained (and chose nothing else) on its category's training pairs only; {reference} "
        "trained once on every pair. Every model is scored on the whole test set; a column restricts the "
        "test pairs to one category (its own) or to the others.",
        "- Test Spearman: mean over seeds with a cluster-bootstrap 95% CI over that category's test groups "
        "(and the seeds). Δ: the paired cluster bootstrap over the same groups, seeds paired, with the "
        "verdict at the job's margin: equivalent where the whole CI lies within ±margin, better or worse "
        "where significant, else inconclusive.", ""])


def write_tasks(out: Path, records: list[dict], manifest: jobfile.Manifest = jobfile.NOT_GIVEN) -> list[Path]:
    """OUT/tasks.md (with the serving section where ``serve`` has run) and OUT/tasks.csv (``manifest``:
    the job's job.json, where the caller has read it)."""
    import pandas as pd

    found = rows(records, margin=jobfile.margin(out, manifest))
    if not found:
        return []
    served = read_serving(out)
    files.write_text_atomic(out / FILE, markdown(found) + ("\n" + "\n".join(serving_markdown(served))
                                                             if served else ""))
    files.frame_to_csv_atomic(pd.DataFrame(found), out / "tasks.csv", index=False)
    return [out / FILE, out / "tasks.csv"]


def read_serving(out: Path) -> dict | None:
    """OUT/serving.json as serve wrote it, or None where it is absent; one that serve cannot have
    written (unreadable, or a figure that is not a number) is left out with a warning that says why."""
    path = Path(out) / results.SERVING_FILE
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return _bad_serving(path, f"unreadable: {type(exc).__name__}")
    problem = serving_problem(value)
    return _bad_serving(path, problem) if problem else value


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def serving_problem(value) -> str | None:
    """Why ``value`` is not a serving record as serve writes it (None where it is one)."""
    if not isinstance(value, dict):
        return "not a JSON object"
    if not isinstance(value.get("adapters"), list) or not all(isinstance(a, dict) for a in value["adapters"]):
        return "adapters is not a list of objects"
    bad = [k for k in ("rss_before_bytes", "rss_base_bytes", "rss_all_bytes", "per_adapter_bytes", "tolerance")
           if not _number(value.get(k))]
    for a in value["adapters"]:
        bad += [f"adapters[].{k}" for k in ("max_abs_cos_diff",) if not _number(a.get(k))]
        bad += [f"adapters[].{k}" for k in ("set_adapter_s",) if k in a and not _number(a[k])]
    return f"not a number: {', '.join(dict.fromkeys(bad))}" if bad else None


def _bad_serving(path: Path, why: str) -> None:
    warnings.warn(f"{path}: not a serving record the tables can use ({why}); tasks.md leaves its serving section out",
                  stacklevel=3)
    return None


def serving_markdown(record: dict) -> list[str]:
    """The serving section of tasks.md (and what serve prints)."""
    adapters = [a for a in record["adapters"] if isinstance(a, dict)]
    worst = max((a["max_abs_cos_diff"] for a in adapters), default=0.0)
    ok = all(a.get("within_tolerance") is True for a in adapters)
    switch = sorted(a["set_adapter_s"] for a in adapters if isinstance(a.get("set_adapter_s"), (int, float)))
    mib = 2 ** 20
    return ["## Served from one process", "",
            f"- {len(adapters)} adapters on one {record.get('base_model')} ({record.get('device')}): resident memory "
            f"{(record['rss_base_bytes'] - record['rss_before_bytes']) / mib:,.0f} MiB for the base, "
            f"{(record['rss_all_bytes'] - record['rss_before_bytes']) / mib:,.0f} MiB with every adapter loaded "
            f"({record['per_adapter_bytes'] / mib:.2f} MiB per adapter).",
            f"- Each adapter, made active with set_adapter, reproduced its run's test cosines on its category: "
            f"{'yes' if ok else 'NO'}, largest difference {worst:.2g} (tolerance {record.get('tolerance'):g})"
            + (f"; set_adapter took {1000 * switch[len(switch) // 2]:.3g} ms (median)." if switch else "."),
            f"- How: {record.get('method')}.", ""]
