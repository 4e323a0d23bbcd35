"""Training rounds of a benchmark variant in a fresh process: its step times and its own peak memory.

test_train_step runs its rounds in several of these processes (HARNESS_BENCH_PROCESSES), as pyperf
does: on this 2-core machine the median step time of one process differed from the next process's
with a CV of 2% (all-MiniLM-L6-v2) to 7-12% (tiny model), same code, same settings: enough to hide
the 5% regression a check must see. So a saved run holds several processes, and bench-compare compares their
per-process medians, the units that are really independent. Each process also carries no earlier
variant's allocations, so its peak memory is this variant's, as in the harness's own workers.

Each process loads the model once, then trains warm-up rounds that are discarded (warmup_rounds) and
ROUNDS timed rounds (Bench.timed_round: each on a fresh copy of the model with the variant's method
attached), inside trackers.track_memory. It prints one JSON line.

    python -m bench.isolated VARIANT MODEL_NAME CACHE_DIR [ROUNDS]
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
from pathlib import Path


def warmup_rounds(tiny: bool) -> int:
    """HARNESS_BENCH_WARMUP_ROUNDS, default 1 for the tiny model (its first round after loading ran
    10-20% slower here) and 0 for all-MiniLM-L6-v2 (its first round, burn-in steps excluded, was no
    slower than the next two: 736-763 ms against 753-781 ms)."""
    return int(os.environ.get("HARNESS_BENCH_WARMUP_ROUNDS", 1 if tiny else 0))


def main(argv: list[str]) -> int:
    variant, model_name, cache_dir, *rest = argv
    rounds = int(rest[0]) if rest else 1
    from bench.conftest import Bench
    from harness import models, trackers
    bench = Bench("tiny" if model_name == models.TINY_MODEL else "minilm", Path(cache_dir))
    warmup = warmup_rounds(bench.tiny)
    per_round, steps = [], []
    with trackers.track_memory(bench.device) as memory:
        for i in range(warmup + rounds):
            timed = bench.timed_round(variant)
            if i >= warmup:
                per_round.append(statistics.median(timed))
                steps += timed
            gc.collect()  # the next round's copy must not stand on this one's memory
    memory["process_peak_rss_bytes"] = trackers.process_peak_rss_bytes()
    memory.update(step_s_per_round_medians=per_round, step_s_median=statistics.median(steps), step_s=steps,
                  timed_steps=len(steps),
                  warmup_rounds=warmup, burn_in_steps=bench.burn_in_steps,
                  precision=bench.spec(variant).precision)
    print(json.dumps(memory))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
