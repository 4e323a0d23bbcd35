"""How often does `harness bench-compare` flag a 5% slowdown, and how often an unchanged run?

    python -m bench.power [--trials 20] [--model minilm] [--rounds 6] [--processes 6] [--slowdown 0.05] [--out DIR]

Why all-MiniLM-L6-v2 by default and not the tiny model: one fresh process's median step time differs
from the next one's by a coefficient of variation of about 2% with MiniLM (6 processes) but 7-12%
with the tiny model (whose 13 ms steps are mostly Python overhead, sensitive to each process's memory
layout; pinning threads or cores did not help). At 7-12% no affordable number of processes sees a 5%
slowdown: tests/test_bench_compare.py simulates the rule at both noise levels.

Each trial saves three runs of test_train_step[standard] (pytest-benchmark,
HARNESS_BENCH_ROUNDS rounds spread over HARNESS_BENCH_PROCESSES fresh worker processes, each run its
own pytest session): a baseline, a second unchanged run and a run whose every step is made SLOWDOWN
slower (HARNESS_INJECT_FAULT=slow@SLOWDOWN), in an order shuffled per trial (the first session of a
series was often the slowest here: a fixed order would bias every trial alike). bench-compare then
judges baseline vs unchanged (a regression there is a false alarm) and baseline vs slowed (a
regression there is a detection). Prints both rates and writes DIR/power.json with every verdict and
every run's samples. Runs for tens of minutes: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SELECT = "bench/test_training.py::test_train_step[standard]"
NAME = "test_train_step[standard]"


def _bench(storage: Path, name: str, *, model: str, rounds: int, processes: int, fault: str | None) -> Path:
    from harness.runner import repo_env
    env = repo_env(HARNESS_BENCH_MODEL=model, HARNESS_BENCH_ROUNDS=str(rounds),
                   HARNESS_BENCH_PROCESSES=str(processes))
    env.pop("HARNESS_INJECT_FAULT", None)
    if fault:
        env["HARNESS_INJECT_FAULT"] = fault
    subprocess.run([sys.executable, "-m", "pytest", SELECT, "-q", "--benchmark-only", "-p", "no:cacheprovider",
                    f"--benchmark-storage=file://{storage}", f"--benchmark-save={name}", "--benchmark-save-data"],
                   cwd=REPO, env=env, check=True, capture_output=True, text=True)
    return next(storage.rglob(f"*_{name}.json"))


def _write(out: Path, args, verdicts: list[dict]) -> dict:
    from harness import benchcompare, files
    n = len(verdicts)
    counts = benchcompare.power_counts(verdicts)
    detected, false_alarms = counts["detected"], counts["false_alarms"]
    summary = {"trials": n, "model": args.model, "rounds": args.rounds, "processes": args.processes,
               "slowdown": args.slowdown,
               "detected": detected, "false_alarms": false_alarms, "detection_rate": detected / n,
               "false_alarm_rate": false_alarms / n, "alpha": benchcompare.ALPHA, "min_effect": benchcompare.MIN_EFFECT}
    out.mkdir(parents=True, exist_ok=True)
    files.write_json_atomic(out / "power.json", {**summary, "verdicts": verdicts}, overwrite=True)
    return summary


def _earlier(out: Path, args) -> list[dict]:
    """The trials of an earlier invocation into the same folder, if its settings match (resumable:
    a study of many trials spans sessions); a mismatch is an error rather than a silent mix."""
    path = out / "power.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    settings = {"model": args.model, "rounds": args.rounds, "processes": args.processes, "slowdown": args.slowdown}
    if any(data.get(k) != v for k, v in settings.items()):
        sys.exit(f"{path} holds trials with other settings ({ {k: data.get(k) for k in settings} }); "
                 "use another --out")
    print(f"resuming: {len(data['verdicts'])} trials kept from {path}", flush=True)
    return data["verdicts"]


def main(argv=None) -> int:
    from harness import benchcompare
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--model", choices=["minilm", "tiny"], default="minilm")
    parser.add_argument("--slowdown", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-trial order of the three runs")
    parser.add_argument("--out", default="out/bench-power")
    args = parser.parse_args(argv)
    if min(args.trials, args.rounds, args.processes) < 1 or args.processes > args.rounds:
        parser.error("--trials, --rounds and --processes must be at least 1, and --processes at most --rounds")
    rng = random.Random(args.seed)
    faults = {"base": None, "same": None, "slow": f"slow@{args.slowdown}"}
    verdicts = _earlier(Path(args.out), args)
    for trial in range(args.trials):
        order = rng.sample(list(faults), 3)
        if trial < len(verdicts):
            continue  # kept from an earlier, stopped invocation with the same settings
        with tempfile.TemporaryDirectory(prefix="bench-power-") as tmp:
            storage = Path(tmp)
            runs = {kind: _bench(storage, f"{kind}{trial}", model=args.model, rounds=args.rounds,
                                 processes=args.processes, fault=faults[kind]) for kind in order}
            unchanged, slowed = (next(r for r in benchcompare.compare(runs["base"], runs[kind])
                                      if r["benchmark"].endswith(NAME)) for kind in ("same", "slow"))
            samples = {kind: benchcompare.samples(next(b for b in benchcompare.load(path).values()
                                                       if b["name"] == NAME))[0] for kind, path in runs.items()}
        verdicts.append({"trial": trial, "order": order, "unchanged": unchanged, "slowed": slowed, "samples": samples})
        print(f"trial {trial}: unchanged -> {unchanged['verdict']} (ratio {unchanged['ratio']:.3f}), "
              f"slowed -> {slowed['verdict']} (ratio {slowed['ratio']:.3f})", flush=True)
        _write(Path(args.out), args, verdicts)  # after every trial: a stopped study keeps its trials
    print(json.dumps(_write(Path(args.out), args, verdicts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
