"""Training throughput per variant (method, rank, precision), and where the time goes (forward vs backward).

Each round trains a fresh copy of the model with the harness's own SentenceTransformerTrainer
(``train.build_trainer``) for burn-in + timed steps; extra_info holds the per-step figures from the
trainer's callbacks with the burn-in steps excluded. test_train_step runs its rounds in fresh
processes (bench/isolated.py); test_step_ratio interleaves two variants' rounds in this process.
"""

from __future__ import annotations

import statistics

import pytest
import torch
from sentence_transformers.sentence_transformer import losses

from bench.conftest import (
    ARMS,
    PEAK_REPEATS,
    PRECISIONS,
    RATIO_PAIRS,
    TRAIN_VARIANTS,
    alternate,
    session_peak,
    timed_pedantic,
)
from harness import benchcompare, environment, flops, models, train


@pytest.mark.parametrize("arm", TRAIN_VARIANTS)
def test_train_step(benchmark, bench, arm):
    """The variant's rounds, spread over HARNESS_BENCH_PROCESSES fresh processes (bench/isolated.py,
    warm-up rounds discarded in each). pytest-benchmark's own round is one whole worker process, its
    start included; the step times in extra_info come from the trainer's callbacks inside the workers,
    and bench-compare compares the per-process medians."""
    rounds_each = -(-bench.rounds // bench.processes)  # ceil: every process runs the same rounds
    workers: list[dict] = []

    def one_process():
        workers.append(bench.worker(arm, rounds=rounds_each))

    benchmark.pedantic(one_process, rounds=bench.processes, iterations=1)
    model, spec = bench.model(arm)  # a fresh copy, for parameter counts and the tokenizer
    per_round = [m for w in workers for m in w["step_s_per_round_medians"]]
    per_process = [statistics.median(w["step_s_per_round_medians"]) for w in workers]
    median = statistics.median(per_round)
    cv = benchcompare.cv(per_round)
    pairs = bench.train_pairs(spec)
    tokens_per_sample = train.count_tokens(model, pairs) / len(pairs)
    peak = max(workers, key=lambda w: w["peak_memory_bytes"] or 0)
    benchmark.extra_info.update(bench.common_info(model), arm=arm, method=spec.arm, precision=spec.precision,
                                step_s_median=median, step_s_per_round_medians=per_round,
                                step_s_per_process_medians=per_process, processes=len(workers),
                                rounds_per_process=rounds_each, warmup_rounds_per_process=workers[0]["warmup_rounds"],
                                step_cv_over_rounds=cv, step_cv_above_5pct=None if cv is None else cv > 0.05,
                                step_cv_over_processes=benchcompare.cv(per_process),
                                samples_per_s=spec.batch_size / median,
                                tokens_per_s=spec.batch_size * tokens_per_sample / median,
                                peak_memory_bytes=peak["peak_memory_bytes"],
                                memory_source=f"the largest of {len(workers)} fresh processes (bench/isolated.py); "
                                              f"{peak['source']}",
                                isolated_process_peak_rss_bytes=peak.get("process_peak_rss_bytes"),
                                burn_in_steps=spec.burn_in_steps, timed_steps_per_round=bench.steps_per_round)
    # every process timed every round it was asked for (one with --benchmark-disable)
    assert workers and all(len(w["step_s_per_round_medians"]) == rounds_each for w in workers)


@pytest.mark.parametrize("pair", [f"{a}/{b}" for a, b in RATIO_PAIRS])
def test_step_ratio(benchmark, bench, pair):
    """Step time of one variant over another (LoRA / standard, bf16 / fp32), their rounds interleaved
    (A B B A ...): each round pair gives one ratio of per-round median step times (burn-in excluded);
    the median over rounds comes with a 95% bootstrap CI (rounds resampled, pairs kept together)."""
    numerator, denominator = pair.split("/")

    def one_round(variant: str) -> float:
        return statistics.median(bench.timed_round(variant))

    num_s, den_s = benchmark.pedantic(alternate, args=(bench.rounds, lambda: one_round(numerator),
                                                       lambda: one_round(denominator)), rounds=1, iterations=1)
    r = benchcompare.paired_ratio(den_s, num_s)  # per round: numerator step time / denominator step time
    benchmark.extra_info.update(pair=pair, step_time_ratio=r["ratio"],
                                step_time_ratio_ci95=[r["ratio_lo"], r["ratio_hi"]], rounds=r["rounds"],
                                per_round_ratios=r["per_round_ratios"],
                                step_s_median_numerator=statistics.median(num_s),
                                step_s_median_denominator=statistics.median(den_s),
                                threads=torch.get_num_threads(), loadavg_1m=environment.load_average(),
                                ratio_method="paired: interleaved rounds, median of per-round ratios, "
                                             "95% bootstrap CI over rounds")
    print(f"\n{pair} step time: {r['ratio']:.3f} [95% CI {r['ratio_lo']:.3f}, {r['ratio_hi']:.3f}] over {r['rounds']} "
          "interleaved rounds")
    assert len(num_s) == len(den_s) == bench.rounds


def _training_batch(bench, arm):
    """A fresh model in train mode, its loss and one fixed batch of dating pairs."""
    model, spec = bench.model(arm)
    model.train()
    return (model, spec, losses.CosineSimilarityLoss(model), *_fixed_batch(bench, model))


def _fixed_batch(bench, model):
    pairs = bench.splits.train.head(bench.batch_size)
    feats = [model.tokenize(pairs.text_a), model.tokenize(pairs.text_b)]
    feats = [{k: v.to(bench.device) if isinstance(v, torch.Tensor) else v for k, v in f.items()} for f in feats]
    labels = torch.tensor(pairs.score, dtype=torch.float32, device=bench.device)
    seq_lens = [f["input_ids"].shape[1] for f in feats for _ in range(bench.batch_size)]
    return feats, labels, seq_lens


@pytest.mark.parametrize("phase", ["forward", "backward"])
@pytest.mark.parametrize("arm", ARMS)
def test_forward_backward(benchmark, bench, arm, phase):
    """Forward alone and backward alone on one fixed batch: where LoRA saves time and where not."""
    model, spec, loss_fn, feats, labels, seq_lens = _training_batch(bench, arm)

    def forward():
        model.zero_grad(set_to_none=True)
        loss = loss_fn(feats, labels)
        bench_sync(bench)
        return loss

    if phase == "forward":
        _, median_s = timed_pedantic(benchmark, forward, rounds=bench.rounds * 2, warmup_rounds=1)
    else:
        def backward(loss):
            loss.backward()
            bench_sync(bench)
        _, median_s = timed_pedantic(benchmark, backward, setup=lambda: ((forward(),), {}),
                                     rounds=bench.rounds * 2, warmup_rounds=1)
    benchmark.extra_info.update(bench.common_info(model), arm=arm, phase=phase, median_s=median_s,
                                samples_per_s=bench.batch_size / median_s, tokens_per_s=sum(seq_lens) / median_s)


def bench_sync(bench):
    from harness import devices
    devices.synchronize(bench.device)  # note: a CPU-GPU sync point, so the clock covers the kernels


# The FLOP formula (harness/flops.py) knows full fine-tuning and LoRA's A and B matmuls; other
# adapters (DoRA's norms, IA3's scales) do work it does not count, so their MFU is not reported.
MFU_ARMS = [a for a in ARMS if a.split("-")[0] in ("standard", "lora")]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("arm", MFU_ARMS)
def test_mfu(benchmark, bench, arm, precision):
    """Achieved model FLOP/s of forward+backward over this session's matmul peak in the step's own
    precision (conftest.session_peak: fp32 for an fp32 step; bf16 for a bf16 autocast step, where a CPU
    with AMX multiplies several times faster than in fp32), so that each configuration is set against
    the hardware it could use."""
    peak = session_peak(bench.device, precision)
    model, spec, loss_fn, feats, labels, seq_lens = _training_batch(bench, arm)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    device_type = "cuda" if bench.device == "cuda" else "cpu"

    def step():
        model.zero_grad(set_to_none=True)
        with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
            loss = loss_fn(feats, labels)
        loss.backward()
        bench_sync(bench)

    _, median_s = timed_pedantic(benchmark, step, rounds=bench.rounds * 2, warmup_rounds=1)
    lora_params = models.count_params(model)["trainable_params"] if spec.lora else 0
    counted = flops.step_flops(flops.encoder_shape(model, lora_params=lora_params), seq_lens=seq_lens,
                               lora=spec.lora is not None)
    achieved = counted["step_flops"] / median_s
    benchmark.extra_info.update(bench.common_info(model), arm=arm, precision=precision, **counted,
                                achieved_flops_per_s=achieved, matmul_peak_flops_per_s=peak,
                                matmul_peak_precision=precision,
                                matmul_peak_scope=f"once per session and precision, best of {PEAK_REPEATS}",
                                mfu=achieved / peak,
                                flop_formula="harness/flops.py (Kaplan et al. 2020; Narayanan et al. 2021)")
    # above 1, the FLOP count or the peak would be wrong; at 0 nothing was measured
    assert 0 < achieved / peak < 1, achieved / peak
