"""Published results: the hardware id, the generated index (regenerated and diffed), and that every
reader of a job folder (report, publish, compare, the site) reports the same runs."""

import json
import shutil
from pathlib import Path

import pytest

from harness import catalog, jobfile
from harness.report import benchreport, publish, run_log
from tests.conftest import REPO, run_cli
from tests.test_compare import CPU_ADR, _copy_with_a_losing_rate

RESULTS = REPO / "results"
FIXTURES = Path(__file__).parent / "fixtures"


def test_hardware_id():
    assert catalog.hardware_id({"device_type": "cpu", "cpu_model": "AMD EPYC", "cpu_count": 2}) == "cpu-amd-epyc-2c"
    assert catalog.hardware_id({"device_type": "cuda", "device_name": "NVIDIA H100 80GB HBM3",
                                "device_memory_bytes": 85_028_290_560}) == "cuda-nvidia-h100-80gb-hbm3-79gb"


def test_published_index_is_accurate_against_the_run_files():
    """Regenerate results/README.md and the ADR page from the committed run files and diff."""
    assert (RESULTS / "README.md").read_text() == publish.index_markdown(RESULTS)
    assert (RESULTS / "ADR-001-comparison.md").read_text() == publish.adr_comparison_markdown(RESULTS)


def test_every_study_log_is_generated_from_its_run_files():
    """Each generated table of each study's PROVENANCE.md (published or in progress): the run log and the
    pilot's curves that set its budget, regenerated from the committed runs/ and pilot/runs/ and diffed: no
    figure of a study's log is typed by hand."""
    assert run_log.study_folders(RESULTS), "no study's PROVENANCE.md has a generated run log"
    assert run_log.pilot_folders(RESULTS), "no study's PROVENANCE.md has a generated pilot table"
    for folder in run_log.folders(RESULTS):
        text = (folder / run_log.PROVENANCE).read_text()
        for begin, _, build, _ in run_log.marked(folder):
            assert build(folder) in text, f"{folder}: {begin} out of date (python -m harness publish)"


def test_a_study_log_follows_its_run_files(tmp_path):
    """publish rewrites the table between the markers from runs/ and leaves the words around it; a
    PROVENANCE.md without the markers is not touched."""
    study, plain = tmp_path / "cpu-x-2c" / "dating-v2" / "study", tmp_path / "cpu-x-2c" / "dating-v2" / "plain"
    for folder in (study, plain):
        (folder / "runs").mkdir(parents=True)
        shutil.copy(FIXTURES / "run-v4-standard.json", folder / "runs")
    (study / run_log.PROVENANCE).write_text(f"# words before\n{run_log.BEGIN}\nstale\n{run_log.END}\nwords after\n")
    (plain / run_log.PROVENANCE).write_text("# no log here\n")
    assert run_log.study_folders(tmp_path) == [study]
    publish.write_index(tmp_path)
    text = (study / run_log.PROVENANCE).read_text()
    record = json.loads(next((study / "runs").glob("*.json")).read_text())
    assert text.startswith("# words before\n") and text.endswith("words after\n") and "stale" not in text
    assert "1 run files in `runs/`" in text and f"| {record['run_id']} |" in text
    assert (plain / run_log.PROVENANCE).read_text() == "# no log here\n"


def test_a_pilot_table_follows_its_run_files(tmp_path):
    """publish writes one row per pilot run and one column per probed step between the pilot markers, in a
    study folder that has no runs of its own yet; the words around the table stay."""
    study = tmp_path / "cpu-x-2c" / "stsb" / "study"
    (study / "pilot" / "runs").mkdir(parents=True)
    record = json.loads((FIXTURES / "run-v4-standard.json").read_text())
    record["training"]["validation_curve"] = [{"step": 90, "val_spearman": 0.5}, {"step": 180, "val_spearman": 0.61234}]
    (study / "pilot" / "runs" / f"{record['run_id']}.json").write_text(json.dumps(record))
    (study / run_log.PROVENANCE).write_text(f"# plan\n{run_log.PILOT_BEGIN}\nstale\n{run_log.PILOT_END}\nafter\n")
    assert run_log.pilot_folders(tmp_path) == [study] and run_log.study_folders(tmp_path) == []
    publish.write_index(tmp_path)
    text = (study / run_log.PROVENANCE).read_text()
    assert text.startswith("# plan\n") and text.endswith("after\n") and "stale" not in text
    assert "| run | rate | 90 | 180 | final validation |" in text
    assert f"| {record['run_id']} |" in text and "| 0.500 | 0.612 |" in text


