"""Training: the trainer factory every arm and every benchmark uses, its callbacks, and throughput.

``build_trainer`` makes sentence-transformers' own SentenceTransformerTrainer with the harness's
callbacks (harness/callbacks.py: DivergenceGuard always; the test-only FaultInjector when
HARNESS_INJECT_FAULT is set).
``train_arm`` runs it inside the trackers and fills the record's timings, memory, energy and
training sections. The worker (harness/worker.py) calls it between loading and evaluation.
"""

from __future__ import annotations

import math
import os
import tempfile

from harness import cpu_share, trackers
from harness.callbacks import (
    FAULT_ENV,
    ConsoleProgress,
    DivergedError,
    DivergenceGuard,
    FaultInjector,
    ValidationProbe,
    verbose,
)
from harness.spec import RunSpec


def train_dataset(pairs):
    from datasets import Dataset
    return Dataset.from_dict({"sentence1": pairs.text_a, "sentence2": pairs.text_b,
                              "score": [float(s) for s in pairs.score]})


def training_args(spec: RunSpec, device: str, output_dir: str):
    from sentence_transformers import SentenceTransformerTrainingArguments
    return SentenceTransformerTrainingArguments(
        output_dir=output_dir,
        num_train_epochs=spec.epochs,
        max_steps=spec.max_steps if spec.max_steps > 0 else -1,
        per_device_train_batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        warmup_steps=spec.warmup_steps,
        seed=spec.seed,
        data_seed=spec.seed,  # the same data order in every arm
        bf16=spec.precision == "bf16",
        fp16=spec.precision == "fp16",
        use_cpu=device == "cpu",
        save_strategy="no",
        report_to="none",
        logging_strategy="steps",
        logging_steps=10,
        logging_nan_inf_filter=False,  # a NaN loss must be seen, not averaged away
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def total_steps(spec: RunSpec, n_train: int) -> int:
    """Optimizer steps a run takes: max_steps when set, else epochs over the training pairs."""
    return spec.max_steps if spec.max_steps > 0 else math.ceil(spec.epochs * math.ceil(n_train / spec.batch_size))


def build_trainer(model, spec: RunSpec, train_pairs, device: str, *, output_dir: str, callbacks=(), tuner=None):
    """The SentenceTransformerTrainer every arm (and every benchmark) trains with.

    Adds what the method needs (methods.py: an optimizer such as LoRA+'s, callbacks such as AdaLoRA's
    allocator, given the tuner that ``Method.attach`` returned), the DivergenceGuard, and the
    test-only FaultInjector when HARNESS_INJECT_FAULT is set.
    """
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer import losses

    method = spec.method
    callbacks = [*callbacks, *(method.callbacks(tuner) if method.callbacks else []), DivergenceGuard()]
    if os.environ.get(FAULT_ENV):
        callbacks.append(FaultInjector(os.environ[FAULT_ENV]))
    args = training_args(spec, device, output_dir)
    optimizer = method.optimizer(model, args) if method.optimizer else None
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=train_dataset(train_pairs),
        loss=losses.CosineSimilarityLoss(model), callbacks=callbacks, optimizers=(optimizer, None))
    if not verbose():  # the console is the harness's: no tqdm bar, no per-step log dicts (the log is kept)
        from transformers.trainer_callback import PrinterCallback, ProgressCallback
        for printer in (ProgressCallback, PrinterCallback):
            trainer.remove_callback(printer)
    return trainer


