"""Sweep specs, learning-rate choice, merge equality, and a killed sweep that resumes."""

import csv
import json
import math
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import jobfile, sweep, tuning
from harness.report import sweep_table, variants
from harness.spec import SpecError
from tests.conftest import REPO, TINY_ARGS, repo_env, run_cli


def test_sweep_specs_hold_references_and_every_rank():
    specs = sweep.sweep_specs(dataset="dating", ranks=[1, 4, 16], seeds=[0, 1])
    arms = [(s.arm, s.lora.r if s.lora else None, s.seed) for s in specs]
    assert arms.count(("baseline", None, 0)) == 1 and arms.count(("standard", None, 1)) == 1
    assert {(r, seed) for a, r, seed in arms if a == "lora"} == {(r, s) for r in (1, 4, 16) for s in (0, 1)}
    lora = [s for s in specs if s.lora]
    assert all(s.lora.alpha == 2 * s.lora.r for s in lora)  # the 2r policy
    std = next(s for s in specs if s.arm == "standard" and s.seed == 0)
    for s in lora:  # matched: only the declared fields differ from standard
        a, b = std.to_dict(), s.to_dict()
        assert {k for k in a if a[k] != b[k]} <= {"arm", "learning_rate", "lora", "seed"}


def test_alpha_policy_targets_and_bad_options():
    specs = sweep.sweep_specs(dataset="dating", ranks=[2, 8], seeds=[0], alpha_policy="fixed:16",
                              targets=("query", "key", "value", "dense"))
    lora = [s.lora for s in specs if s.lora]
    assert [lo.alpha for lo in lora] == [16.0, 16.0]
    assert lora[0].target_modules == ("query", "key", "value", "dense")
    with pytest.raises(SpecError, match="alpha-policy"):
        sweep.alpha_for(4, "3r")
    with pytest.raises(SpecError, match="ranks"):
        sweep.parse_ints("4,0", name="ranks", minimum=1)
    with pytest.raises(SpecError, match="lr-grid"):
        sweep.parse_lr_grid("baseline=1e-4")


def test_lr_grid_runs_on_the_first_seed_and_the_best_validation_rate_is_chosen():
    grid = sweep.parse_lr_grid("standard=1e-5,2e-5;lora=1e-4,2e-4,5e-4")
    specs = sweep.sweep_specs(dataset="dating", ranks=[8], seeds=[0, 1], lr_grid=grid)
    trained = [s for s in specs if s.arm != "baseline"]
    assert all(s.seed == 0 for s in trained) and len(trained) == 2 + 3

    def record(spec, val):
        return {"status": "success", "method": spec.arm, "spec": spec.to_dict(),
                "quality": {"validation_spearman": val}}
    records = [record(s, {1e-5: 0.3, 2e-5: 0.5, 1e-4: 0.2, 2e-4: 0.6, 5e-4: 0.4}[s.learning_rate]) for s in trained]
    assert sweep.chosen_rates(records) == {"standard": 2e-5, "lora r=8": 2e-4}
    assert sweep.grid_edges(records) == {"standard": "top of grid"}  # lora's 2e-4 lies inside its grid
    low = [record(s, 0.9 if s.learning_rate in (1e-5, 1e-4) else 0.1) for s in trained]
    assert sweep.grid_edges(low) == {"standard": "bottom of grid", "lora r=8": "bottom of grid"}
    later = sweep.second_phase(specs, records, [0, 1])
    assert [(s.arm, s.seed, s.learning_rate) for s in later] == [("standard", 1, 2e-5), ("lora", 1, 2e-4)]
    assert len(sweep.selected(records)) == 2