def test_benchmark_figures_are_generated_from_the_saved_run():
    """The README's benchmark figures and results/benchmarks/README.md: regenerated from the newest
    saved run with ratio CIs and diffed, so that no benchmark figure in prose is typed by hand."""
    assert benchreport.published_run(RESULTS) is not None, "no saved benchmark run with ratio CIs is committed"
    assert (RESULTS / "benchmarks" / "README.md").read_text() == benchreport.markdown(RESULTS)
    assert benchreport.readme_block(RESULTS) in (REPO / "README.md").read_text()
    # both faithfulness ratios of the published run carry a CI and a verdict against their target
    ratios = {r["label"]: r for r in benchreport.summary(benchreport.published_run(RESULTS))["ratios"]}
    for label in ("trackers on / off", "harness / plain trainer"):
        assert ratios[label]["lo"] <= ratios[label]["ratio"] <= ratios[label]["hi"]
        assert ratios[label]["verdict"] in {"met", "missed", "undecided"} and ratios[label]["target"] == 0.98


def test_benchmark_report_ignores_runs_without_ratio_cis(tmp_path):
    """A saved run of the old suite (single-round ratios, no CIs) is not the published one, and the
    README block says so instead of quoting it."""
    old = next((RESULTS / "benchmarks").glob("*/0001_*.json"))
    (tmp_path / "benchmarks" / "m").mkdir(parents=True)
    shutil.copy(old, tmp_path / "benchmarks" / "m" / old.name)
    assert benchreport.published_run(tmp_path) is None
    assert "No saved benchmark run with ratio CIs" in benchreport.readme_block(tmp_path)
    with pytest.raises(ValueError, match="no .* block"):
        benchreport.replace_block("a README without the markers", benchreport.readme_block(tmp_path))


def test_each_benchmark_section_comes_from_the_newest_run_that_measured_it(tmp_path):
    """A later run of part of the suite (here the published run's own MFU and encoding benchmarks, saved
    again with a later date) supplies those sections, named as their run, while the ratios and the
    training steps stay with the whole suite's run; a later run without ratio CIs never replaces them."""
    whole = benchreport.published_run(RESULTS)
    data = json.loads(whole.read_text())
    part = {**data, "datetime": "2099-01-01T00:00:00", "commit_info": {**data["commit_info"], "id": "f" * 40},
            "benchmarks": [b for b in data["benchmarks"] if b["name"].startswith(("test_mfu", "test_encode"))]}
    assert part["benchmarks"]
    folder = tmp_path / "benchmarks" / "m"
    folder.mkdir(parents=True)
    shutil.copy(whole, folder / whole.name)
    (folder / "0009_part.json").write_text(json.dumps(part))
    runs = benchreport.section_runs(tmp_path)
    assert runs == {"ratios": folder / whole.name, "mfu": folder / "0009_part.json",
                    "serving": folder / "0009_part.json"}
    page = benchreport.markdown(tmp_path)
    ratios, mfu, serving = (page.index(h) for h in ("## Side-by-side", "## MFU", "## Serving"))
    assert page.count(f"Run: `m/{whole.name}`") == 1 and page.index(f"Run: `m/{whole.name}`") > ratios
    assert mfu < page.index("Run: `m/0009_part.json`") < serving and "commit fffffff" in page
    block = benchreport.readme_block(tmp_path)
    assert block.index("0009_part.json") < block.index("MFU against") and "trackers on / off" in block
    # the ADR's deployment rows read the serving section's run: no swap there, so not measured yet
    assert "Not measured in the published benchmark run yet" in "\n".join(publish.deployment_rows(tmp_path))


