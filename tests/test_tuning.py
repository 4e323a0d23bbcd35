"""The learning-rate protocol: the rate is chosen on every seed the study reports, never an unstable one."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import convergence, sweep, tuning
from harness.report import cells, plots
from harness.spec import build_specs
from tests.conftest import REPO, TINY_ARGS, run_cli

V1 = REPO / "results" / "cpu-amd-epyc-2c" / "dating-v2" / "methods-v1"


def _v1_records() -> list[dict]:
    files = sorted((V1 / "runs").glob("*.json"))
    if not files:
        pytest.skip("the published method study v1 is not in this checkout")
    return [json.loads(p.read_text()) for p in files]


def test_replayed_on_the_published_grid_runs_the_rule_never_picks_a_rate_that_collapsed_on_another_seed():
    """The committed records of the first method study, whose rates were chosen on seed 0 alone."""
    records = _v1_records()
    base = tuning.baseline_validation(records)
    old = tuning.choose(records, "first-seed")
    new = tuning.choose(records, "mean", seeds=[0, 1, 2])
    picked_a_collapse = []
    for name, point in tuning.points(records).items():
        bad = tuning.unstable(point, base)
        if old[name].rate in bad:
            picked_a_collapse.append(name)
        choice = new[name]
        assert choice.rate is None or choice.rate not in bad, name
        if choice.rate is not None:  # chosen over every seed the study reports
            assert set(point.runs[choice.rate]) == {0, 1, 2}, name
    # the old rule did pick them: LoRA r=8 at 3.13e-3 (0.40 on seed 0, -0.05 and -0.06 on seeds 1-2), ...
    assert {"lora r=8", "pissa r=8", "adalora r=8"} <= set(picked_a_collapse)
    assert new["lora r=8"].rate is None and "1.25e-03" not in new["lora r=8"].pending
    assert new["lora r=8"].pending.startswith("0.00125 needs seeds 1, 2")  # the next-best rate of seed 0
    # where the old choice was stable on every seed, the runner-up has not run, and a rate above it collapsed,
    # the choice waits for both: the runner-up on the other seeds, the old choice's headroom on every seed
    r16, p16 = new["lora r=16"], tuning.points(records)["lora r=16"]
    assert 3.13e-3 in r16.unstable and r16.rate == max(  # meanwhile the best other rate run on every seed
        (r for r in r16.stable if set(p16.runs[r]) == {0, 1, 2} and r != 0.00125), key=p16.mean)
    assert r16.pending == "0.0005 needs seeds 1, 2; 0.00188 needs seeds 0, 1, 2 (the headroom of 0.00125)"


def _record(arm, rate, seed, val, *, status="success", r=8):
    spec = build_specs(arms=[arm], dataset="dating")[0].to_dict()
    spec.update(learning_rate=rate, seed=seed)
    if spec.get("lora"):
        spec["lora"]["r"] = r
    rec = {"status": status, "method": arm, "spec": spec, "quality": {"validation_spearman": val},
           "run_id": f"{arm}-{rate}-{seed}", "started_at": "2026-01-01T00:00:00+00:00",
           "finished_at": "2026-01-01T00:06:00+00:00"}
    if status == "failed":
        rec.update(quality=None, error={"reason": "diverged", "message": "training diverged: loss nan"})
    return rec


def test_a_candidate_that_collapses_on_another_seed_gives_its_place_to_the_next_rate():
    grid = {1e-4: 0.30, 2e-4: 0.45, 5e-4: 0.50, 1e-3: 0.05}
    records = [_record("baseline", 2e-5, s, 0.0) for s in (0, 1)]
    records += [_record("lora", rate, 0, val) for rate, val in grid.items()]
    specs = [s for s in sweep.sweep_specs(dataset="dating", ranks=[8], seeds=[0, 1],
                                          lr_grid={"lora": list(grid)}) if s.arm == "lora"]
    first = tuning.screening_runs(specs, records, [0, 1], 2)
    assert sorted((s.seed, s.learning_rate) for s in first) == [(1, 2e-4), (1, 5e-4)]  # 1e-3 collapsed on seed 0
    records += [_record("lora", 5e-4, 1, 0.10), _record("lora", 2e-4, 1, 0.40)]  # 5e-4 collapses on seed 1
    choice = tuning.choose(records, "mean", seeds=[0, 1])["lora r=8"]
    assert 5e-4 in choice.unstable and "collapsed on seed 1" in choice.unstable[5e-4]
    again = tuning.screening_runs(specs, records, [0, 1], 2)
    assert [(s.seed, s.learning_rate) for s in again] == [(1, 1e-4)]  # the next best of seed 0 steps in
    assert choice.pending == "0.0001 needs seed 1; 0.0003 needs seeds 0, 1 (the headroom of 0.0002)"
    records.append(_record("lora", 1e-4, 1, 0.32))
    choice = tuning.choose(records, "mean", seeds=[0, 1])["lora r=8"]
    assert choice.rate == 1e-4 and choice.pending == "0.0003 needs seeds 0, 1 (the headroom of 0.0002)"
    probes = tuning.screening_runs(specs, records, [0, 1], 2)  # 2e-4 is one step below 5e-4, which collapsed
    assert sorted((s.seed, s.learning_rate) for s in probes) == [(0, 3e-4), (1, 3e-4)]
    records += [_record("lora", 3e-4, 0, 0.43), _record("lora", 3e-4, 1, 0.40)]  # stable, and below 2e-4
    choice = tuning.choose(records, "mean", seeds=[0, 1])["lora r=8"]
    assert choice.rate == 2e-4 and not choice.pending and tuning.screening_runs(specs, records, [0, 1], 2) == []
    assert choice.stable_range() == (1e-4, 3e-4) and choice.stable_steps == 2
    assert tuning.choose(records, "first-seed")["lora r=8"].rate == 5e-4  # what seed 0 alone would take


def _lora_specs(rates, seeds):
    return [s for s in sweep.sweep_specs(dataset="dating", ranks=[8], seeds=seeds, lr_grid={"lora": list(rates)})
            if s.arm == "lora"]


def test_a_best_rate_one_step_below_a_collapse_is_kept_only_where_its_headroom_is_stable_on_every_seed(tmp_path):
    """5e-4 has the best mean on seeds 0-1, but 1.25e-3 collapsed: 7.5e-4 (1.5 times it) must run on both
    seeds first. Stable there, 5e-4 is chosen; collapsed there, 5e-4 is passed over for 2e-4."""
    grid = {1e-4: (0.30, 0.31), 2e-4: (0.45, 0.44), 5e-4: (0.50, 0.49), 1.25e-3: (0.02, 0.01)}
    records = [_record("baseline", 2e-5, s, 0.0) for s in (0, 1)]
    records += [_record("lora", rate, s, v[s]) for rate, v in grid.items() for s in (0, 1) if rate != 1e-4 or s == 0]
    specs = _lora_specs(grid, [0, 1])
    choice = tuning.choose(records, "mean", seeds=[0, 1])["lora r=8"]
    assert choice.rate == 2e-4 and choice.pending == "0.00075 needs seeds 0, 1 (the headroom of 0.0005)"
    assert sweep.grid_unfinished(sweep.grid_edges(records, selection=tuning.Selection("mean", (0, 1))).get("lora r=8"))
    probes = tuning.screening_runs(specs, records, [0, 1], 2)
    assert sorted((s.seed, s.learning_rate) for s in probes) == [(0, 7.5e-4), (1, 7.5e-4)]
    kept = tuning.choose([*records, _record("lora", 7.5e-4, 0, 0.47), _record("lora", 7.5e-4, 1, 0.46)], "mean",
                         seeds=[0, 1])["lora r=8"]
    assert kept.rate == 5e-4 and not kept.pending and not kept.edge
    fell = [*records, _record("lora", 7.5e-4, 0, 0.47), _record("lora", 7.5e-4, 1, 0.03)]
    passed = tuning.choose(fell, "mean", seeds=[0, 1])["lora r=8"]
    assert passed.rate == 2e-4 and not passed.pending and tuning.screening_runs(specs, fell, [0, 1], 2) == []
    assert passed.edge[5e-4].startswith("0.00075, within 1.5 times it, is unstable (collapsed on seed 1")
    rows = tuning.sensitivity_rows(fell, tuning.Selection("mean", (0, 1)))
    assert {r["learning_rate"] for r in rows if r["why_edge"]} == {5e-4} and all(
        r["chosen"] == (r["learning_rate"] == 2e-4) for r in rows)
    written = plots.lr_sensitivity(pd.DataFrame(rows), tmp_path)  # the passed-over rate is ringed, and in the CSV
    table = pd.read_csv(next(p for p in written if p.suffix == ".csv"))
    assert table.loc[table["learning_rate"] == 5e-4, "why_edge"].str.contains("within 1.5 times it").all()
    notes = cells.rate_notes([{"point": "lora r=8", "lr_edge": f"0.0005: {passed.edge[5e-4]}"}])
    assert notes[0].startswith("Passed over at the edge of divergence") and "lora r=8: 0.0005: 0.00075" in notes[0]
    # a stable probe that beats its candidate needs its own headroom: 1.13e-3, still below the collapse
    better = [*records, _record("lora", 7.5e-4, 0, 0.52), _record("lora", 7.5e-4, 1, 0.51)]
    again = tuning.choose(better, "mean", seeds=[0, 1])["lora r=8"]
    assert again.rate == 5e-4 and again.pending == "0.00113 needs seeds 0, 1 (the headroom of 0.00075)"
    assert tuning.probe_rate(3.125e-3) == 4.69e-3 and tuning.probe_rate(7.5e-4) == 1.13e-3


def test_an_unstable_rate_within_the_headroom_passes_a_candidate_over_without_a_probe():
    records = [_record("baseline", 2e-5, s, 0.0) for s in (0, 1)]
    records += [_record("lora", rate, s, v) for rate, v in ((1e-4, 0.3), (1.2e-4, 0.35)) for s in (0, 1)]
    records += [_record("lora", 1.4e-4, 0, None, status="failed")]
    choice = tuning.choose(records, "mean", seeds=[0, 1])["lora r=8"]
    assert choice.rate is None and set(choice.edge) == {1e-4, 1.2e-4} and not tuning.screening_runs(
        _lora_specs([1e-4], [0, 1]), records, [0, 1], 2)
    assert choice.pending == "every rate tried is unstable or at the edge of divergence"
    assert "0.00014, within 1.5 times it, is unstable (diverged on seed 0)" == choice.edge[1e-4]


LATTICE = [float(f"{1e-4 * 2.5 ** k:.3g}") for k in range(7)]


@settings(max_examples=80, deadline=None, derandomize=True)
@given(optimum=st.integers(0, 60), cliffs=st.lists(st.integers(0, 80), min_size=3, max_size=3),
       peak=st.floats(0.2, 0.9), width=st.floats(0.5, 4.0), noise=st.lists(st.floats(-0.02, 0.02), min_size=3,
                                                                          max_size=3))
def test_the_screened_sweep_ends_with_a_rate_clear_of_the_edge_and_the_best_such_mean(optimum, cliffs, peak, width,
                                                                                       noise):
    """Generated studies: per seed a smooth quality curve over log-rate and a cliff (collapse, and
    divergence past twice the cliff) at a rate of its own. Seed 0 runs the lattice; the sweep's screening
    and headroom loop (tuning.screening_runs until it proposes nothing) must end, propose no run twice, and
    leave a chosen rate that is stable on every seed, clear of the edge (nothing unstable above it, or a
    rate at least 1.5 times it below the lowest unstable one, stable on every seed) and the best mean among
    the rates that are; none only where no rate is clear."""
    seeds = [0, 1, 2]
    centre, cliff = 1e-4 * 10 ** (optimum / 20), [1e-4 * 10 ** (c / 20) for c in cliffs]

    def run(rate, seed):
        if rate >= 2 * cliff[seed]:
            return _record("lora", rate, seed, None, status="failed")
        value = 0.01 if rate >= cliff[seed] else peak - math.log10(rate / centre) ** 2 / width + noise[seed]
        return _record("lora", rate, seed, value)

    records = [_record("baseline", 2e-5, s, 0.0) for s in seeds] + [run(rate, 0) for rate in LATTICE]
    specs, done = _lora_specs(LATTICE, seeds), {(r, 0) for r in LATTICE}
    for _ in range(20):
        more = tuning.screening_runs(specs, records, seeds, 2)
        if not more:
            break
        asked = {(s.learning_rate, s.seed) for s in more}
        assert not asked & done, "a run proposed twice"
        done |= asked
        records += [run(rate, seed) for rate, seed in sorted(asked)]
    else:
        raise AssertionError("the screening did not end")
    point = tuning.points(records)["lora r=8"]
    bad = tuning.unstable(point, tuning.baseline_validation(records))
    choice = tuning.choose(records, "mean", seeds=seeds)["lora r=8"]

    def clear(rate):
        above = [t for t in bad if t > rate * (1 + 1e-9)]
        return not above or any(rate * 1.5 * (1 - 1e-6) <= t < min(above) and set(point.runs[t]) == set(seeds)
                                for t in point.runs if t not in bad)

    complete = [r for r in point.runs if r not in bad and set(point.runs[r]) == set(seeds)]
    assert not choice.pending or choice.pending.startswith("every rate tried")
    if choice.rate is None:
        assert not any(clear(r) for r in complete)
    else:
        assert choice.rate in complete and clear(choice.rate)
        assert point.mean(choice.rate) == max(point.mean(r) for r in complete if clear(r))
        assert all(not clear(r) for r in choice.edge)


def test_a_diverged_seed_or_one_below_the_untrained_model_makes_a_rate_unstable():
    records = [_record("baseline", 2e-5, 0, 0.1), _record("lora", 1e-4, 0, 0.3), _record("lora", 1e-4, 1, 0.31),
               _record("lora", 2e-4, 0, 0.5), _record("lora", 2e-4, 1, None, status="failed"),
               _record("lora", 5e-5, 0, 0.05), _record("lora", 5e-5, 1, 0.2)]
    choice = tuning.choose(records, "mean")["lora r=8"]
    assert choice.unstable[2e-4] == "diverged on seed 1"
    assert choice.unstable[5e-5].startswith("below the untrained model (0.100) on seed 0")
    assert choice.rate is None and choice.pending == "0.00015 needs seeds 0, 1 (the headroom of 0.0001)"
    records += [_record("lora", 1.5e-4, 0, 0.4), _record("lora", 1.5e-4, 1, 0.38)]  # the probe, stable
    choice = tuning.choose(records, "mean")["lora r=8"]
    assert choice.rate == 1e-4 and choice.stable_steps == 1 and not choice.pending
    cost = tuning.tuning_cost(tuning.points(records)["lora r=8"], choice.rate)
    assert cost == {"tuning_runs": 6, "tuning_hours": pytest.approx(0.6), "final_runs": 2,
                    "final_hours": pytest.approx(0.2)}


def test_a_folder_keeps_its_rule_and_a_malformed_one_falls_back_to_the_legacy_rule():
    assert tuning.Selection.from_manifest(None).rule == "first-seed"
    assert tuning.Selection.from_manifest({"lr_selection": {"rule": "median"}}).rule == "first-seed"
    sel = tuning.Selection.from_manifest({"lr_selection": {"rule": "mean", "seeds": [2, 0, "x", -1], "screen": 1}})
    assert sel == tuning.Selection("mean", (0, 2), tuning.DEFAULT_SCREEN)
    assert sel.merged(tuning.Selection("mean", (1,))).seeds == (0, 1, 2)


def test_a_sweep_chooses_on_every_seed_and_refuses_to_resume_a_folder_under_another_rule(tmp_path, harness_cache):
    """The real command on the tiny model: seed 0 runs the grid, its best two stable rates run on seed 1,
    and the rate reported is one that ran on both seeds and is stable there."""
    out = tmp_path / "out"
    args = ["sweep", "--ranks", "2", "--seeds", "0,1", "--lr-grid", "standard=1e-5,2e-5,4e-5;lora=1e-4,2e-4,4e-4",
            "--eval-every", "2", "--out", str(out), *TINY_ARGS]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    manifest = json.loads((out / "job.json").read_text())
    assert manifest["lr_selection"] == {"rule": "mean", "seeds": [0, 1], "screen": 2}
    selection = sweep.job_selection(out)
    choices = selection.choose(records)
    points = tuning.points(records)
    for name, choice in choices.items():
        bad = tuning.unstable(points[name], tuning.baseline_validation(records))
        seed1 = {rate for rate, by_seed in points[name].runs.items() if 1 in by_seed}
        assert len(seed1) >= min(2, len([r for r in points[name].runs if r not in bad])), name
        if choice.rate is not None:
            assert set(points[name].runs[choice.rate]) == {0, 1} and choice.rate not in bad
    for r in records:  # each trained run judged its own convergence from its probes (steps 2 and 4 of 4)
        if r["method"] != "baseline":
            assert r["training"]["convergence"] == convergence.of_record(r) is not None
    rule = Path(out / "sweep.md").read_text()
    assert "mean validation over seeds 0, 1" in rule and (out / "plots" / "lr_sensitivity.png").is_file()
    other = run_cli(*args, "--lr-select", "first-seed")
    assert other.returncode == 2 and other.stderr.count("error:") == 1
    assert "chosen by the mean rule" in other.stderr and "Traceback" not in other.stderr
