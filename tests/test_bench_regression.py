"""The regression checks work: a deliberately slowed training step is flagged, an unchanged run is not.

Runs the real benchmark suite (tiny model) in subprocesses: save a baseline, then compare a run
whose every step is slowed (HARNESS_INJECT_FAULT=sleep@... or slow@..., used only here) against it,
with pytest-benchmark's threshold compare and with `harness bench-compare`. The power and the
false-alarm rate of bench-compare at a 5% slowdown over repeated trials come from bench/power.py.
"""

import subprocess
import sys

from tests.conftest import REPO, repo_env, run_cli

SELECT = ["bench/test_training.py::test_train_step[standard]"]
# A guard against a hung subprocess, not a time limit: five fresh processes of ten rounds took 10.5 minutes
# beside a CI run and a fuzz run on this 2-core machine, and the former 600 s ended one such CI run.
HANG = 3600


def run_bench(storage, *args, fault=None, rounds=None, processes=None):
    # One torch thread in every benchmark process: with two threads on a 2-core machine that is running
    # other work, a step of the tiny model went from 13 ms to 1.8 s (threads waiting on each other), which
    # hid a 100 ms delay; one thread slows by the share of the CPU it gets, not by that collapse.
    env = repo_env(HARNESS_BENCH_MODEL="tiny", HARNESS_BENCH_THREADS="1", OMP_NUM_THREADS="1",
                   **({"HARNESS_BENCH_ROUNDS": str(rounds)} if rounds else {}),
                   **({"HARNESS_BENCH_PROCESSES": str(processes)} if processes else {}))
    env.pop("HARNESS_INJECT_FAULT", None)
    for name in [k for k in env if k.startswith("PYTEST_XDIST")]:  # this pytest is not an xdist worker: with
        env.pop(name)  # the variable inherited from one, pytest-benchmark disables itself and --benchmark-only errs
    if fault:
        env["HARNESS_INJECT_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "pytest", *SELECT, "--benchmark-only", "-p", "no:cacheprovider",
                           f"--benchmark-storage=file://{storage}", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=HANG)


def test_slowed_step_fails_the_compare(tmp_path, harness_cache):
    saved = run_bench(tmp_path, "--benchmark-save=base")
    assert saved.returncode == 0, saved.stdout[-3000:]
    compare = ["--benchmark-compare=0001", "--benchmark-compare-fail=mean:15%"]
    slowed = run_bench(tmp_path, *compare, fault="sleep@0.25")
    assert slowed.returncode != 0
    assert "Performance has regressed" in slowed.stdout + slowed.stderr


def test_bench_compare_flags_a_slower_step_and_not_the_same_run(tmp_path, harness_cache):
    save = ["--benchmark-save-data"]
    base = run_bench(tmp_path, "--benchmark-save=base", *save, rounds=10, processes=5)
    assert base.returncode == 0, base.stdout[-3000:]
    # The two runs are saved one after the other, so a busy machine whose load shifts between them moves
    # the ratio as well: on a loaded CI machine a 30% slowdown (slow@0.3) was measured as 1.048 [0.974,
    # 1.366] and not flagged, and with a second CPU-bound job beside the suite the base run's step times
    # spread by a CV of 32% and a doubled step (slow@1.0) came out 0.198x the base. A slowdown that scales
    # with the step's own compute is hidden by load that scales it too; a fixed delay of 100 ms on every
    # step (sleep@0.2, about 15 times the tiny model's step of 13 ms) is not, once every process runs one
    # torch thread (run_bench): with two, a CI run beside a fuzz run and other tests slowed the base run's
    # steps to 1.8 s in one of its five processes and hid sleep@0.1 (p = 0.075). This test asks whether such an
    # unmistakable slowdown is flagged; the decision rule itself is tested on recorded samples in
    # tests/test_bench_compare.py, and how often a small slowdown (5%) is caught is bench/power.py's question.
    slow = run_bench(tmp_path, "--benchmark-save=slow", *save, rounds=10, processes=5, fault="sleep@0.2")
    assert slow.returncode == 0, slow.stdout[-3000:]
    (base_file,) = tmp_path.rglob("0001_base.json")
    (slow_file,) = tmp_path.rglob("0002_slow.json")
    flagged = run_cli("bench-compare", str(base_file), str(slow_file))
    assert flagged.returncode == 1, flagged.stdout
    line = next(row for row in flagged.stdout.splitlines() if "test_train_step[standard]" in row)
    assert "REGRESSED" in line and "per-process median step time" in line  # the independent units
    assert "5 / 5" in line  # five fresh processes on each side
    same = run_cli("bench-compare", str(base_file), str(base_file))
    assert same.returncode == 0 and "REGRESSED" not in same.stdout