def train_arm(model, spec: RunSpec, splits, device: str, record: dict, *, tuner=None) -> None:
    timer = trackers.StepTimer(device)
    callbacks = [timer]  # first, so that a probe's evaluation never lands inside a timed step
    probe = ValidationProbe(model, splits.validation, spec.eval_every_steps, device) if spec.eval_every_steps else None
    if probe:
        callbacks.append(probe)
    if not verbose():
        callbacks.append(ConsoleProgress())
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(model, spec, splits.train, device, output_dir=tmp, callbacks=callbacks, tuner=tuner)
        # The measured training region is exactly trainer.train(): data loading, forward,
        # backward and optimizer steps. Model loading and evaluation are timed separately.
        with trackers.track_energy(enabled=spec.measure_energy, country_iso_code=spec.country_iso_code,
                                   device=device) as energy:
            record["energy"] = energy
            with trackers.track_memory(device) as memory:
                record["memory"] = memory
                with trackers.track_cpu_share() as beside, trackers.track_time(device) as wall:
                    output = trainer.train()
    record["memory"]["process_peak_rss_bytes"] = trackers.process_peak_rss_bytes()
    from harness.environment import load_average
    record.setdefault("environment", {})["loadavg_1m_after_training"] = load_average()
    record["environment"].update(cpu_share.environment_fields(beside))
    losses_seen = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    record["training"] = {"global_step": trainer.state.global_step, "train_loss": output.training_loss,
                          "loss_history": losses_seen}
    if not math.isfinite(output.training_loss):
        raise DivergedError(trainer.state.global_step, output.training_loss)
    probe_eval_s = probe.eval_s if probe else 0.0
    record["timings"].update(throughput(timer.step_s, wall["wall_s"] - probe_eval_s, spec, splits, model,
                                         steps=trainer.state.global_step))
    if probe:
        record["timings"].update(probe_eval_s=probe_eval_s, train_wall_s_including_probes=wall["wall_s"])
        record["training"]["validation_curve"] = probe.points


def restore_fp32_forward(model) -> None:
    """Undo the mixed-precision wrapper that the trainer (accelerate) leaves on ``model.forward``.

    With bf16 or fp16, accelerate wraps the model's forward in autocast for training and does not
    remove it afterwards, so evaluation and the merge check would also run in reduced precision.
    Quality is measured in fp32, so that differences between precisions come from training.
    """
    from accelerate.utils import extract_model_from_parallel
    extract_model_from_parallel(model, keep_fp32_wrapper=False)


def samples_for_steps(steps: int, *, n_train: int, batch_size: int) -> int:
    """Samples seen in ``steps`` optimizer steps (the last batch of an epoch may be short)."""
    per_epoch = math.ceil(n_train / batch_size)
    full, rest = divmod(steps, per_epoch)
    return full * n_train + min(rest * batch_size, n_train)


def throughput(step_s, wall_s, spec, splits, model, *, steps) -> dict:
    summary = trackers.summarize_steps(step_s, burn_in_steps=spec.burn_in_steps)
    samples = samples_for_steps(steps, n_train=len(splits.train), batch_size=spec.batch_size)
    tokens_per_epoch = count_tokens(model, splits.train)
    tokens = tokens_per_epoch * samples / len(splits.train)
    median = summary["step_s_median"]
    return {
        "train_wall_s": wall_s,
        **summary,
        "burn_in_steps": spec.burn_in_steps,
        "train_overhead_s": wall_s - summary["step_s_sum"],
        "samples_processed": samples,
        "samples_per_s": samples / wall_s,
        "steady_samples_per_s": spec.batch_size / median if median else None,
        "tokens_processed": tokens,
        "tokens_per_s": tokens / wall_s,
        "method": ("train_wall_s: perf_counter around trainer.train(), device synced at both ends; "
                   "step_s_*: trainer on_step_begin/on_step_end callbacks, first burn_in_steps excluded; "
                   "samples_per_s and tokens_per_s over train_wall_s; tokens are non-padding tokens "
                   "of both texts after truncation; steady_samples_per_s = batch_size / step_s_median"),
    }


def count_tokens(model, pairs) -> int:
    tokenizer = model.tokenizer
    limit = model.max_seq_length
    enc = tokenizer(pairs.text_a + pairs.text_b, truncation=True, max_length=limit)
    return sum(len(ids) for ids in enc["input_ids"])
