"""The run log of a study folder's PROVENANCE.md, generated from its run files.

A study that spans sessions keeps a log in its PROVENANCE.md: what each session ran, on which
machine, with what beside it. The prose (what ran beside, why a run was held) is the session's own
words; every figure of a run (when it started, the load then, the cores that other work took while it
trained, its step times, its quality) is this table, written between the two markers by
``python -m harness publish`` (``write_index``) and checked against the run files by
tests/test_publish.py, so no figure of the log is typed by hand.
"""

from __future__ import annotations

from pathlib import Path

from harness import cpu_share, files, methods, results
from harness.report import benchreport

BEGIN = "<!-- run-log:begin (generated from runs/ by python -m harness publish; do not edit) -->"
END = "<!-- run-log:end -->"
PROVENANCE = "PROVENANCE.md"


def _get(record: dict, dotted: str):
    value = record
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _num(value, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _converged(record: dict) -> str:
    verdict = _get(record, "training.convergence.converged")
    return {True: "yes", False: "no"}.get(verdict, "-")


COLUMNS = (  # (heading, how a record's value is shown)
    ("started (UTC)", lambda r: (r.get("started_at") or "-").replace("T", " ").split("+")[0]),
    ("run", lambda r: r["run_id"]),
    ("status", lambda r: r.get("status") or "-"),
    ("rate", lambda r: _num(_get(r, "spec.learning_rate"), "g") if methods.trains(r["method"]) else "-"),
    ("seed", lambda r: _num(_get(r, "spec.seed"), "d")),
    ("commit", lambda r: (_get(r, "environment.git_commit") or "-")[:7]),
    ("CPU", lambda r: f"{_get(r, 'environment.cpu_model') or '-'}, {_get(r, 'environment.cpu_count') or '-'} cores"),
    ("load at start", lambda r: _num(_get(r, "environment.loadavg_1m_at_start"), ".2f")),
    ("others' cores in training", lambda r: _num(cpu_share.shared_cores(r.get("environment")), ".2f")),
    ("train wall (s)", lambda r: _num(_get(r, "timings.train_wall_s"), ".0f")),
    ("step median (s)", lambda r: _num(_get(r, "timings.step_s_median"), ".3f")),
    ("eval (s)", lambda r: _num(_get(r, "timings.eval_s"), ".1f")),
    ("validation Spearman", lambda r: _num(_get(r, "quality.validation_spearman"), ".3f")),
    ("test Spearman", lambda r: _num(_get(r, "quality.spearman"), ".3f")),
    ("converged", _converged),
)


def block(folder: Path) -> str:
    """The log table of ``folder``'s run files, in the order they started, between the markers."""
    records = sorted(results.load_runs(folder), key=lambda r: (r.get("started_at") or "", r["run_id"]))
    lines = [BEGIN, "", f"{len(records)} run files in `runs/`, in the order they started:", "",
             "| " + " | ".join(h for h, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(show(r)) for _, show in COLUMNS) + " |" for r in records]
    return "\n".join(lines + ["", END])


def has_log(folder: Path) -> bool:
    path = Path(folder) / PROVENANCE
    return path.is_file() and BEGIN in path.read_text(encoding="utf-8")


def update(folder: Path) -> Path | None:
    """Rewrite the log table of ``folder``'s PROVENANCE.md where it has the markers; its path, else None."""
    if not has_log(folder):
        return None
    path = Path(folder) / PROVENANCE
    text = path.read_text(encoding="utf-8")
    new = benchreport.replace_block(text, block(folder), begin=BEGIN, end=END)
    if new != text:
        files.write_text_atomic(path, new)
    return path


def study_folders(results_root: Path) -> list[Path]:
    """Every job folder under ``results_root`` (published or in progress) whose PROVENANCE.md has a log."""
    return sorted(p.parent for p in Path(results_root).glob("*/*/*/runs") if p.is_dir() and has_log(p.parent))