def test_power_studies_count_each_verdict_with_wilson_intervals(tmp_path):
    """The regression check's measured rates come from power.json's verdicts, not its summary fields:
    here 18 of 20 slowed runs flagged, one unchanged run regressed and two improved; the Wilson 95%
    interval of 18/20 is 0.699-0.972 (Wilson 1927, checked by hand: centre 0.836, half-width 0.137)."""
    def trial(slowed: str, unchanged: str) -> dict:
        return {"slowed": {"verdict": slowed}, "unchanged": {"verdict": unchanged}}
    verdicts = ([trial("regressed", "unchanged")] * 15 + [trial("unchanged", "unchanged")] * 2
                + [trial("regressed", "regressed"), trial("regressed", "improved"), trial("regressed", "improved")])
    folder = tmp_path / "benchmarks" / "power-x"
    folder.mkdir(parents=True)
    (folder / "power.json").write_text(json.dumps({"model": "minilm", "rounds": 6, "processes": 6, "slowdown": 0.05,
                                                   "detected": 99, "verdicts": verdicts}))
    (study,) = benchreport.power_studies(tmp_path)
    assert (study["trials"], study["detected"], study["false_alarms"], study["false_improved"]) == (20, 18, 1, 2)
    assert study["detected_ci"] == pytest.approx((0.699, 0.972), abs=1e-3)
    block = benchreport.readme_block(tmp_path)
    assert "flagged in 18 of 20 (90%, 95% CI 70-97%)" in block and "regressed in 1 of 20 (5%" in block


def test_published_results_are_real_and_complete():
    assert CPU_ADR is not None, "no published dating-v1/adr job for a CPU"
    records = [json.loads(p.read_text()) for p in (CPU_ADR / "runs").glob("*.json")]
    assert {r["method"] for r in records} == {"baseline", "standard", "lora"}
    assert all(r["status"] == "success" for r in records)
    assert (CPU_ADR / "tradeoffs.md").exists()
    assert "73,728" in (RESULTS / "ADR-001-comparison.md").read_text()


def test_publish_add_files_a_folder_under_its_hardware_id(tmp_path):
    out = tmp_path / "out"
    shutil.copytree(FIXTURES / "compare-gpu", out)
    root = tmp_path / "results"
    proc = run_cli("publish", "--add", str(out), "--job", "adr", "--results", str(root))
    assert proc.returncode == 0, proc.stderr
    dest = root / "cuda-nvidia-h100-80gb-hbm3-79gb" / "dating-v1" / "adr"  # schema-1 records: dating was v1
    assert len(list((dest / "runs").glob("*.json"))) == 3
    index = (root / "README.md").read_text()
    assert "| cuda-nvidia-h100-80gb-hbm3-79gb | dating-v1 | [adr]" in index
    again = run_cli("publish", "--add", str(out), "--job", "adr", "--results", str(root))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_report_publish_compare_and_the_site_report_the_same_runs_of_a_rate_grid(tmp_path):
    """One arm run at two learning rates in a folder that no sweep manifest marks (two `run`
    commands, say): every reader of the folder reports the same runs, the chosen rate only
    (sweep.reported). Before, compare chose a rate while the index and the site averaged both."""
    from harness import results, sweep
    from harness.report import compare, site
    root = tmp_path / "results"
    plain = root / "cuda-a" / "dating-v2" / "adr"
    tuned = root / "cuda-b" / "dating-v2" / "adr"
    shutil.copytree(FIXTURES / "compare-gpu", plain)
    record, chosen_s = _copy_with_a_losing_rate(tuned)
    assert jobfile.read(tuned) is None  # no manifest: the records alone say "rate grid"

    everything = results.load_runs(tuned)
    assert sweep.is_sweep(everything, tuned)  # so `report` writes the sweep's tables for it
    jobs = {j.folder: j for j in catalog.published_jobs(root)}
    _, by_label, left_out = compare.load_machine(tuned)
    ids = sorted(r["run_id"] for r in jobs[tuned].records)
    assert ids == sorted(r["run_id"] for rs in by_label.values() for r in rs) == sorted(
        r["run_id"] for r in sweep.selected(everything))
    assert record["run_id"] not in ids and left_out == jobs[tuned].left_out == 1 and jobs[plain].left_out == 0

    page = site.hardware_page(list(jobs.values()), root)
    assert f"{compare.TUNED_NOTE}1 in all." in page
    assert f"<td>{chosen_s:.4g}</td>" in page and f"<td>{2 * chosen_s:.4g}</td>" not in page  # not (1 + 3) / 2


