"""Sweep specs, learning-rate choice, merge equality, and a killed sweep that resumes."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from harness import models, sweep
from harness.spec import LoraSpec, SpecError
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
    later = sweep.second_phase(specs, records, [0, 1])
    assert [(s.arm, s.seed, s.learning_rate) for s in later] == [("standard", 1, 2e-5), ("lora", 1, 2e-4)]
    assert len(sweep.selected(records)) == 2


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


def test_merged_adapter_embeds_like_the_unmerged_one(tiny_model_path):
    import torch

    from harness.data import load_splits
    from harness.worker import merge_check
    model = models.load_model(tiny_model_path, device="cpu")
    models.attach_lora(model, LoraSpec(r=4))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.2)  # a trained-looking adapter: merging must matter
    pairs = load_splits("dating").test.head(40)
    out = merge_check(model, pairs, "cpu")
    assert out["merged_layers"] == 4  # query and value in 2 layers
    assert out["max_abs_diff"] <= 1e-5 and out["within_tolerance"]
    assert models.count_params(model)["total_params"] == 999_072  # back to the plain base shape
    assert not any("lora" in n for n, _ in model.named_parameters())


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
    rows = {r["point"]: r for r in sweep.point_rows([json.loads(t) for t in files.values()])}
    assert rows["lora r=4"]["seeds"] == 2 and rows["lora r=4"]["spearman_lo"] is not None
    assert rows["lora r=4"]["merge_max_abs_diff"] <= 1e-5
    assert np.isfinite(rows["lora r=1"]["vs_standard_p"])
