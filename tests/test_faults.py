"""Faults during a run are recorded and the rest of the work goes on; interrupted work resumes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness import results, runner
from harness.spec import build_specs
from tests.conftest import REPO, TINY_ARGS, run_cli

TINY_SETS = [a for a in TINY_ARGS if a != "--set"]


def only_record(out: Path) -> dict:
    (path,) = (out / "runs").glob("*.json")
    return json.loads(path.read_text())


def test_injected_oom_is_recorded_with_memory_so_far(tmp_path, harness_cache):
    out = tmp_path / "out"
    proc = run_cli("run", "--out", str(out), "--arms", "lora", *TINY_ARGS,
                   env_extra={"HARNESS_INJECT_FAULT": "oom@2"})
    assert proc.returncode == 1
    record = only_record(out)
    assert record["status"] == "failed" and record["error"]["reason"] == "oom"
    assert record["memory"]["peak_memory_bytes"] >= record["memory"]["baseline_memory_bytes"] > 0


def test_real_divergence_is_recorded_with_the_step(tmp_path, harness_cache):
    out = tmp_path / "out"
    proc = run_cli("run", "--out", str(out), "--arms", "standard", *TINY_ARGS, "--set", "max_steps=30",
                   "--set", "train_limit=128", "--set", "learning_rate=1e6", "--set", "warmup_steps=0")
    assert proc.returncode == 1
    record = only_record(out)
    assert record["error"]["reason"] == "diverged"
    assert record["error"]["step"] == 10  # the loss is checked at every logging step (every 10 steps)


def test_failed_runs_do_not_stop_the_others(tmp_path, harness_cache):
    out = tmp_path / "out"
    proc = run_cli("run", "--out", str(out), *TINY_ARGS, "--set", "arms.standard.learning_rate=1e6",
                   "--set", "arms.standard.warmup_steps=0", "--set", "max_steps=12", "--set", "train_limit=128")
    assert proc.returncode == 1
    statuses = {json.loads(p.read_text())["method"]: json.loads(p.read_text())["status"]
                for p in (out / "runs").glob("*.json")}
    assert statuses == {"baseline": "success", "standard": "failed", "lora": "success"}
    assert "FAILED standard-" in proc.stdout and "diverged" in proc.stdout


def test_interrupt_stops_cleanly_and_the_same_command_resumes(tmp_path, harness_cache):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "harness", "run", "--out", str(out), *TINY_ARGS,
            "--set", "arms.standard.max_steps=2000", "--set", "arms.standard.train_limit=64"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not list((out / "runs").glob("baseline-*.json")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # the standard arm is now training
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert "run the same command again to resume" in stderr
    files = sorted(p.name for p in (out / "runs").iterdir())
    assert len(files) == 1 and files[0].startswith("baseline-")  # no half-written file
    baseline = (out / "runs" / files[0]).read_text()
    results.load_record(out / "runs" / files[0])

    again = run_cli("run", "--out", str(out), *TINY_ARGS)  # standard now a short run: a new spec
    assert again.returncode == 0, again.stderr[-2000:]
    assert "baseline: kept existing success result" in again.stdout
    assert (out / "runs" / files[0]).read_text() == baseline


def test_a_killed_writer_leaves_no_partial_result(tmp_path):
    target = tmp_path / "runs" / "big.json"
    code = ("import sys; from harness.results import write_json_atomic; "
            "write_json_atomic(sys.argv[1], {'x': [0.123456789] * 20_000_000})")
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    deadline = time.time() + 60
    while not any(p.suffix == ".tmp" for p in target.parent.glob(".*")) and time.time() < deadline:
        time.sleep(0.01)
    proc.kill()  # SIGKILL in the middle of the write
    proc.wait()
    assert not target.exists()
    assert results.load_runs(tmp_path) == []  # the stray temporary file is never read as a result


def test_same_spec_and_seed_give_the_same_quality(harness_cache):
    (spec,) = build_specs(arms=["lora"], overrides=TINY_SETS)
    one, two = runner.run_in_worker(spec), runner.run_in_worker(spec)
    assert one["status"] == two["status"] == "success"
    assert one["quality"] == two["quality"]
    assert one["training"]["loss_history"] == two["training"]["loss_history"]


def test_config_paths_cannot_escape_the_output_folder():
    (spec,) = build_specs(arms=["baseline"], dataset="../../../etc/evil name.csv")
    assert "/" not in spec.run_id and ".." not in spec.run_id
    assert spec.run_id.startswith("baseline-evil_name-")


def test_no_unpickling_loaders_in_the_harness():
    source = "\n".join(p.read_text() for p in (REPO / "harness").glob("*.py"))
    for risky in ("torch.load(", "pickle.load", "shell=True", "os.system("):
        assert risky not in source, risky