def test_readme_claims_about_the_v1_sweep_match_its_generated_table():
    """README: the earlier claim that LoRA r=64 beat standard significantly does not survive the
    clustered statistics (66 independent pairs under 500 rows)."""
    sweep_md = (RESULTS / "cpu-amd-epyc-2c" / "dating-v1" / "sweep" / "sweep.md").read_text()
    row = next(line for line in sweep_md.splitlines() if line.startswith("| lora r=64"))
    assert "(inconclusive" in row and "500 / 66" in row
    assert "does not survive" in (REPO / "README.md").read_text()


def test_reproduce_command_of_a_method_sweep_names_methods_ranks_and_precisions():
    from harness import sweep
    from harness.report import publish
    specs = sweep.sweep_specs(dataset="dating", ranks=[8, 16], seeds=[0, 1], method_names=["lora", "ia3"],
                              precisions=["fp32", "bf16"], overrides=["eval_every_steps=50"])
    records = [{"schema_version": 3, "method": s.arm, "spec": s.to_dict()} for s in specs]
    assert publish.reproduce_command(records, "methods") == (
        "python -m harness sweep --dataset dating --methods lora,ia3 --ranks 8,16 --precisions fp32,bf16 "
        "--seeds 0,1 --out out/dating-methods")
    lora_only = [r for r in records if r["method"] != "ia3" and r["spec"]["precision"] == "fp32"]
    assert publish.reproduce_command(lora_only, "sweep") == (
        "python -m harness sweep --dataset dating --ranks 8,16 --seeds 0,1 --out out/dating-sweep")
    # bf16 on LoRA r=8 only, beside both methods at both ranks in fp32: two sweeps into one folder
    fewer = [r for r in records if r["spec"]["precision"] == "fp32" or r["method"] in ("baseline", "standard")
             or (r["method"] == "lora" and r["spec"]["lora"]["r"] == 8)]
    assert publish.reproduce_command(fewer, "methods") == (
        "python -m harness sweep --dataset dating --methods lora,ia3 --ranks 8,16 --seeds 0,1 --out out/dating-methods"
        " && python -m harness sweep --dataset dating --ranks 8 --precisions bf16 --seeds 0,1 --out out/dating-methods")
    # a precision with only the reference arm run so far goes with the first sweep
    early = [r for r in fewer if r["spec"]["precision"] == "fp32" or r["method"] != "lora"]
    assert publish.reproduce_command(early, "methods") == (
        "python -m harness sweep --dataset dating --methods lora,ia3 --ranks 8,16 --precisions fp32,bf16 "
        "--seeds 0,1 --out out/dating-methods")


