"""The methods table (methods.md/.csv) and its plot, from run records through the real `report` command.

The records are the fixtures written by the worker on the tiny model (standard and DoRA r=8), plus
the DoRA record relabelled as a bf16 variant: two precisions make a job that gets the methods table.
"""

import copy
import csv
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.report import methods_report
from tests.conftest import run_cli

FIXTURES = Path(__file__).parent / "fixtures"


def _job(tmp_path) -> Path:
    out = tmp_path / "job"
    (out / "runs").mkdir(parents=True)
    standard = json.loads((FIXTURES / "run-v3-standard.json").read_text())
    dora = json.loads((FIXTURES / "run-v3-dora.json").read_text())
    bf16 = copy.deepcopy(dora)
    bf16["spec"]["precision"] = "bf16"
    bf16["run_id"], bf16["label"], bf16["spec_hash"] = "dora-r8-dating-s0-0000000000", "dora r=8 bf16", "0" * 64
    for record in (standard, dora, bf16):
        (out / "runs" / f"{record['run_id']}.json").write_text(json.dumps(record))
    return out


def test_a_job_with_two_precisions_gets_the_methods_table(tmp_path):
    out = _job(tmp_path)
    proc = run_cli("report", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = (out / "methods.md").read_text()
    first = table.split("## How to read")[0]
    rows = [line.split("|")[1].strip() for line in first.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows == ["variant", "standard", "dora r=8", "dora r=8 bf16"]
    assert "**dora**" in table and "reference" in table
    assert "(0%)" not in table  # small shares keep their digits (the adapter is a fraction of a percent)
    with (out / "methods.csv").open() as f:
        csv_rows = {r["point"]: r for r in csv.DictReader(f)}
    std, dora = csv_rows["standard"], csv_rows["dora r=8"]
    assert float(std["train_wall_s_pct_of_standard"]) == 100.0
    expected = 100 * float(dora["train_wall_s_mean"]) / float(std["train_wall_s_mean"])
    assert abs(float(dora["train_wall_s_pct_of_standard"]) - expected) < 1e-9
    assert dora["merges"] == "True" and std["merges"] == ""
    for suffix in ("png", "svg", "csv"):
        assert (out / "plots" / f"quality_vs_params.{suffix}").stat().st_size > 0


def test_the_precision_section_sets_bf16_against_the_same_variant_in_fp32(tmp_path):
    out = _job(tmp_path)
    path = out / "runs" / "dora-r8-dating-s0-0000000000.json"
    bf16 = json.loads(path.read_text())
    fp32 = json.loads((FIXTURES / "run-v3-dora.json").read_text())
    bf16["timings"]["step_s_median"] = fp32["timings"]["step_s_median"] / 2  # same cosines: equal quality
    bf16["memory"]["peak_memory_bytes"] = fp32["memory"]["peak_memory_bytes"] * 0.75
    path.write_text(json.dumps(bf16))
    assert run_cli("report", str(out)).returncode == 0
    with (out / "precision.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert (row["point"], row["against"], row["seeds"]) == ("dora r=8 bf16", "dora r=8", "1")
    assert abs(float(row["step_s_median_ratio_mean"]) - 0.5) < 1e-12
    assert abs(float(row["peak_memory_ratio_mean"]) - 0.75) < 1e-12
    assert abs(float(row["train_wall_s_ratio_mean"]) - 1.0) < 1e-12
    assert float(row["spearman_diff"]) == 0.0
    assert "spearman_ratio" not in row  # Spearman is signed: no ratio of it, in any table
    table = (out / "methods.md").read_text()
    cells = next(c for c in ([x.strip() for x in line.split("|")] for line in table.splitlines())
                 if c[1:3] == ["dora r=8 bf16", "dora r=8"])
    rate = f"{fp32['spec']['learning_rate']:g}"
    assert cells[3:8] == [f"{rate} / {rate}", "1", "0.500", "1.000", "0.750"]
    assert cells[8].startswith("+0.000") and cells[8].endswith("(equivalent within ±0.02)")  # same cosines
    assert cells[9] == "side by side" and row["setup_differs"] == ""  # one machine, one commit


def test_a_job_compared_in_bf16_sets_its_methods_against_standard_bf16_and_fp32_in_the_precision_section(tmp_path):
    """dating-v2/methods trains its methods in bf16 and standard also in fp32, for the precision section.
    Standard fp32 comes first in table order; the reference must still be standard bf16, or each method's
    Δ would mix the method with the precision."""
    out = _job(tmp_path)
    for path in (out / "runs").glob("dora-*.json"):
        if json.loads(path.read_text())["spec"].get("precision", "fp32") == "fp32":
            path.unlink()
    standard = json.loads((FIXTURES / "run-v3-standard.json").read_text())
    std_bf16 = copy.deepcopy(standard)
    std_bf16["spec"]["precision"] = "bf16"
    std_bf16["run_id"], std_bf16["label"] = "standard-dating-s0-1111111111", "standard bf16"
    std_bf16["spec_hash"] = "1" * 64
    (out / "runs" / f"{std_bf16['run_id']}.json").write_text(json.dumps(std_bf16))
    proc = run_cli("report", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    with (out / "methods.csv").open() as f:
        rows = {r["point"]: r for r in csv.DictReader(f)}
    assert set(rows) >= {"standard", "standard bf16", "dora r=8 bf16"}
    assert [p for p, r in rows.items() if r["is_reference"] == "True"] == ["standard bf16"]
    with (out / "precision.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert (row["point"], row["against"]) == ("standard bf16", "standard")


def test_a_precision_pair_from_two_setups_says_what_differs(tmp_path):
    # e.g. fp32 on one lease of a GPU and bf16 on a later one: same kind and hostname, other code and tokenizers
    out = _job(tmp_path)
    path = out / "runs" / "dora-r8-dating-s0-0000000000.json"
    bf16 = json.loads(path.read_text())
    bf16["environment"]["source_commit"] = "f" * 40
    bf16["environment"]["tokenizers_version"] = "0.0.1"
    path.write_text(json.dumps(bf16))
    assert run_cli("report", str(out)).returncode == 0
    with (out / "precision.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert row["setup_differs"] == "commit, tokenizers_version"
    table = (out / "methods.md").read_text()
    assert "| across setups (commit, tokenizers_version differ) |" in table


def test_one_adapter_method_in_one_precision_gets_no_methods_table(tmp_path):
    out = _job(tmp_path)
    next((out / "runs").glob("dora-r8-dating-s0-0000000000.json")).unlink()
    assert run_cli("report", str(out)).returncode == 0
    assert not (out / "methods.md").exists()
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert not methods_report.wanted(records)


def test_a_chosen_rate_at_the_end_of_the_rates_tried_is_marked(tmp_path):
    out = _job(tmp_path)
    standard = json.loads((FIXTURES / "run-v3-standard.json").read_text())
    low = copy.deepcopy(standard)  # a tuning run at half the rate that validates worse
    low["spec"]["learning_rate"] /= 2
    low["quality"]["validation_spearman"] -= 0.1
    low["run_id"], low["spec_hash"] = "standard-dating-s0-1111111111", "1" * 64
    (out / "runs" / f"{low['run_id']}.json").write_text(json.dumps(low))
    (out / "job.json").write_text(json.dumps({"kinds": ["sweep"], "commands": []}))  # a sweep's folder
    assert run_cli("report", str(out)).returncode == 0
    assert "(top of grid)" in (out / "sweep.md").read_text().split("## Method")[0]
    table = (out / "methods.md").read_text().split("## How to read")[0]
    cells = {c[1]: c[2] for c in ([x.strip() for x in line.split("|")] for line in table.splitlines()) if len(c) > 2}
    assert cells["standard"] == f"{standard['spec']['learning_rate']:g} (top of grid)"
    assert cells["dora r=8"] == f"{json.loads((FIXTURES / 'run-v3-dora.json').read_text())['spec']['learning_rate']:g}"


def test_a_precision_pair_whose_grid_is_unfinished_keeps_its_costs_but_no_quality(tmp_path):
    """A bf16 variant tuned on a rate grid of which one rate has run (a study resumed across
    sessions): its rate is not the tuned one yet, so setting its Spearman against fp32's tuned rate
    would measure the rate, not the precision. The row keeps its cost ratios and says why it has no
    quality figure."""
    out = _job(tmp_path)
    bf16 = json.loads((out / "runs" / "dora-r8-dating-s0-0000000000.json").read_text())
    rate = bf16["spec"]["learning_rate"]
    (out / "job.json").write_text(json.dumps({"lr_grids": {"dora r=8 bf16": [rate, 2 * rate, 5 * rate]}}))
    assert run_cli("report", str(out)).returncode == 0
    with (out / "precision.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert row["unfinished"] == "dora r=8 bf16: 1 of 3 rates run"
    assert row["spearman_diff"] == "" and row["spearman_diff_verdict"] == ""
    assert abs(float(row["train_wall_s_ratio_mean"]) - 1.0) < 1e-12  # the costs stay
    table = (out / "methods.md").read_text()
    assert "| — (grid unfinished: dora r=8 bf16: 1 of 3 rates run) |" in table


def test_a_variant_whose_grid_is_unfinished_gets_no_difference_from_standard_in_any_table(tmp_path):
    """The main methods table and the sweep table treat an unfinished grid as the precision table does:
    the variant's Spearman is shown (the best so far), its Δ vs standard is withheld and says why.
    The other variants, on finished grids, keep theirs."""
    out = _job(tmp_path)
    bf16 = json.loads((out / "runs" / "dora-r8-dating-s0-0000000000.json").read_text())
    rate = bf16["spec"]["learning_rate"]
    (out / "job.json").write_text(json.dumps({"kinds": ["sweep"],
                                              "lr_grids": {"dora r=8 bf16": [rate, 2 * rate, 5 * rate]}}))
    assert run_cli("report", str(out)).returncode == 0
    with (out / "methods.csv").open() as f:
        rows = {r["point"]: r for r in csv.DictReader(f)}
    assert rows["dora r=8 bf16"]["vs_standard_spearman_diff"] == ""
    assert rows["dora r=8 bf16"]["vs_standard_withheld"] == "grid unfinished: dora r=8 bf16: 1 of 3 rates run"
    assert rows["dora r=8"]["vs_standard_spearman_diff"] != ""  # a finished grid keeps its difference
    for name in ("methods.md", "sweep.md"):
        table = (out / name).read_text().split("## ")[0]
        line = next(x for x in table.splitlines() if x.startswith("| dora r=8 bf16 "))
        assert "— (grid unfinished: dora r=8 bf16: 1 of 3 rates run)" in line, (name, line)
        assert "sig." not in line
    # and the per-arm Spearman table of tradeoffs.md, which gives a verdict to every other arm
    section = (out / "tradeoffs.md").read_text().split("## Test Spearman")[1].split("\n\n")[1]
    lines = {x.split("|")[1].strip(): x for x in section.splitlines() if x.startswith("| ")}
    assert "— (grid unfinished: dora r=8 bf16: 1 of 3 rates run)" in lines["dora r=8 bf16"]
    assert not any(v in lines["dora r=8 bf16"] for v in ("worse", "better", "equivalent", "inconclusive"))
    assert any(v in lines["dora r=8"] for v in ("worse", "better", "equivalent", "inconclusive"))


MANIFESTS = {"none": None, "unreadable": "{not json",
             "a sweep's": json.dumps({"kinds": ["sweep"], "spearman_margin": 0.03,
                                      "lr_selection": {"rule": "robust", "seeds": [0]}})}


@pytest.mark.parametrize("manifest", MANIFESTS)
def test_report_and_publish_read_a_job_manifest_once(tmp_path, monkeypatch, capsys, manifest):
    """Every table of ``report`` (sweep, methods, tasks, recommendation, tradeoffs), publish's catalog and
    ``sizes`` take the job's manifest from one read of job.json, whether there is none, it is unreadable or
    it is a sweep's: None means "read, and there is none", so no reader reads it again (and a job.json that
    a running sweep rewrites cannot give two tables two different rules)."""
    from harness import catalog, jobfile
    from harness.__main__ import main
    from harness.report import sizes
    out = _job(tmp_path / "hardware" / "dataset")  # where publish looks: results/<hardware>/<dataset>/<job>
    if MANIFESTS[manifest] is not None:
        (out / "job.json").write_text(MANIFESTS[manifest])
    reads = []
    real_read = jobfile.read
    monkeypatch.setattr(jobfile, "read", lambda folder: reads.append(Path(folder)) or real_read(folder))
    assert main(["report", str(out)]) == 0
    assert reads == [out]
    assert (out / ("sweep.md" if manifest == "a sweep's" else "tradeoffs.md")).is_file()
    assert capsys.readouterr().err.count("unreadable job manifest") == (manifest == "unreadable")
    reads.clear()
    assert [job.folder for job in catalog.published_jobs(tmp_path)] == [out] and reads == [out]
    reads.clear()
    with pytest.raises(sizes.SizesError, match="no LoRA"):  # the fixture's variants are DoRA: sizes has no row
        sizes.job_rows(out)
    assert reads == [out]


def test_what_survives_names_every_trained_variant_under_its_verdict_and_leaves_out_the_baseline():
    from harness.report import methods_report
    rows = [{"point": "baseline", "method": "baseline", "vs_standard_verdict": "worse", "vs_standard_margin": 0.02},
            {"point": "standard", "method": "standard", "is_reference": True},
            {"point": "lora r=8", "method": "lora", "vs_standard_verdict": "worse", "vs_standard_margin": 0.02},
            {"point": "dora r=8", "method": "dora", "vs_standard_verdict": "equivalent", "vs_standard_margin": 0.02},
            {"point": "ia3", "method": "ia3", "vs_standard_verdict": "inconclusive", "vs_standard_margin": 0.02},
            {"point": "vera r=8", "method": "vera", "vs_standard_withheld": "grid unfinished: vera r=8"}]
    text = "\n".join(methods_report.survivors(rows))
    assert "(3 variants against standard, verdicts at a smallest difference of ±0.02 Spearman)" in text
    assert "- better: none\n- equivalent within ±0.02: dora r=8\n- inconclusive: ia3\n- worse: lora r=8\n" in text
    assert "not compared yet (a rate grid still running): vera r=8" in text and "baseline" not in text
    assert methods_report.survivors(rows[:2]) == []


def test_a_row_whose_runs_ran_on_another_machine_is_marked_beside_its_costs(tmp_path):
    # a study resumed on another CPU model that shows the same name (as "AMD EPYC" stood for a Zen 5 and
    # a Zen 3): the rows whose runs ran there carry a mark, and the note under the table names their runs
    out = _job(tmp_path)
    path = out / "runs" / "dora-r8-dating-s0-0000000000.json"
    bf16 = json.loads(path.read_text())
    bf16["environment"].update(cpu_vendor="AuthenticAMD", cpu_family="25", cpu_model_number="1", cpu_stepping="1",
                               cpu_isa="avx2")
    path.write_text(json.dumps(bf16))
    assert run_cli("report", str(out)).returncode == 0
    table = (out / "methods.md").read_text()
    first = table.split("## How to read")[0]
    rows = [line.split("|")[1].strip() for line in first.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows == ["variant", "standard", "dora r=8", "dora r=8 bf16 ‡"]
    assert "- dora r=8 bf16: 1 of its 1 final runs on cpu " in table and "family 25 model 1 stepping 1, avx2)" in table
    with (out / "methods.csv").open() as f:
        csv_rows = {r["point"]: r for r in csv.DictReader(f)}
    assert csv_rows["standard"]["other_machines"] == "" and "avx2" in csv_rows["dora r=8 bf16"]["other_machines"]


def test_a_job_on_one_machine_marks_no_row():
    records = [json.loads((FIXTURES / name).read_text()) for name in ("run-v3-standard.json", "run-v3-dora.json")]
    from harness.report import variants
    rows = methods_report.method_rows(variants.point_rows(records), records)
    assert [r["other_machines"] for r in rows] == ["", ""] and not methods_report.machine_marks(rows)


def test_a_row_whose_tuning_runs_ran_on_another_machine_says_so_and_its_final_runs_do_not():
    # the AMD study's LoRA fp32: two of its tuning runs on the Zen 3, its three final runs on the Zen 5
    from harness.report import variants
    standard = json.loads((FIXTURES / "run-v3-standard.json").read_text())
    final = json.loads((FIXTURES / "run-v3-dora.json").read_text())
    tuning = copy.deepcopy(final)
    tuning["run_id"], tuning["spec"]["learning_rate"] = "dora-r8-dating-s0-1111111111", 1e-9
    tuning["environment"].update(cpu_vendor="AuthenticAMD", cpu_family="25", cpu_model_number="1", cpu_isa="avx2")
    rows = methods_report.method_rows(variants.point_rows([standard, final]), [standard, final],
                                      [standard, final, tuning])
    marks = {r["point"]: r["other_machines"] for r in rows}
    assert marks["standard"] == ""
    assert marks["dora r=8"].startswith("1 of its 1 tuning runs on cpu ") and "final" not in marks["dora r=8"]


_MACHINES = [{"device": "cpu", "cpu_model": "AMD EPYC", "cpu_count": 2, "cpu_vendor": "AuthenticAMD",
              "cpu_family": family, "cpu_model_number": model, "cpu_isa": isa}
             for family, model, isa in (("26", "2", "avx2,avx512_bf16"), ("25", "1", "avx2"), ("6", "143", "amx_bf16"))]
_VARIANTS = [{"arm": "standard", "lora": None}, {"arm": "lora", "lora": {"r": 16}},
             {"arm": "dora", "lora": {"r": 16}, "precision": "bf16"}]


@given(st.lists(st.tuples(st.sampled_from(range(len(_VARIANTS))), st.sampled_from(range(len(_MACHINES))),
                          st.booleans()), min_size=1, max_size=30))
@settings(max_examples=200, deadline=None)
def test_machine_marks_count_every_run_that_ran_off_the_main_machine(runs):
    # any job: variants whose final and tuning runs ran on any of three machines. A row is marked exactly
    # where some of its runs ran on a machine other than the one that ran most of the job's runs, and the
    # counts it gives for each such machine are its own final and tuning runs there
    from collections import Counter

    from harness import hardware, methods
    records = [{"run_id": f"run-{i}", "spec": _VARIANTS[v], "environment": _MACHINES[m], "final": final}
               for i, (v, m, final) in enumerate(runs)]
    final = [r for r in records if r["final"]]
    labels = {i: hardware.machine_label(env) for i, env in enumerate(_MACHINES)}
    points = [{"point": methods.variant_label(s), "method": s["arm"]} for s in _VARIANTS]
    rows = {r["point"]: r for r in methods_report.method_rows(points, final, records)}
    counts = Counter(labels[m] for _, m, _ in runs)
    top = max(counts.values())
    for v, variant in enumerate(_VARIANTS):
        row = rows[methods.variant_label(variant)]
        if len(counts) == 1:
            assert row["other_machines"] == "" and row["main_machine"] == ""
            continue
        main = row["main_machine"]
        assert counts[main] == top
        expected = []
        for m in sorted({labels[m] for w, m, _ in runs if w == v} - {main}):
            parts = []
            for is_final, kind in ((True, "final"), (False, "tuning")):
                mine = [labels[m2] for w, m2, f in runs if w == v and f == is_final]
                if mine.count(m):
                    parts.append(f"{mine.count(m)} of its {len(mine)} {kind} runs")
            expected.append(f"{' and '.join(parts)} on {m}")
        assert row["other_machines"] == "; ".join(expected)
    marked = [r for r in rows.values() if r["other_machines"]]
    note = methods_report.machine_marks(list(rows.values()))
    assert bool(note) == bool(marked) and all(f"- {r['point']}: {r['other_machines']}" in note for r in marked)