def test_a_grid_that_is_not_finished_is_marked_with_the_rates_run_not_as_a_choice():
    """The manifest's grids (what the command asked for) against the records (what ran): a point that has
    run 1 of its 3 rates is marked so, whatever its one rate scored; a finished grid keeps its edge mark;
    a point with one fixed rate (no grid for its method) is complete after one run."""
    grid = sweep.parse_lr_grid("lora=1e-4,2e-4,5e-4")  # standard stays at its one default rate
    specs = sweep.sweep_specs(dataset="dating", ranks=[8], seeds=[0, 1], lr_grid=grid)
    planned = sweep.planned_grids(specs)
    std_rate = next(s.learning_rate for s in specs if s.arm == "standard")
    assert planned == {"standard": [std_rate], "lora r=8": [1e-4, 2e-4, 5e-4]}

    def record(spec, val):
        return {"status": "success", "method": spec.arm, "spec": spec.to_dict(),
                "quality": {"validation_spearman": val}}
    trained = [s for s in specs if s.arm != "baseline"]
    records = [record(s, s.learning_rate * 1000) for s in trained if s.learning_rate in (std_rate, 1e-4)]
    assert sweep.grid_edges(records, planned) == {"lora r=8": "1 of 3 rates run"}
    assert sweep.grid_edges(records) == {}  # without the manifest a single rate looks like a choice
    records += [record(s, s.learning_rate * 1000) for s in trained if s.learning_rate in (2e-4, 5e-4)]
    assert sweep.grid_edges(records, planned) == sweep.grid_edges(records) == {"lora r=8": "top of grid"}
    row = {"learning_rate": 1e-4, "lr_grid_edge": sweep.grid_edges(records[:2], planned)["lora r=8"]}
    assert sweep_table._cell(row, "learning_rate") == "0.0001 (1 of 3 rates run)"  # the table cell


def test_the_manifest_keeps_the_union_of_the_grids_asked_for_and_ignores_a_bad_one(tmp_path):
    jobfile.write(tmp_path, kind="sweep", argv=["sweep"], lr_grids={"lora r=8": [1e-4, 2e-4]})
    jobfile.write(tmp_path, kind="sweep", argv=["sweep"], lr_grids={"lora r=8": [2e-4, 5e-4],
                                                                             "ia3": [1e-3]})
    jobfile.write(tmp_path, kind="run", argv=["run"])  # a command without grids keeps them
    manifest = json.loads((tmp_path / "job.json").read_text())
    assert len(manifest["commands"]) == 3
    assert jobfile.grids(tmp_path) == {"lora r=8": [1e-4, 2e-4, 5e-4], "ia3": [1e-3]}
    manifest["lr_grids"]["ia3"] = "fast"
    (tmp_path / "job.json").write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match=r"lr_grids\['ia3'\] = 'fast' is not a list of rates"):
        assert jobfile.grids(tmp_path) == {"lora r=8": [1e-4, 2e-4, 5e-4]}


def test_a_grid_whose_end_wins_extends_one_step_past_it_until_the_choice_is_inside():
    grid = sweep.parse_lr_grid("standard=1e-5,2e-5;lora=1e-4,2e-4,5e-4")
    specs = sweep.sweep_specs(dataset="dating", ranks=[8], seeds=[0, 1], lr_grid=grid)

    def record(spec, val, status="success"):
        return {"status": status, "method": spec.arm, "spec": spec.to_dict(),
                "quality": {"validation_spearman": val}}
    trained = [s for s in specs if s.arm != "baseline"]
    records = [record(s, s.learning_rate * 1000) for s in trained]  # the highest rate wins everywhere
    more = sweep.extend_grid(specs, records)
    assert [(s.arm, s.seed, s.learning_rate) for s in more] == [("standard", 0, 4e-5), ("lora", 0, 1.25e-3)]
    for s, t in zip(more, (trained[0], trained[2]), strict=True):  # only the rate changed
        a, b = s.to_dict(), t.to_dict()
        assert {k for k in a if a[k] != b[k]} == {"learning_rate"}
    killed = {**record(more[1], None, status="failed"), "error": {"reason": "crash"}}
    assert sweep.extend_grid(specs, [*records, killed]) == more  # a killed run says nothing of its rate
    diverged = {**killed, "error": {"reason": "diverged"}}
    records += [record(more[0], 0.0), diverged]  # worse, or diverged: both were tried
    assert sweep.extend_grid(specs, records) == [] and sweep.grid_edges(records) == {}
    assert sweep.chosen_rates(records) == {"standard": 2e-5, "lora r=8": 5e-4}
    later = sweep.second_phase(specs, records, [0, 1])
    assert [(s.arm, s.seed, s.learning_rate) for s in later] == [("standard", 1, 2e-5), ("lora", 1, 5e-4)]