def test_reproduce_command_of_a_tuned_sweep_copies_how_its_learning_rate_was_tuned_from_the_manifest():
    """The records cannot tell a sweep tuned on a learning-rate grid from one at the default rate; the
    job manifest's latest sweep command can. Its --out (a path on the machine that ran it) is not
    copied, and an earlier command's options give way to the latest's."""
    from harness import sweep
    from harness.report import publish
    specs = sweep.sweep_specs(dataset="dating", ranks=[8], seeds=[0], method_names=["lora"],
                              overrides=["eval_every_steps=50"])
    records = [{"schema_version": 3, "method": s.arm, "spec": s.to_dict()} for s in specs]
    manifest = {"kinds": ["sweep"], "commands": [
        {"kind": "sweep", "command": "python -m harness sweep --lr-grid registry --lr-extend 2 --out /a/b"},
        {"kind": "run", "command": "python -m harness run --arms lora --out /a/b"},
        {"kind": "sweep", "command": "python -m harness sweep --methods all --lr-grid=registry "
                                     "--targets 'query,value' --lr-extend 4 --out /root/jobs/methods"}]}
    assert publish.reproduce_command(records, "sweep", manifest) == (
        "python -m harness sweep --dataset dating --ranks 8 --targets query,value --lr-grid registry "
        "--lr-extend 4 --lr-select first-seed --seeds 0 --out out/dating-sweep")  # no rule recorded: the old one
    untuned = {"kinds": ["sweep"], "commands": [{"kind": "sweep", "command": "python -m harness sweep --out x"}]}
    assert publish.reproduce_command(records, "sweep", untuned) == publish.reproduce_command(records, "sweep")
    abbreviated = {"kinds": ["sweep"], "commands": [  # argparse takes a unique prefix; so does the copy
        {"kind": "sweep", "command": "python -m harness sweep --lr-g registry --lr-ext 4 --out x"}]}
    assert publish.reproduce_command(records, "sweep", abbreviated) == (
        "python -m harness sweep --dataset dating --ranks 8 --lr-grid registry --lr-extend 4 "
        "--lr-select first-seed --seeds 0 --out out/dating-sweep")
    unreadable = {"kinds": ["sweep"], "commands": [{"kind": "sweep", "command": "python -m harness sweep --ranks"}]}
    with pytest.warns(UserWarning, match=r"cannot read the sweep command .*--ranks: expected one argument"):
        assert publish.reproduce_command(records, "sweep", unreadable) == publish.reproduce_command(records, "sweep")
    foreign = {"kinds": ["sweep"],
               "commands": [{"kind": "sweep", "command": "lora-bench sweep --lr-grid registry"}]}
    with pytest.warns(UserWarning, match=r"cannot read .*does not start with 'python -m harness'"):
        assert publish.reproduce_command(records, "sweep", foreign) == publish.reproduce_command(records, "sweep")


def test_the_job_manifest_records_a_command_that_publish_reads_back(tmp_path):
    """jobfile.write and publish share one prefix (jobfile.CLI); a sweep recorded by the one is read by
    the other with its learning-rate options intact."""
    from harness import sweep
    from harness.report import publish
    argv = ["sweep", "--lr-grid", "registry", "--lr-extend", "3", "--out", "x y"]
    jobfile.write(tmp_path, kind="sweep", argv=argv)
    manifest = jobfile.read(tmp_path)
    assert manifest["commands"][-1]["command"].startswith(jobfile.CLI + " sweep ")
    specs = sweep.sweep_specs(dataset="dating", ranks=[8], seeds=[0], method_names=["lora"])
    records = [{"schema_version": 3, "method": s.arm, "spec": s.to_dict()} for s in specs]
    assert "--lr-grid registry --lr-extend 3 " in publish.reproduce_command(records, "sweep", manifest)


def test_publish_reads_a_sweeps_stored_options_not_its_command_line(tmp_path):
    """A sweep stores its options as a table in its job.json entry; publish builds the reproduce command
    from that table (the command line is not parsed: here it could not be), and a stored value that is
    not a string or a number is left out with one warning."""
    from harness import sweep
    from harness.report import publish
    jobfile.write(tmp_path, kind="sweep", argv=["sweep", "--lr-grid=registry"],
                  options={"lr_grid": "registry", "lr_extend": 2, "targets": None, "alpha_policy": "r"})
    manifest = jobfile.read(tmp_path)
    assert manifest["commands"][-1]["options"] == {"lr_grid": "registry", "lr_extend": 2, "alpha_policy": "r"}
    manifest["commands"][-1]["command"] = "not a command line at all"
    specs = sweep.sweep_specs(dataset="dating", ranks=[8], seeds=[0], method_names=["lora"])
    records = [{"schema_version": 3, "method": s.arm, "spec": s.to_dict()} for s in specs]
    command = publish.reproduce_command(records, "sweep", manifest)
    assert " --alpha-policy r --lr-grid registry --lr-extend 2 " in command
    manifest["commands"][-1]["options"]["lr_extend"] = [2]
    with pytest.warns(UserWarning, match=r"stored option\(s\) lr_extend are not strings or numbers"):
        command = publish.reproduce_command(records, "sweep", manifest)
    assert "--lr-grid registry " in command and "--lr-extend" not in command


