"""The figure registry: one entry per figure, read from real records by every report, and a new figure
is one entry that every output shows."""

import copy
import csv
import json
import re
from pathlib import Path

import pytest

from harness import figures
from harness.report import compare, methods_report, plots, publish, site, sweep_table, tradeoffs, variants

# a published standard run, with energy measured (the tiny fixtures switch energy off)
FIXTURE = Path(__file__).parent.parent / "results" / "cpu-amd-epyc-2c" / "dating-v2" / "adr" / "runs" / \
    "standard-dating-s0-e4578fdafa.json"
FIXTURES = Path(__file__).parent / "fixtures"
FRESH = FIXTURES / "run-v3-dora.json"  # made by today's worker: forgetting figures


def test_every_figure_reads_a_real_record_in_its_shown_unit():
    published, fresh = json.loads(FIXTURE.read_text()), json.loads(FRESH.read_text())
    for figure in figures.FIGURES.values():
        record = fresh if figure.path.startswith("quality.forgetting.") else published
        raw = figures.lookup(record, figure.path)
        assert raw is not None, f"{figure.key}: {figure.path} is not in a standard run record"
        assert figure.value(record) == raw * figure.scale
    assert figures.FIGURES["peak_memory_mib"].value(published) == published["memory"]["peak_memory_bytes"] / 2**20


def test_keys_and_labels_are_unique_and_a_figure_names_only_known_views():
    keys = [f.key for f in figures.FIGURES.values()]
    labels = [f.label for f in figures.FIGURES.values()]
    assert len(set(keys)) == len(keys) and len(set(labels)) == len(labels)
    with pytest.raises(ValueError, match="unknown views.*'tabel'"):
        figures.Figure("x", "X", "x", "timings.steps", shows={"tabel": 1})
    with pytest.raises(ValueError, match="better must be"):
        figures.Figure("x", "X", "x", "timings.steps", better="up")
    with pytest.raises(ValueError, match="unknown view"):
        figures.shown_in("tabel")


def test_the_index_headline_reads_each_figure_by_its_key_from_the_tradeoff_table():
    records = [json.loads(p.read_text()) for p in sorted(FIXTURE.parent.glob("*.json"))]
    h = publish.headline(records)
    table = tradeoffs.tradeoff_table(tradeoffs.runs_frame(records))
    std, lora = tradeoffs.reference_label(records), h["lora_label"]
    assert lora and lora.startswith("lora")
    wall = figures.FIGURES["train_wall_s"].label
    assert h["lora_time_pct"] == pytest.approx(100 * table.loc[wall, lora] / table.loc[wall, std])
    assert h["standard_spearman"] == pytest.approx(table.loc["Spearman (test)", std])
    assert h["lora_trainable_params"] == table.loc["Trainable parameters", lora] > 0


def _job(tmp_path) -> tuple[Path, list[dict]]:
    """Standard, DoRA r=8 and DoRA r=8 relabelled bf16 (two precisions: the job gets every table)."""
    out = tmp_path / "job"
    (out / "runs").mkdir(parents=True)
    standard = json.loads((FIXTURES / "run-v3-standard.json").read_text())
    dora = json.loads(FRESH.read_text())
    bf16 = copy.deepcopy(dora)
    bf16["spec"]["precision"] = "bf16"
    bf16["run_id"], bf16["label"], bf16["spec_hash"] = "dora-r8-dating-s0-0000000000", "dora r=8 bf16", "0" * 64
    for record in (standard, dora, bf16):
        (out / "runs" / f"{record['run_id']}.json").write_text(json.dumps(record))
    return out, [standard, dora, bf16]


def test_a_new_figure_is_one_entry_and_every_output_shows_it(tmp_path, monkeypatch):
    new = figures.Figure("steps_done", "Optimizer steps (count)", "optimizer steps", "timings.steps",
                         integer=True, column="steps", shows={view: 99 for view in figures.VIEWS})
    monkeypatch.setitem(figures.FIGURES, new.key, new)
    out, records = _job(tmp_path)
    steps = records[0]["timings"]["steps"]
    assert steps > 0
    # the tradeoff table: a row, formatted as a count
    table = tradeoffs.format_table(tradeoffs.tradeoff_table(tradeoffs.runs_frame(records)))
    assert re.search(rf"\| Optimizer steps \(count\) +\| {steps:,} +\|", table), table
    # sweep and methods tables and their CSV files; the rank-vs-cost plot gets a fifth panel
    rows = variants.point_rows(records)
    assert rows[0]["steps_done_mean"] == steps
    sweep_table.write_sweep(out, records, rows)
    methods_report.write_methods(out, records, rows)
    for name in ("sweep.md", "methods.md"):
        header = next(line for line in (out / name).read_text().splitlines() if line.startswith("| point")
                      or line.startswith("| variant"))
        assert "| steps " in header, name
    for name in ("sweep.csv", "methods.csv"):
        assert "steps_done_mean" in next(csv.reader((out / name).open())), name
    plots.rank_vs_cost(__import__("pandas").DataFrame(rows), out / "plots")
    assert "steps_done_mean" in next(csv.reader((out / "plots" / "rank_vs_cost.csv").open()))
    # the hardware comparison (the same folder twice) and the site's explorer axes and points
    by = compare.by_arm(records)
    per_arm = compare.tables([("a", str(out), by), ("b", str(out), by)])["per_arm"]
    assert set(per_arm[per_arm["figure"] == "optimizer steps"]["a"]) == {steps}
    axes = site.axes()
    assert "steps_done" in [a["key"] for a in axes["costs"]] and "steps_done" in [a["key"] for a in axes["quality"]]
    root = tmp_path
    hw_job = root / "hw" / "dating" / "job"
    hw_job.parent.mkdir(parents=True)
    out.rename(hw_job)
    point = site.variant_points(hw_job, root, records)[0]
    assert point["steps_done"] == steps
