"""Training throughput per variant (method, rank, precision), and where the time goes (forward vs backward).

Each round trains a fresh copy of the model with the harness's own SentenceTransformerTrainer
(``train.build_trainer``) for burn-in + timed steps. pytest-benchmark times each whole round;
extra_info holds the per-step figures from the trainer's callbacks with the burn-in steps excluded.
"""

from __future__ import annotations

import statistics
import tempfile

import pytest
import torch
from sentence_transformers.sentence_transformer import losses

from bench.conftest import ARMS, PEAK_REPEATS, TRAIN_VARIANTS, session_peak, timed_pedantic
from harness import flops, models, trackers, train


def _round_setup(bench, variant, timers):
    def setup():
        model, spec, tuner = bench.prepared(variant)
        timer = trackers.StepTimer(bench.device)
        timers.append(timer)
        trainer = train.build_trainer(model, spec, bench.train_pairs(spec), bench.device,
                                       output_dir=tempfile.mkdtemp(prefix="bench-"), callbacks=[timer], tuner=tuner)
        return (trainer,), {}
    return setup


def step_stats(timers, burn_in: int) -> dict:
    per_round = [statistics.median(t.step_s[burn_in:]) for t in timers if len(t.step_s) > burn_in]
    all_steps = [s for t in timers for s in t.step_s[burn_in:]]
    median = statistics.median(all_steps)
    cv = statistics.stdev(per_round) / statistics.mean(per_round) if len(per_round) > 1 else None
    return {"step_s_median": median, "step_s_per_round_medians": per_round,
            "step_cv_over_rounds": cv, "step_cv_above_5pct": None if cv is None else cv > 0.05}


@pytest.mark.parametrize("arm", TRAIN_VARIANTS)
def test_train_step(benchmark, bench, arm):
    timers: list = []
    setup = _round_setup(bench, arm, timers)
    with trackers.track_memory(bench.device) as memory:
        benchmark.pedantic(lambda trainer: trainer.train(), setup=setup, rounds=bench.rounds, iterations=1)
    model, spec = bench.model(arm)  # a fresh copy, for parameter counts and the tokenizer
    stats = step_stats(timers, spec.burn_in_steps)
    pairs = bench.train_pairs(spec)
    tokens_per_sample = train.count_tokens(model, pairs) / len(pairs)
    isolated = bench.isolated_memory(arm)  # one more round in a fresh process: this variant's own peak
    benchmark.extra_info.update(bench.common_info(model), arm=arm, method=spec.arm, precision=spec.precision,
                                **stats,
                                samples_per_s=spec.batch_size / stats["step_s_median"],
                                tokens_per_s=spec.batch_size * tokens_per_sample / stats["step_s_median"],
                                peak_memory_bytes=isolated["peak_memory_bytes"],
                                memory_source=f"a fresh process (bench/isolated.py); {isolated['source']}",
                                isolated_process_peak_rss_bytes=isolated.get("process_peak_rss_bytes"),
                                in_process_peak_memory_bytes=memory["peak_memory_bytes"],
                                burn_in_steps=spec.burn_in_steps, timed_steps_per_round=bench.steps_per_round)
    # every round (one with --benchmark-disable) timed every step, burn-in included
    assert timers and all(len(t.step_s) == spec.max_steps for t in timers), [len(t.step_s) for t in timers]


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


@pytest.mark.parametrize("arm", MFU_ARMS)
def test_mfu(benchmark, bench, arm):
    """Achieved model FLOP/s of forward+backward over this session's matmul peak (conftest.session_peak),
    both in fp32 (the peak in the precision of the step)."""
    peak = session_peak(bench.device, "fp32")
    model, spec, loss_fn, feats, labels, seq_lens = _training_batch(bench, arm)

    def step():
        model.zero_grad(set_to_none=True)
        loss_fn(feats, labels).backward()
        bench_sync(bench)

    _, median_s = timed_pedantic(benchmark, step, rounds=bench.rounds * 2, warmup_rounds=1)
    lora_params = models.count_params(model)["trainable_params"] if spec.lora else 0
    counted = flops.step_flops(flops.encoder_shape(model, lora_params=lora_params), seq_lens=seq_lens,
                               lora=spec.lora is not None)
    achieved = counted["step_flops"] / median_s
    benchmark.extra_info.update(bench.common_info(model), arm=arm, **counted, achieved_flops_per_s=achieved,
                                matmul_peak_flops_per_s=peak, matmul_peak_scope="once per session, best of "
                                f"{PEAK_REPEATS}", mfu=achieved / peak,
                                flop_formula="harness/flops.py (Kaplan et al. 2020; Narayanan et al. 2021)")
    # above 1, the FLOP count or the peak would be wrong; at 0 nothing was measured
    assert 0 < achieved / peak < 1, achieved / peak