# LoRA's validation Spearman by rate: seed 0 prefers 2e-4 (inside the grid), seeds 1-2 prefer higher rates
# up to 1.25e-3 (one step past the grid's top), and 3.13e-3 collapses. Standard's best, 2e-5, is inside.
# 1.88e-3 is the headroom probe of 1.25e-3 (1.5 times it): stable, below it on the mean.
_LORA = {0: {1e-4: 0.30, 2e-4: 0.45, 5e-4: 0.44, 1.25e-3: 0.445, 1.88e-3: 0.43, 3.13e-3: 0.05},
         1: {1e-4: 0.30, 2e-4: 0.40, 5e-4: 0.50, 1.25e-3: 0.52, 1.88e-3: 0.50, 3.13e-3: 0.05}}


def _phases(limit: int):
    """run_phases on a three-seed mean-rule sweep whose runs score by the table above (seed 2 as seed 1):
    the phase logic alone, from records of known figures; the runner is tested with real workers below."""
    grid = sweep.parse_lr_grid("standard=1e-5,2e-5,5e-5;lora=1e-4,2e-4,5e-4")
    specs = sweep.sweep_specs(dataset="dating", ranks=[8], seeds=[0, 1, 2], lr_grid=grid)
    ran, log = [], []

    def run(batch):
        out = []
        for spec in batch:
            assert spec.to_dict() not in [r["spec"] for r in ran], f"{spec.label} at {spec.learning_rate} twice"
            table = {1e-5: 0.2, 2e-5: 0.4, 5e-5: 0.3} if spec.arm == "standard" else _LORA[min(spec.seed, 1)]
            val = -0.4 if spec.arm == "baseline" else table[spec.learning_rate]
            out.append({"status": "success", "method": spec.arm, "spec": spec.to_dict(),
                        "quality": {"validation_spearman": val}})
        ran.extend(out)
        return out
    records = sweep.run_phases(specs, run, seeds=[0, 1, 2], grid=grid, extend=limit,
                               selection=tuning.Selection("mean", (0, 1, 2)), log=log.append)
    lora = [(r["spec"]["seed"], r["spec"]["learning_rate"]) for r in ran if r["method"] == "lora"]
    return records, lora, log


def test_a_rate_that_wins_on_the_mean_over_seeds_at_an_end_of_the_grid_is_extended_and_screened():
    """Seed 0 alone never extends LoRA's grid (its best, 2e-4, is inside), but the mean over seeds 0-2
    chooses 5e-4, the grid's top: without a step past it the study would report a rate whose better
    neighbour was never tried (LoRA+ in dating-v2/methods). The step runs on seed 0, joins the screening
    where it is among seed 0's best two, wins the mean, is extended again, and the collapse stops it; the
    winner, one step below the collapse, keeps its place once 1.5 times it proves stable on every seed."""
    records, lora, log = _phases(4)
    assert lora == [(0, 1e-4), (0, 2e-4), (0, 5e-4),  # the grid on seed 0
                    (1, 2e-4), (2, 2e-4), (1, 5e-4), (2, 5e-4),  # screening: seed 0's best two
                    (0, 1.25e-3),  # the mean's choice, 5e-4, is the top: one step past it, on seed 0
                    (1, 1.25e-3), (2, 1.25e-3),  # now among seed 0's best two: screened
                    (0, 3.13e-3),  # the mean's choice is the top again; this step collapses
                    (0, 1.88e-3), (1, 1.88e-3), (2, 1.88e-3)]  # 1.25e-3's headroom, stable: it stays
    assert sweep.chosen_rates(records, tuning.Selection("mean", (0, 1, 2))) == {
        "standard": 2e-5, "lora r=8": 1.25e-3}
    assert any("by the mean rule at an end of the grid" in line for line in log)
    # --lr-extend bounds the steps past the planned grid (both ends together), whichever rule chose the end
    _, lora, _ = _phases(1)
    assert lora[-3:] == [(0, 1.25e-3), (1, 1.25e-3), (2, 1.25e-3)]
    _, lora, _ = _phases(0)
    assert lora[-1] == (2, 5e-4) and len(lora) == 7