def test_the_published_method_study_says_how_to_reproduce_its_learning_rate_tuning():
    readme = (RESULTS / "README.md").read_text()
    section = readme.split("### cpu-amd-epyc-2c / dating-v2 / methods-v1", 1)[1].split("###", 1)[0]
    assert "--lr-grid registry --lr-extend 4" in section


def test_a_tuned_sweep_of_one_rank_and_seed_is_published_at_its_chosen_rate_everywhere(tmp_path):
    """A sweep tuned on a learning-rate grid at one rank and one seed (one rank and one seed look like
    a single run job; its rate grid and its manifest both say sweep). The index, the ADR page and the
    site read the same runs (catalog.published_records): each point at its chosen rate, not a mean
    over the grid."""
    from harness import results, sweep
    source = RESULTS / "cpu-amd-epyc-2c" / "dating-v2" / "methods-v1"
    job = tmp_path / "cpu-amd-epyc-2c" / "dating-v2" / "methods-v1"
    (job / "runs").mkdir(parents=True)
    shutil.copy(source / "job.json", job / "job.json")
    for name in ("baseline-dating-s0-*.json", "standard-dating-s0-*.json", "lora-r8-dating-s0-*.json"):
        for f in (source / "runs").glob(name):  # fp32 only: one variant per arm
            if json.loads(f.read_text())["spec"].get("precision", "fp32") == "fp32":
                shutil.copy(f, job / "runs" / f.name)
    everything = [r for r in results.load_runs(job) if r["status"] == "success"]
    lora = [r for r in everything if r["method"] == "lora"]
    assert len({r["spec"]["learning_rate"] for r in lora}) > 1  # a grid, or the test proves nothing
    assert sweep.is_sweep(everything)  # its records alone say so: one arm at several rates
    chosen = catalog.published_records(job)
    assert chosen == sweep.selected(everything)
    [lora_chosen] = [r for r in chosen if r["method"] == "lora"]
    row = next(line for line in publish.index_markdown(tmp_path).splitlines() if "[methods-v1]" in line)
    assert f"| {lora_chosen['quality']['spearman']:.3f} | lora r=8 |" in row


def test_fp32_training_on_the_two_amd_cpu_models_agrees_as_provenance_says():
    """The AMD study's PROVENANCE.md says that one fp32 run, rerun on a Zen 3 host that shows the same CPU
    name as the Zen 5 the study ran on, agrees to about the sixth digit and not bit for bit: the figures
    behind that sentence, from the two committed files."""
    study = RESULTS / "cpu-amd-epyc-2c" / "dating-v2" / "methods"
    name = "lora-r16-dating-s0-0017d124cb.json"
    there, here = (json.loads(p.read_text()) for p in (study / "runs" / name, study / "checks" / "fp32-on-zen3" / name))
    assert there["spec_hash"] == here["spec_hash"] and here["spec"]["precision"] == "fp32"
    assert here["quality"]["spearman"] == there["quality"]["spearman"]
    gap = abs(here["quality"]["validation_spearman"] - there["quality"]["validation_spearman"])
    curves = here["training"]["loss_history"], there["training"]["loss_history"]
    losses = [abs(a - b) for a, b in zip(*curves, strict=True)]
    assert 0 < gap < 1e-5 and 0 < max(losses) < 1e-6
    assert "checks/fp32-on-zen3/" in (study / "PROVENANCE.md").read_text()


