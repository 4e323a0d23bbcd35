"""The run log of a study folder's PROVENANCE.md, generated from its run files.

A study that spans sessions keeps a log in its PROVENANCE.md: what each session ran, on which
machine, with what beside it. The prose (what ran beside, why a run was held) is the session's own
words; every figure of a run (when it started, the load then, the cores that other work took while it
trained, its step times, its quality) is this table, written between the two markers by
``python -m harness publish`` (``write_index``) and checked against the run files by
tests/test_publish.py, so no figure of the log is typed by hand.

A study's pilot (the short runs that set its budget, kept in ``pilot/runs/``) gets the same treatment: its
validation curves, probe by probe, are the table between the pilot markers (``pilot_block``).
"""

from __future__ import annotations

from pathlib import Path

from harness import cpu_share, files, hardware, methods, results
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


def _cell(value) -> str:
    """``value`` as one Markdown table cell: a ``|`` or a line break in a recorded string (a CPU model's
    name) would otherwise split the row."""
    return " ".join(str(value).replace("|", "\\|").splitlines())


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
    ("CPU", lambda r: hardware.cpu_label(r.get("environment") or {})),
    ("load at start", lambda r: _num(_get(r, "environment.loadavg_1m_at_start"), ".2f")),
    ("others' cores in training", lambda r: _num(cpu_share.shared_cores(r.get("environment")), ".2f")),
    ("train wall (s)", lambda r: _num(_get(r, "timings.train_wall_s"), ".0f")),
    ("step median (s)", lambda r: _num(_get(r, "timings.step_s_median"), ".3f")),
    ("eval (s)", lambda r: _num(_get(r, "timings.eval_s"), ".1f")),
    ("validation Spearman", lambda r: _num(_get(r, "quality.validation_spearman"), ".3f")),
    ("test Spearman", lambda r: _num(_get(r, "quality.spearman"), ".3f")),
    ("converged", _converged),
)


def _in_start_order(folder: Path) -> list[dict]:
    """The run files of ``folder``'s ``runs/``, in the order they started."""
    return sorted(results.load_runs(folder), key=lambda r: (r.get("started_at") or "", r["run_id"]))


def block(folder: Path) -> str:
    """The log table of ``folder``'s run files, in the order they started, between the markers."""
    records = _in_start_order(folder)
    lines = [BEGIN, "", f"{len(records)} run files in `runs/`, in the order they started:", "",
             "| " + " | ".join(h for h, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(show(r)) for _, show in COLUMNS) + " |" for r in records]
    return "\n".join(lines + ["", END])


PILOT = "pilot"  # a study's pilot runs: FOLDER/pilot/runs/
PILOT_BEGIN = "<!-- pilot-curves:begin (generated from pilot/runs/ by python -m harness publish; do not edit) -->"
PILOT_END = "<!-- pilot-curves:end -->"


def pilot_block(folder: Path) -> str:
    """The validation curve of each pilot run of ``folder`` (its ``pilot/runs/``), one row per run and one
    column per probed step, then its final validation and test Spearman and its convergence verdict."""
    records = _in_start_order(Path(folder) / PILOT)
    curves = {r["run_id"]: {p.get("step"): p.get("val_spearman") for p in _get(r, "training.validation_curve") or []
                            if isinstance(p, dict)} for r in records}
    steps = sorted({s for c in curves.values() for s in c if isinstance(s, int) and not isinstance(s, bool)})
    head = ["run", "rate", *map(str, steps), "final validation", "test Spearman", "converged"]
    lines = [PILOT_BEGIN, "", f"Validation Spearman by step of the {len(records)} pilot runs in `pilot/runs/`:", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        cells = [r["run_id"], _num(_get(r, "spec.learning_rate"), "g"),
                 *(_num(curves[r["run_id"]].get(s), ".3f") for s in steps),
                 _num(_get(r, "quality.validation_spearman"), ".3f"), _num(_get(r, "quality.spearman"), ".3f"),
                 _converged(r)]
        lines.append("| " + " | ".join(map(_cell, cells)) + " |")
    return "\n".join(lines + ["", PILOT_END])


# (begin, end, the block's builder, the run folder it reads): each PROVENANCE.md holds the ones it marks
BLOCKS = ((BEGIN, END, block, "runs"), (PILOT_BEGIN, PILOT_END, pilot_block, f"{PILOT}/runs"))


def marked(folder: Path) -> list[tuple]:
    """The entries of BLOCKS that ``folder``'s PROVENANCE.md marks and whose run folder exists."""
    path = Path(folder) / PROVENANCE
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    return [b for b in BLOCKS if b[0] in text and (Path(folder) / b[3]).is_dir()]


def update(folder: Path) -> Path | None:
    """Rewrite the generated tables of ``folder``'s PROVENANCE.md (the run log, the pilot's curves) where it
    has their markers; its path, else None."""
    blocks = marked(folder)
    if not blocks:
        return None
    path = Path(folder) / PROVENANCE
    text = new = path.read_text(encoding="utf-8")
    for begin, end, build, _ in blocks:
        new = benchreport.replace_block(new, build(folder), begin=begin, end=end)
    if new != text:
        files.write_text_atomic(path, new)
    return path


def folders(results_root: Path, begin: str | None = None) -> list[Path]:
    """Every job folder under ``results_root`` (published or in progress) whose PROVENANCE.md has a generated
    table: the one that ``begin`` opens, or any."""
    return sorted(p.parent for p in Path(results_root).glob(f"*/*/*/{PROVENANCE}")
                  if any(begin in (None, b[0]) for b in marked(p.parent)))


def study_folders(results_root: Path) -> list[Path]:
    """Every job folder under ``results_root`` (published or in progress) whose PROVENANCE.md has a log."""
    return folders(results_root, BEGIN)


def pilot_folders(results_root: Path) -> list[Path]:
    """Every job folder under ``results_root`` whose PROVENANCE.md has the pilot's curves."""
    return folders(results_root, PILOT_BEGIN)
