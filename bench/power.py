"""How often does `harness bench-compare` flag a 5% slowdown, and how often an unchanged run?

    python -m bench.power [--trials 20] [--rounds 10] [--slowdown 0.05] [--out DIR]

Each trial saves three runs of test_train_step[standard] on the tiny model (pytest-benchmark,
HARNESS_BENCH_ROUNDS rounds each, in fresh pytest processes): a baseline, a second unchanged run and
a run whose every step is made SLOWDOWN slower (HARNESS_INJECT_FAULT=slow@SLOWDOWN). bench-compare
then judges baseline vs unchanged (a regression there is a false alarm) and baseline vs slowed (a
regression there is a detection). Prints both rates and writes DIR/power.json with every verdict.
Runs for minutes: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SELECT = "bench/test_training.py::test_train_step[standard]"
NAME = "test_train_step[standard]"


def _bench(storage: Path, name: str, *, rounds: int, fault: str | None) -> Path:
    from harness.runner import repo_env
    env = repo_env(HARNESS_BENCH_MODEL="tiny", HARNESS_BENCH_ROUNDS=str(rounds))
    env.pop("HARNESS_INJECT_FAULT", None)
    if fault:
        env["HARNESS_INJECT_FAULT"] = fault
    subprocess.run([sys.executable, "-m", "pytest", SELECT, "-q", "--benchmark-only", "-p", "no:cacheprovider",
                    f"--benchmark-storage=file://{storage}", f"--benchmark-save={name}", "--benchmark-save-data"],
                   cwd=REPO, env=env, check=True, capture_output=True, text=True)
    return next(storage.rglob(f"*_{name}.json"))


def main(argv=None) -> int:
    from harness import benchcompare
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--slowdown", type=float, default=0.05)
    parser.add_argument("--out", default="out/bench-power")
    args = parser.parse_args(argv)
    verdicts = []
    for trial in range(args.trials):
        with tempfile.TemporaryDirectory(prefix="bench-power-") as tmp:
            storage = Path(tmp)
            base = _bench(storage, f"base{trial}", rounds=args.rounds, fault=None)
            same = _bench(storage, f"same{trial}", rounds=args.rounds, fault=None)
            slow = _bench(storage, f"slow{trial}", rounds=args.rounds, fault=f"slow@{args.slowdown}")
            unchanged = next(r for r in benchcompare.compare(base, same) if r["benchmark"].endswith(NAME))
            slowed = next(r for r in benchcompare.compare(base, slow) if r["benchmark"].endswith(NAME))
        verdicts.append({"trial": trial, "unchanged": unchanged, "slowed": slowed})
        print(f"trial {trial}: unchanged -> {unchanged['verdict']} (ratio {unchanged['ratio']:.3f}), "
              f"slowed -> {slowed['verdict']} (ratio {slowed['ratio']:.3f})", flush=True)
    n = len(verdicts)
    detected = sum(v["slowed"]["verdict"] == "regressed" for v in verdicts)
    false_alarms = sum(v["unchanged"]["verdict"] == "regressed" for v in verdicts)
    summary = {"trials": n, "rounds": args.rounds, "slowdown": args.slowdown, "detected": detected,
               "false_alarms": false_alarms, "detection_rate": detected / n, "false_alarm_rate": false_alarms / n,
               "alpha": benchcompare.ALPHA, "min_effect": benchcompare.MIN_EFFECT}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "power.json").write_text(json.dumps({**summary, "verdicts": verdicts}, indent=1))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