@settings(max_examples=60, deadline=None)
@given(peak=st.floats(-4.5, -2.0), width=st.floats(0.2, 2.0), collapse=st.floats(-3.69, -1.0),
       shifts=st.lists(st.floats(-0.6, 0.6), min_size=3, max_size=3), noise=st.integers(0, 2**16),
       limit=st.integers(0, 4))
def test_the_phases_on_any_validation_landscape_keep_their_promises(peak, width, collapse, shifts, noise, limit):
    """run_phases on generated landscapes: LoRA's validation Spearman (0.2 to 0.6) peaks at a rate
    10**peak that may lie inside, below or above the grid, shifted per seed in log-rate (seeds that
    prefer other rates), with seed-and-rate noise, and collapses to -0.05 above 10**collapse (never
    below the grid's second rate, so that some rate trains). Whatever the landscape: no spec
    runs twice, the phases end, a later seed runs only rates that seed 0 ran, the steps past the grid
    stay within --lr-extend, the chosen rate ran on every seed and is stable, and where it is an end of
    the rates tried, the bound was the reason the grid stopped there (or the step past it was tried).
    And the tables agree with the phases: a table made before any run the sweep still makes marks the
    variant's grid unfinished (no Δ for its rate), and the table of the finished sweep does not."""
    grid = sweep.parse_lr_grid("lora=1e-4,2e-4,5e-4")
    specs = [s for s in sweep.sweep_specs(dataset="dating", ranks=[8], seeds=[0, 1, 2], lr_grid=grid)
             if s.arm != "standard"]
    planned = sweep.planned_grids(specs)
    selection = tuning.Selection("mean", (0, 1, 2))
    ran: list[dict] = []

    def score(seed: int, rate: float) -> float:
        if math.log10(rate) > collapse:
            return -0.05
        jitter = np.random.default_rng([noise, seed, int(round(rate * 1e9))]).normal(0, 0.01)
        return 0.2 + 0.4 * math.exp(-(((math.log10(rate) - peak - shifts[seed]) / width) ** 2)) + jitter

    def run(batch):
        out = []
        if any(r["method"] == "lora" for r in ran) and any(spec.arm == "lora" for spec in batch):
            edge = sweep.grid_edges(ran, planned, selection, limit).get("lora r=8")
            assert sweep.grid_unfinished(edge), (edge, [(s.seed, s.learning_rate) for s in batch])
        for spec in batch:
            assert spec.to_dict() not in [r["spec"] for r in ran], f"{spec.label} at {spec.learning_rate} twice"
            val = -0.4 if spec.arm == "baseline" else score(spec.seed, spec.learning_rate)
            out.append({"status": "success", "method": spec.arm, "spec": spec.to_dict(),
                        "quality": {"validation_spearman": val}})
        ran.extend(out)
        assert len(ran) < 200, "the phases did not end"
        return out
    records = sweep.run_phases(specs, run, seeds=[0, 1, 2], grid=grid, extend=limit, selection=selection,
                               log=lambda line: None)
    lora = [(r["spec"]["seed"], r["spec"]["learning_rate"]) for r in ran if r["method"] == "lora"]
    first = sorted(rate for seed, rate in lora if seed == 0)
    assert {rate for seed, rate in lora if seed > 0} <= set(first)
    assert sweep._steps_past(first, grid["lora"]) <= limit
    chosen = sweep.chosen_rates(records, selection)
    if "lora r=8" in chosen:
        rate = chosen["lora r=8"]
        assert {seed for seed, r in lora if r == rate} == {0, 1, 2}
        assert math.log10(rate) <= collapse
        assert not sweep.grid_unfinished(sweep.grid_edges(records, planned, selection, limit).get("lora r=8"))
        if sweep.grid_edges(records, selection=selection).get("lora r=8") in sweep.ENDS:
            step = first[-1] * first[-1] / first[-2] if rate == first[-1] else first[0] * first[0] / first[1]
            assert (sweep._steps_past(first, grid["lora"]) == limit
                    or any(math.isclose(float(f"{step:.3g}"), r, rel_tol=1e-9) for r in first)), (lora, rate)


