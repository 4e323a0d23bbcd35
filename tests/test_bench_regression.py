"""The regression check works: a deliberately slowed training step makes the compare fail.

Runs the real benchmark suite (tiny model) in subprocesses: save a baseline, then compare a run
whose every step sleeps (HARNESS_INJECT_FAULT=sleep@..., used only here) against it.
"""

import subprocess
import sys

from tests.conftest import REPO, repo_env

SELECT = ["bench/test_training.py::test_train_step[standard]"]


def run_bench(storage, *args, fault=None):
    env = repo_env(HARNESS_BENCH_MODEL="tiny")
    env.pop("HARNESS_INJECT_FAULT", None)
    if fault:
        env["HARNESS_INJECT_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "pytest", *SELECT, "--benchmark-only", "-p", "no:cacheprovider",
                           f"--benchmark-storage=file://{storage}", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_slowed_step_fails_the_compare(tmp_path, harness_cache):
    saved = run_bench(tmp_path, "--benchmark-save=base")
    assert saved.returncode == 0, saved.stdout[-3000:]
    compare = ["--benchmark-compare=0001", "--benchmark-compare-fail=mean:15%"]
    slowed = run_bench(tmp_path, *compare, fault="sleep@0.25")
    assert slowed.returncode != 0
    assert "Performance has regressed" in slowed.stdout + slowed.stderr