def test_the_commit_that_resumed_the_amd_study_trains_as_the_earlier_check_on_the_same_cpu_model():
    """PROVENANCE.md says that the commit the AMD study's last runs came from (3f7d507, on the Zen 3 host)
    trains the check's spec bit for bit as 562b230 did on that host: the same losses, validation curve and
    test similarities, from the two committed files; the later one names the CPU model in its record."""
    checks = RESULTS / "cpu-amd-epyc-2c" / "dating-v2" / "methods" / "checks"
    name = "lora-r16-dating-s0-0017d124cb.json"
    before, after = (json.loads((checks / folder / name).read_text())
                     for folder in ("fp32-on-zen3", "commit-3f7d507-on-zen3"))
    assert before["environment"]["git_commit"].startswith("562b230") and after["environment"]["git_commit"].startswith(
        "3f7d507")
    assert (after["environment"]["cpu_family"], after["environment"]["cpu_model_number"]) == ("25", "1")
    for path in ("loss_history", "train_loss"):
        assert after["training"][path] == before["training"][path]
    curves = ([(p["step"], p["val_spearman"]) for p in r["training"]["validation_curve"]] for r in (before, after))
    assert next(curves) == next(curves)
    assert after["quality"]["test_cos"] == before["quality"]["test_cos"]
    assert after["quality"]["validation_spearman"] == before["quality"]["validation_spearman"]


def test_a_copy_that_the_file_system_refuses_leaves_no_folder_behind(tmp_path):
    # the fuzz run of 2026-12-07: `publish --add --job <300 characters>` failed on the job folder's name
    # and left the results root and its hardware and dataset folders behind
    import errno

    from harness import files
    src = tmp_path / "src"
    (src / "runs").mkdir(parents=True)
    (src / "runs" / "a.json").write_text("{}")
    root = tmp_path / "results"
    with pytest.raises(OSError) as caught:
        files.copy_tree_new(src, root / "hw" / "data" / ("x" * 300))
    assert caught.value.errno == errno.ENAMETOOLONG and not root.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(OSError):
        files.copy_tree_new(src, kept / "hw" / ("x" * 300))
    assert kept.is_dir() and list(kept.iterdir()) == []  # what existed before stays
    assert (files.copy_tree_new(src, root / "hw" / "job") / "runs" / "a.json").read_text() == "{}"


def test_the_step_times_that_provenance_quotes_for_the_two_amd_cpu_models_are_the_run_files():
    """The AMD study's PROVENANCE.md compares the two CPU models that show the name "AMD EPYC" by step
    medians it quotes in prose: LoRA r=16 fp32 on each (and their ratio), LoRA+ bf16 on the family 26 host.
    Each figure, computed here from the run files and formatted as the prose gives it, is in the text."""
    study = RESULTS / "cpu-amd-epyc-2c" / "dating-v2" / "methods"
    text = " ".join((study / "PROVENANCE.md").read_text().split())
    steps: dict[tuple, list[float]] = {}
    for path in (study / "runs").glob("*.json"):
        record = json.loads(path.read_text())
        spec, env = record["spec"], record["environment"]
        if record["status"] == "success":
            key = (spec["arm"], (spec.get("lora") or {}).get("r"), spec["precision"], env.get("cpu_family") or "26")
            steps.setdefault(key, []).append(record["timings"]["step_s_median"])
    zen3, zen5 = sorted(steps["lora", 16, "fp32", "25"]), sorted(steps["lora", 16, "fp32", "26"])
    words = {2: "two", 7: "seven", 8: "eight"}
    assert f"{zen3[0]:.2f} and {zen3[1]:.2f} s on the family 25 host" in text and len(zen3) == 2
    assert (f"against {zen5[0]:.3f}-{zen5[-1]:.3f} s on the family 26 host (its {words[len(zen5)]} LoRA fp32 "
            "runs)") in text
    assert f"{zen3[0] / zen5[-1]:.1f} to {zen3[-1] / zen5[0]:.1f} times as long" in text
    plus = sorted(steps["loraplus", 16, "bf16", "26"])
    assert f"{plus[0]:.3f}-{plus[-1]:.3f} s for the {words[len(plus)]} LoRA+ bf16 runs on the family 26 host" in text
    assert ("loraplus", 16, "bf16", "25") not in steps  # the stopped run left no file