def test_extend_grid_reads_the_rule_only_when_given_it():
    grid = sweep.parse_lr_grid("standard=1e-5,2e-5;lora=1e-4,2e-4,5e-4")
    specs = sweep.sweep_specs(dataset="dating", ranks=[8], seeds=[0, 1, 2], lr_grid=grid)
    records = []
    for seed in (0, 1, 2):
        for spec in specs:
            if spec.arm == "lora" and (seed == 0 or spec.learning_rate >= 2e-4):
                rec = {**spec.to_dict(), "seed": seed}
                val = _LORA[min(seed, 1)][spec.learning_rate]
                records.append({"status": "success", "method": "lora", "spec": rec,
                                "quality": {"validation_spearman": val}})
    assert sweep.extend_grid(specs, records) == []  # seed 0's best is inside the grid
    mean = tuning.Selection("mean", (0, 1, 2))
    (more,) = sweep.extend_grid(specs, records, mean)
    assert (more.arm, more.seed, more.learning_rate) == ("lora", 0, 1.25e-3)
    assert sweep.extend_grid(specs, records, mean, limit=4) == [more]
    step = {**records[0], "spec": {**records[0]["spec"], "learning_rate": 1.25e-3},
            "quality": {"validation_spearman": 0.5}}  # seed 0's best now: the new top wins on seed 0
    (again,) = sweep.extend_grid(specs, [*records, step], mean)
    assert again.learning_rate == 3.13e-3
    assert sweep.extend_grid(specs, [*records, step], mean, limit=1) == []  # one step past already


def test_methods_and_precisions_span_the_sweep_and_ia3_runs_once():
    """--methods lora,ia3 --ranks 4,16 --precisions fp32,bf16 --seeds 0,1: standard and every method in
    each precision, LoRA at each rank, IA3 (no rank) once; the published sweep's hashes are those of
    the default (lora, the spec's own precision)."""
    specs = sweep.sweep_specs(dataset="dating", ranks=[4, 16], seeds=[0, 1], method_names=["lora", "ia3"],
                              precisions=["fp32", "bf16"])
    labels = [s.label for s in specs]
    per_seed = ["standard", "lora r=4", "lora r=16", "ia3", "standard bf16", "lora r=4 bf16", "lora r=16 bf16",
                "ia3 bf16"]
    assert labels == ["baseline", "baseline", *per_seed, *per_seed]
    assert len({s.run_id for s in specs}) == len(specs)
    ia3 = [s for s in specs if s.arm == "ia3"]
    assert {s.learning_rate for s in ia3} == {5e-3} and {s.lora.r for s in ia3} == {8}
    default = sweep.sweep_specs(dataset="dating", ranks=[4], seeds=[0])
    assert default == sweep.sweep_specs(dataset="dating", ranks=[4], seeds=[0], method_names=["lora"],
                                        precisions=["fp32"])


def test_method_lists_and_registry_lr_grids():
    assert sweep.parse_methods("all") == ["lora", "dora", "rslora", "pissa", "loraplus", "ia3", "loha", "lokr",
                                          "vera", "adalora"]
    for bad, match in (("lora,lora", "more than once"), ("standard", "not an adapter method"),
                       ("lorra", "lorra: not an adapter method"), (",", "none given")):
        with pytest.raises(SpecError, match=match):
            sweep.parse_methods(bad)
    with pytest.raises(SpecError, match="precisions"):
        sweep.parse_precisions("fp32,fp8")
    grid = sweep.parse_lr_grid("registry", ["lora", "ia3"])
    assert grid == {"standard": [1e-5, 2e-5, 5e-5], "lora": [1e-4, 2e-4, 5e-4], "ia3": [1e-3, 5e-3, 2e-2]}
    assert sweep.parse_lr_grid("dora=1e-4") == {"dora": [1e-4]}


