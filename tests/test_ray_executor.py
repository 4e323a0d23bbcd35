"""The ray executor against the local one, on a real local Ray instance (loopback only).

Marked ``ray``: deselect with -m 'not ray'. Skipped where Ray is not installed.
"""

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import REPO, TINY_ARGS, repo_env, run_cli

pytest.importorskip("ray")
pytestmark = pytest.mark.ray

SWEEP = ["sweep", "--ranks", "2", "--seeds", "0", "--eval-every", "0", *TINY_ARGS]
MEASURED = {"timings", "memory", "energy", "environment", "started_at", "finished_at"}


def records(out):
    return {p.name: json.loads(p.read_text()) for p in sorted((out / "runs").glob("*.json"))}


def comparable(record):
    out = {k: v for k, v in record.items() if k not in MEASURED}
    merge = dict(out.get("merge") or {})
    for key in [k for k in merge if k.endswith("sentences_per_s")]:
        merge.pop(key)  # throughput: a measurement, like the timings
    out["merge"] = merge
    out["params"] = {k: v for k, v in out["params"].items()}
    # Where the base model's reference embeddings came from (the job's cache locally; Ray tasks, which may
    # run on other nodes, encode them again): provenance, not a figure. The figures must still be equal.
    forgetting = {k: v for k, v in out["quality"].get("forgetting", {}).items() if k != "base_source"}
    out["quality"] = {**out["quality"], "forgetting": forgetting}
    return out


def test_ray_results_equal_local_results_field_for_field(tmp_path, harness_cache):
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    assert run_cli(*SWEEP, "--out", str(local)).returncode == 0
    proc = run_cli(*SWEEP, "--out", str(ray_out), "--executor", "ray")
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = records(local), records(ray_out)
    assert a.keys() == b.keys() and len(a) == 3
    for name in a:
        assert comparable(a[name]) == comparable(b[name]), name
        assert b[name]["environment"]["executor"] == "ray" and b[name]["environment"]["ray_node_id"]
        assert set(a[name]) == set(b[name])  # the same schema whichever executor ran it
    again = run_cli(*SWEEP, "--out", str(ray_out), "--executor", "ray")
    assert again.returncode == 0 and again.stdout.count("kept existing success result") == 3


def test_lost_ray_worker_is_retried_then_recorded_as_failed(tmp_path, harness_cache):
    """Kill the Ray worker process that runs a task, every attempt: 1 retry, then a recorded failure."""
    out = tmp_path / "out"
    env = repo_env(HARNESS_INJECT_FAULT="sleep@0.5")
    args = [sys.executable, "-m", "harness", "run", "--arms", "standard", "--out", str(out), *TINY_ARGS,
            "--set", "max_steps=40", "--executor", "ray", "--ray-max-retries", "1"]
    driver = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = set()
    deadline = time.time() + 400
    root = psutil.Process(driver.pid)
    while driver.poll() is None and time.time() < deadline:
        # Only our own process tree: the driver started Ray, Ray started its workers, they started ours.
        try:
            tree = root.children(recursive=True)
        except psutil.Error:
            break
        for proc in tree:
            try:
                is_ours = "harness.worker" in " ".join(proc.cmdline())
                ray_worker = proc.parent() if is_ours and proc.pid not in killed else None
            except psutil.Error:
                continue
            if ray_worker is not None and ray_worker.pid != driver.pid:
                try:
                    ray_worker.kill()
                    killed.add(proc.pid)
                except psutil.Error:
                    pass
        time.sleep(0.2)  # polling interval for new worker processes, not a wait for a state
    output = driver.communicate(timeout=120)[0]
    # The first attempt and its retry; a slow machine may show a worker of an attempt twice (a new
    # pid after Ray restarts it), so count at least two kills and judge by the recorded outcome.
    assert len(killed) >= 2, output[-3000:]
    (record,) = records(out).values()
    assert record["status"] == "failed" and record["error"]["reason"] == "lost"
    assert "after 1 retries" in record["error"]["message"]
    assert driver.returncode == 1


def test_missing_ray_says_how_to_install(tmp_path):
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "__init__.py").write_text("raise ImportError('no ray here')\n")
    proc = run_cli("run", "--out", str(tmp_path / "o"), "--executor", "ray", env_extra=env)
    assert proc.returncode == 2
    assert "pip install 'lora-bench-harness[ray]'" in proc.stderr
