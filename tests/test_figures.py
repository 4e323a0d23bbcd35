"""The figure registry: one entry per figure, read from real records by every report."""

import json
from pathlib import Path

from harness import compare, figures, plots, report, sweep

# a published standard run, with energy measured (the tiny fixtures switch energy off)
FIXTURE = Path(__file__).parent.parent / "results" / "cpu-amd-epyc-2c" / "dating-v2" / "adr" / "runs" / \
    "standard-dating-s0-e4578fdafa.json"


FRESH = Path(__file__).parent / "fixtures" / "run-v3-dora.json"  # made by today's worker: forgetting figures


def test_every_figure_reads_a_real_record_in_its_shown_unit():
    published, fresh = json.loads(FIXTURE.read_text()), json.loads(FRESH.read_text())
    for figure in figures.FIGURES.values():
        record = fresh if figure.path.startswith("quality.forgetting.") else published
        raw = report.get(record, figure.path)
        assert raw is not None, f"{figure.key}: {figure.path} is not in a standard run record"
        assert figure.value(record) == raw * figure.scale
    assert figures.FIGURES["peak_memory_mib"].value(published) == published["memory"]["peak_memory_bytes"] / 2**20


def test_keys_and_labels_are_unique_and_every_output_uses_the_registry():
    keys = [f.key for f in figures.FIGURES.values()]
    labels = [f.label for f in figures.FIGURES.values()]
    assert len(set(keys)) == len(keys) and len(set(labels)) == len(labels)
    assert [label for label, _, _ in report.ROWS] == [figures.FIGURES[k].label for k in figures.TRADEOFF_ROWS]
    assert [k for k, _, _ in sweep.EFFICIENCY] == figures.SWEEP_COSTS
    assert [k for k, _ in plots.COSTS] == figures.PLOT_COSTS
    assert [path for _, path, _ in compare.FIGURES] == [figures.FIGURES[k].path for k in figures.COMPARE]
    assert all(f.better in ("higher", "lower", None) for f in figures.FIGURES.values())