def test_killed_sweep_resumes_without_redoing_finished_runs(tmp_path, harness_cache):
    out = tmp_path / "out"
    args = ["sweep", "--ranks", "1,4", "--seeds", "0,1", "--eval-every", "2", "--out", str(out), *TINY_ARGS]
    env = repo_env()
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(list((out / "runs").glob("*.json"))) < 3 and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # a hard kill: no cleanup in the parent at all
    proc.wait()
    done = {p.name: p.read_text() for p in (out / "runs").glob("*.json")}
    assert 3 <= len(done) < 8

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("kept existing success result") == len(done)
    files = {p.name: p.read_text() for p in (out / "runs").glob("*.json")}
    assert len(files) == 8  # 2 baselines, 2 standard, 4 LoRA: nothing lost, nothing duplicated
    assert all(files[name] == text for name, text in done.items())
    for name in ("sweep.md", "sweep.csv", "plots/rank_vs_quality.png", "plots/rank_vs_cost.svg",
                 "plots/pareto.csv", "plots/time_to_quality.png"):
        assert (out / name).exists(), name
    rows = {r["point"]: r for r in variants.point_rows([json.loads(t) for t in files.values()])}
    assert rows["lora r=4"]["seeds"] == 2 and rows["lora r=4"]["spearman_lo"] is not None
    assert rows["lora r=4"]["merge_max_abs_diff"] <= 1e-5
    assert np.isfinite(rows["lora r=1"]["vs_standard_p"])


def test_an_extended_grid_and_its_second_seed_resume_without_rerunning(tmp_path, harness_cache):
    """The real command: a two-rate grid always ends at an edge, so --lr-extend 1 adds one rate per point
    past the winning end; the second seed runs at the rate chosen among all three. Run again, the sweep
    keeps every record (the later runs too: their data fingerprints are those of the first phase)."""
    out = tmp_path / "out"
    args = ["sweep", "--ranks", "2", "--seeds", "0,1", "--lr-grid", "standard=1e-5,2e-5;lora=1e-4,2e-4",
            "--lr-extend", "1", "--lr-select", "first-seed", "--eval-every", "0", "--out", str(out), *TINY_ARGS]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "one step past it: standard at " in first.stdout
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert len(records) == 2 + 2 * 3 + 2  # baselines; 3 rates of standard and lora on seed 0; seed 1 of each
    rates = {(r["method"], r["spec"]["seed"]): set() for r in records}
    for r in records:
        rates[r["method"], r["spec"]["seed"]].add(r["spec"]["learning_rate"])
    assert rates["standard", 0] in ({5e-6, 1e-5, 2e-5}, {1e-5, 2e-5, 4e-5})
    assert rates["lora", 0] in ({5e-5, 1e-4, 2e-4}, {1e-4, 2e-4, 4e-4})
    chosen = sweep.chosen_rates(records)
    assert rates["standard", 1] == {chosen["standard"]} and rates["lora", 1] == {chosen["lora r=2"]}
    with (out / "sweep.csv").open() as f:  # the table marks an end of the grid as the records say
        marks = {r["point"]: r["lr_grid_edge"] for r in csv.DictReader(f) if r["point"] != "baseline"}
    assert marks == {p: sweep.grid_edges(records).get(p, "") for p in ("standard", "lora r=2")}
    manifest = json.loads((out / "job.json").read_text())  # the grids asked for, before any extension
    assert manifest["lr_grids"] == {"standard": [1e-5, 2e-5], "lora r=2": [1e-4, 2e-4]}

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("kept existing success result") == len(records)
    assert "running it again" not in again.stdout and " new] " not in again.stdout
    assert sorted(p.name for p in (out / "runs").glob("*.json")) == sorted(f"{r['run_id']}.json" for r in records)

    # a grid rate whose record is gone (a sweep stopped mid-grid): report marks the point, not a choice
    gone = next(r for r in records if r["method"] == "lora" and r["spec"]["seed"] == 0
                and r["spec"]["learning_rate"] != chosen["lora r=2"] and r["spec"]["learning_rate"] in (1e-4, 2e-4))
    (out / "runs" / f"{gone['run_id']}.json").unlink()
    report = run_cli("report", str(out))
    assert report.returncode == 0, report.stderr[-2000:]
    with (out / "sweep.csv").open() as f:
        marks = {r["point"]: r["lr_grid_edge"] for r in csv.DictReader(f)}
    assert marks["lora r=2"] == "1 of 2 rates run" and "(1 of 2 rates run)" in (out / "sweep.md").read_text()


