"""Does the harness measure faithfully? Ratios measured side by side in one run.

Rounds of the two variants alternate (A B B A A B ...) so that drift on a shared machine hits
both equally; each round gives one paired ratio, and the median over rounds comes with a 95%
bootstrap CI (harness/benchcompare.paired_ratio). Targets: trackers-on / trackers-off throughput
>= 0.98, harness / plain trainer >= 0.98, each judged met (CI at or above), missed (CI below) or
undecided. The verdict is recorded in extra_info and printed, not failed: one noisy run on a
shared machine must not break a suite that exists to report numbers.
"""

from __future__ import annotations

import statistics
import tempfile
import time

from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer import losses

from bench.conftest import alternate
from harness import benchcompare, trackers, train

TARGET_RATIO = 0.98


def _report(benchmark, name: str, slow: list[float], fast_ref: list[float]) -> float:
    """The per-round paired ratio (reference / measured time) with its 95% CI, and the verdict
    against the target: met (CI at or above), missed (CI below) or undecided (CI straddles it)."""
    r = benchcompare.paired_ratio(slow, fast_ref, target=TARGET_RATIO)
    benchmark.extra_info.update({f"{name}_ratio": r["ratio"], f"{name}_ratio_ci95": [r["ratio_lo"], r["ratio_hi"]],
                                 "rounds": r["rounds"], "per_round_ratios": r["per_round_ratios"],
                                 "target": TARGET_RATIO, "verdict": r["verdict"],
                                 "meets_target": r["ratio"] >= TARGET_RATIO,
                                 "seconds_measured": statistics.median(slow),
                                 "seconds_reference": statistics.median(fast_ref)})
    print(f"\n{name}: throughput ratio {r['ratio']:.3f} [95% CI {r['ratio_lo']:.3f}, {r['ratio_hi']:.3f}] over "
          f"{r['rounds']} alternating rounds; target >= {TARGET_RATIO}: {r['verdict'].upper()}")
    return r["ratio"]


def test_measurement_overhead(benchmark, bench):
    """Every tracker on (step timer, memory, energy) against none, around the same trainer.train()."""
    def one_round(with_trackers: bool) -> float:
        model, spec = bench.model("standard")
        callbacks = [trackers.StepTimer(bench.device)] if with_trackers else []
        trainer = train.build_trainer(model, spec, bench.train_pairs(spec), bench.device,
                                       output_dir=tempfile.mkdtemp(), callbacks=callbacks)
        if not with_trackers:
            start = time.perf_counter()
            trainer.train()
            elapsed = time.perf_counter() - start
        else:
            with trackers.track_energy(enabled=True, country_iso_code="USA", device=bench.device), \
                    trackers.track_memory(bench.device), trackers.track_time(bench.device) as wall:
                trainer.train()
            elapsed = wall["wall_s"]
            assert len(callbacks[0].step_s) == spec.max_steps  # the timer saw every step
        assert trainer.state.global_step == spec.max_steps  # both sides trained the same steps
        return elapsed

    on, off = benchmark.pedantic(alternate, args=(bench.ratio_rounds, lambda: one_round(True),
                                                  lambda: one_round(False)), rounds=1, iterations=1)
    _report(benchmark, "overhead", on, off)
    assert len(on) == len(off) == bench.ratio_rounds  # rounds alternated, one of each per round


def test_harness_vs_plain_trainer(benchmark, bench):
    """The harness's standard arm against a plain SentenceTransformerTrainer.train() a user would write."""
    def harness_run() -> float:
        model, spec = bench.model("standard")
        record = {"timings": {}}
        splits = bench.splits.limited(train_limit=spec.max_steps * spec.batch_size, eval_limit=0)
        train.train_arm(model, spec, splits, bench.device, record)
        assert record["training"]["global_step"] == spec.max_steps
        return record["timings"]["train_wall_s"]

    def plain_run() -> float:
        model, spec = bench.model("standard")
        pairs = bench.train_pairs(spec)
        args = SentenceTransformerTrainingArguments(
            output_dir=tempfile.mkdtemp(), max_steps=spec.max_steps, per_device_train_batch_size=spec.batch_size,
            learning_rate=spec.learning_rate, warmup_steps=spec.warmup_steps, seed=spec.seed,
            save_strategy="no", report_to="none", use_cpu=bench.device == "cpu")
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train.train_dataset(pairs),
                                             loss=losses.CosineSimilarityLoss(model))
        start = time.perf_counter()
        trainer.train()
        elapsed = time.perf_counter() - start
        assert trainer.state.global_step == spec.max_steps  # the same steps as the harness's arm
        return elapsed

    harness_s, plain_s = benchmark.pedantic(alternate, args=(bench.ratio_rounds, harness_run, plain_run),
                                            rounds=1, iterations=1)
    _report(benchmark, "harness_vs_plain", harness_s, plain_s)
    assert len(harness_s) == len(plain_s) == bench.ratio_rounds