def test_a_table_made_before_the_sweeps_last_extension_marks_it_unfinished():
    """The AMD method study's LoRA+ bf16: the mean rule chose 4e-4, the top of its rates, and the sweep's
    --lr-extend 4 allows a step past it, 8e-4, not run yet (it needs a CPU with native bf16). Its table says
    so ("extension unfinished: 0.0008 to run", so no Δ vs std), which is what the sweep would propose;
    without the manifest's --lr-extend it could only say "top of grid"."""
    from harness import results
    out = REPO / "results" / "cpu-amd-epyc-2c" / "dating-v2" / "methods"
    records, manifest = results.load_runs(out), jobfile.read(out)
    assert jobfile.extend_limit(out, manifest) == 4  # read from its command lines (no stored options then)
    selection, planned = sweep.job_selection(manifest=manifest), jobfile.grids(out, manifest)
    edges = sweep.grid_edges(records, planned, selection, 4)
    assert edges["loraplus r=16 bf16"] == "extension unfinished: 0.0008 to run"
    assert sweep.grid_unfinished(edges["loraplus r=16 bf16"])
    assert sweep.grid_edges(records, planned, selection)["loraplus r=16 bf16"] == "top of grid"
    # the other variants' grids are finished but for the headroom probes the mean rule asks since f869dd3
    others = [e for p, e in edges.items() if p != "loraplus r=16 bf16" and sweep.grid_unfinished(e)]
    assert others and all(e.startswith(sweep.SCREENING) and e.endswith(")") and "(the headroom of " in e
                          and e.count("needs") == 1 for e in others)
    assert sweep.pending_extensions(records, planned, selection, 4) == {"loraplus r=16 bf16": 8e-4}
    assert sweep.pending_extensions(records, planned, selection, 1) == {}  # 4e-4 is one step past its grid


def test_the_extension_limit_comes_from_the_latest_sweep_that_ran_with_a_grid(tmp_path):
    assert jobfile.extend_limit(tmp_path) is None  # no manifest
    jobfile.write(tmp_path, kind="sweep", argv=["sweep", "--lr-grid", "registry", "--lr-extend", "3"])
    assert jobfile.extend_limit(tmp_path) == 3
    jobfile.write(tmp_path, kind="sweep", argv=["sweep", "--lr-grid=registry", "--lr-ext=2"])  # as argparse reads it
    assert jobfile.extend_limit(tmp_path) == 2
    jobfile.write(tmp_path, kind="sweep", argv=["sweep"])  # no grid: nothing to extend
    assert jobfile.extend_limit(tmp_path) is None
    jobfile.write(tmp_path, kind="sweep", argv=["sweep"], options={"lr_grid": "registry", "lr_extend": 1})
    assert jobfile.extend_limit(tmp_path) == 1
    for bad in (-1, 1.5, "2", True):
        jobfile.write(tmp_path, kind="sweep", argv=["sweep"], options={"lr_grid": "registry", "lr_extend": bad})
        assert jobfile.extend_limit(tmp_path) is None


def test_a_stored_command_that_asks_for_help_reads_as_unreadable_and_prints_nothing(capsys):
    # the tables read the latest sweep command of job.json with the command line's parser: one that asks
    # for help must not print argparse's text into a report
    for flag in ("--help", "-h", "--he"):
        manifest = {"commands": [{"kind": "sweep", "command": f"python -m harness sweep --lr-grid registry {flag}"}]}
        with pytest.warns(UserWarning, match=r"cannot read the sweep command .* \(the parser stopped at it\)"):
            assert jobfile.sweep_options(manifest) is None
        assert jobfile.extend_limit(None, manifest) is None
    assert capsys.readouterr().out == ""
