"""One run in one fresh process: ``python -m harness.worker SPEC.json OUT.json``.

Reads a spec, loads data and model, trains with SentenceTransformerTrainer inside the trackers,
evaluates on the test split and writes one run record atomically to OUT.json. Any failure is
recorded (status ``failed`` with a reason) instead of being lost. Exit status: 0 success,
1 failed run (record written), 2 unreadable spec.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from transformers import TrainerCallback

from harness import devices, results, trackers
from harness.spec import RunSpec, SpecError

EXIT_OK, EXIT_FAILED, EXIT_BAD_SPEC = 0, 1, 2
FAULT_ENV = "HARNESS_INJECT_FAULT"  # test-only: oom@STEP, sleep@SECONDS, touch@PATH or alloc@GIB (FaultInjector)


class DivergedError(FloatingPointError):
    def __init__(self, step: int, loss: float):
        self.step = step
        super().__init__(f"training diverged: loss {loss} at step {step}")


class DivergenceGuard(TrainerCallback):
    """Stops training at the first logged non-finite loss (logging_nan_inf_filter is off)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            raise DivergedError(state.global_step, loss)


class FaultInjector(TrainerCallback):
    """Test-only faults, switched on by the HARNESS_INJECT_FAULT environment variable.

    ``oom@N`` raises torch.OutOfMemoryError at the end of step N; ``sleep@S`` adds S seconds to
    every step (to prove that a regression check catches a slower step); ``touch@PATH`` creates PATH
    when the first step ends (a signal that training is under way, for tests that interrupt it);
    ``alloc@G`` really allocates a G GiB tensor after the first step (under a ``prlimit`` the CPU
    allocator then fails as it does when a batch does not fit).
    """

    def __init__(self, fault: str):
        kind, _, arg = fault.partition("@")
        if kind not in ("oom", "sleep", "touch", "alloc"):
            raise ValueError(f"{FAULT_ENV} = {fault!r}: expected oom@STEP, sleep@SECONDS, touch@PATH or alloc@GIB")
        self.kind, self.arg = kind, (arg if kind == "touch" else float(arg))

    def on_step_begin(self, args, state, control, **kwargs):
        if self.kind == "sleep":
            time.sleep(self.arg)

    def on_step_end(self, args, state, control, **kwargs):
        if self.kind == "touch" and state.global_step == 1:
            Path(self.arg).touch()
        if self.kind == "alloc" and state.global_step == 1:
            import torch
            torch.ones(int(self.arg * 2**30), dtype=torch.uint8)
        if self.kind == "oom" and state.global_step >= self.arg:
            import torch
            raise torch.OutOfMemoryError(f"injected fault: out of memory at step {state.global_step}")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_record(spec: RunSpec) -> dict:
    return {
        "schema_version": results.SCHEMA_VERSION,
        "run_id": spec.run_id,
        "spec_hash": spec.spec_hash,
        "method": spec.arm,
        "label": spec.label,
        "spec": spec.to_dict(),
        "status": "running",
        "error": None,
        "started_at": now(),
        "finished_at": None,
        "timings": {},
        "memory": {},
        "params": {},
        "energy": {},
        "quality": {},
        "training": {},
        "data": {},
        "environment": {},
        "warnings": [],
    }


def run(spec: RunSpec) -> dict:
    """Execute one run; never raises for a run-time failure, which is recorded instead."""
    record = new_record(spec)
    try:
        _execute(spec, record)
        record["status"] = "success"
    except Exception as exc:  # noqa: BLE001 - a failed run is a result, not a crash
        record["status"] = "failed"
        record["error"] = {"reason": classify(exc), "type": type(exc).__name__, "message": str(exc),
                           "traceback": traceback.format_exc(limit=20)}
        if isinstance(exc, DivergedError):
            record["error"]["step"] = exc.step
    record["finished_at"] = now()
    return record


def classify(exc: BaseException) -> str:
    from harness.data import DataError
    from harness.models import ModelError
    if isinstance(exc, DivergedError):
        return "diverged"
    message = str(exc).lower()
    if ("out of memory" in message or "can't allocate memory" in message or isinstance(exc, MemoryError)
            or type(exc).__name__ == "OutOfMemoryError"):
        return "oom"
    if isinstance(exc, (DataError, ModelError, devices.DeviceError, SpecError)):
        return "bad_input"
    return "exception"


def _execute(spec: RunSpec, record: dict) -> None:
    from transformers import set_seed

    from harness import data, environment, models

    device = devices.resolve(spec.device)
    record["environment"] = environment.collect_environment(device)
    set_seed(spec.seed)  # python, numpy and torch, before anything random happens
    splits = data.load_splits(spec.dataset, seed=spec.dataset_seed, score_range=spec.score_range)
    splits = splits.limited(train_limit=spec.train_limit, eval_limit=spec.eval_limit)
    record["data"] = splits.summary()

    # Loading includes the gradient probes (one backward pass on one batch each): which Linear layers
    # influence the loss, and which parameters receive a gradient (see _param_record).
    with trackers.track_time(device) as load:
        model = models.load_model(models.resolve_model_path(spec.model), device=device,
                                  max_seq_length=spec.max_seq_length)
        method = spec.method
        active = models.forward_path_linears(model, splits.train, batch_size=spec.batch_size) if spec.lora else None
        if spec.lora is not None:
            inert_targets = models.check_inert_targets(model, spec.lora, active)
            if inert_targets:
                record.setdefault("warnings", []).append(
                    f"lora.target_modules also match inert modules (no gradient reaches them; their adapters "
                    f"never train and are not counted): {', '.join(inert_targets)}")
        method.attach(model, spec.lora)
        record["params"] = _param_record(model, spec, splits.train, active=active)
    record["timings"]["load_s"] = load["wall_s"]

    if not method.trains:
        _no_training(record)
    else:
        train_arm(model, spec, splits, device, record)
        restore_fp32_forward(model)

    with trackers.track_time(device) as ev:
        record["quality"] = evaluate_model(model, splits, spec)
    record["timings"]["eval_s"] = ev["wall_s"]

    if method.trains:
        with tempfile.TemporaryDirectory() as tmp:
            record["params"].update(models.artifact_bytes(model, kind=method.artifact, dest=Path(tmp) / "artifact"))
    if method.merges:  # after the artifact is saved: merging replaces the adapter layers
        record["merge"] = merge_check(model, splits.test, device)


def _no_training(record: dict) -> None:
    """The baseline trains nothing: its training figures exist, as null with the reason."""
    reason = "baseline arm: no training region"
    record["timings"].update(train_wall_s=None, step_s_median=None, step_s_p90=None, samples_per_s=None,
                             tokens_per_s=None)
    record["memory"] = {"peak_memory_bytes": None, "baseline_memory_bytes": None, "source": reason}
    record["energy"] = {"energy_kwh": None, "energy_method": None, "energy_unavailable_reason": reason}


def _param_record(model, spec: RunSpec, train_pairs, *, active: set[str] | None) -> dict:
    """Parameter counts from the live model. ``trainable_params`` counts the parameters that receive a
    gradient in a probe backward pass on one training batch; ``requires_grad_params`` is what
    requires_grad says; ``inert_params`` names the difference by module (e.g. the pooler, which
    mean pooling never uses)."""
    from harness import models
    if not spec.method.trains:  # nothing is trained, whatever requires_grad says
        counts = {**models.count_params(model), "trainable_params": 0, "inert_params": {}}
    else:
        counts = models.count_params(model, receiving_grad=models.gradient_probe(model, train_pairs,
                                                                                  batch_size=spec.batch_size))
    out = {**counts, "trainable_pct": 100.0 * counts["trainable_params"] / counts["total_params"],
           "count_method": "parameters that receive a gradient in a probe backward pass of the training loss "
                           "on one training batch (requires_grad_params: requires_grad alone)"}
    expected_params = spec.method.expected_params
    if expected_params is not None:
        expected = expected_params(model, spec.lora, active)
        # lora_params_* keep their names from schema 2: the analytic count of any adapter method
        out.update(lora_params_expected=expected, lora_params_match=expected == counts["trainable_params"],
                   base_params=counts["total_params"] - counts["requires_grad_params"],
                   expected_params_formula=(expected_params.__doc__ or "").strip().splitlines()[0])
        if expected != counts["trainable_params"]:
            raise RuntimeError(f"{spec.arm} parameter cross-check failed: live count {counts['trainable_params']} "
                               f"!= analytic count {expected} ({out['expected_params_formula']}) over the "
                               "targeted layers on the forward path")
    return out


def train_dataset(pairs):
    from datasets import Dataset
    return Dataset.from_dict({"sentence1": pairs.text_a, "sentence2": pairs.text_b,
                              "score": [float(s) for s in pairs.score]})


def _training_args(spec: RunSpec, device: str, output_dir: str):
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


class ValidationProbe(TrainerCallback):
    """Time-to-quality: validation Spearman every N steps, against a training clock that
    excludes the probe's own evaluation time (which is reported separately)."""

    def __init__(self, model, pairs, every: int, device: str):
        self.model, self.pairs, self.every, self.device = model, pairs, every, device
        self.points: list[dict] = []
        self.eval_s = 0.0
        self._start = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self.probe(state.global_step)

    def probe(self, step: int) -> None:
        devices.synchronize(self.device)
        start = time.perf_counter()
        train_s = start - self._start - self.eval_s
        was_training = self.model.training
        spearman = validation_spearman(self.model, self.pairs)
        self.model.train(was_training)
        self.eval_s += time.perf_counter() - start
        self.points.append({"step": step, "train_s": train_s, "val_spearman": spearman})


def validation_spearman(model, pairs) -> float | None:
    from harness import evaluate
    a, b = encode_pairs(model, pairs)
    return evaluate.correlations(evaluate.cosine_rows(a, b), pairs.score)["spearman"]


def build_trainer(model, spec: RunSpec, train_pairs, device: str, *, output_dir: str, callbacks=()):
    """The SentenceTransformerTrainer every arm (and every benchmark) trains with.

    Adds the DivergenceGuard, and the test-only FaultInjector when HARNESS_INJECT_FAULT is set.
    """
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer import losses

    callbacks = [*callbacks, DivergenceGuard()]
    if os.environ.get(FAULT_ENV):
        callbacks.append(FaultInjector(os.environ[FAULT_ENV]))
    return SentenceTransformerTrainer(
        model=model, args=_training_args(spec, device, output_dir), train_dataset=train_dataset(train_pairs),
        loss=losses.CosineSimilarityLoss(model), callbacks=callbacks)


def train_arm(model, spec: RunSpec, splits, device: str, record: dict) -> None:
    timer = trackers.StepTimer(device)
    callbacks = [timer]  # first, so that a probe's evaluation never lands inside a timed step
    probe = ValidationProbe(model, splits.validation, spec.eval_every_steps, device) if spec.eval_every_steps else None
    if probe:
        callbacks.append(probe)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(model, spec, splits.train, device, output_dir=tmp, callbacks=callbacks)
        # The measured training region is exactly trainer.train(): data loading, forward,
        # backward and optimizer steps. Model loading and evaluation are timed separately.
        with trackers.track_energy(enabled=spec.measure_energy, country_iso_code=spec.country_iso_code,
                                   device=device) as energy:
            record["energy"] = energy
            with trackers.track_memory(device) as memory:
                record["memory"] = memory
                with trackers.track_time(device) as wall:
                    output = trainer.train()
    record["memory"]["process_peak_rss_bytes"] = trackers.process_peak_rss_bytes()
    from harness.environment import load_average
    record.setdefault("environment", {})["loadavg_1m_after_training"] = load_average()
    losses_seen = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    record["training"] = {"global_step": trainer.state.global_step, "train_loss": output.training_loss,
                          "loss_history": losses_seen}
    if not math.isfinite(output.training_loss):
        raise DivergedError(trainer.state.global_step, output.training_loss)
    probe_eval_s = probe.eval_s if probe else 0.0
    record["timings"].update(_throughput(timer.step_s, wall["wall_s"] - probe_eval_s, spec, splits, model,
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


def _throughput(step_s, wall_s, spec, splits, model, *, steps) -> dict:
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


def encode_pairs(model, pairs):
    """Embeddings of both sides of every pair, encoding each distinct text once (eval mode)."""
    model.eval()
    unique = sorted(set(pairs.text_a) | set(pairs.text_b))
    vectors = model.encode(unique, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
    index = {t: i for i, t in enumerate(unique)}
    return vectors[[index[t] for t in pairs.text_a]], vectors[[index[t] for t in pairs.text_b]]


def evaluate_model(model, splits, spec: RunSpec) -> dict:
    """Encode validation and test texts with the model as trained, then score with evaluate.py."""
    from harness import evaluate

    val_a, val_b = encode_pairs(model, splits.validation)
    test_a, test_b = encode_pairs(model, splits.test)
    test_cos = evaluate.cosine_rows(test_a, test_b)
    val_cos = evaluate.cosine_rows(val_a, val_b)
    quality = evaluate.evaluate(
        test_cos=test_cos, test_gold=splits.test.score, val_cos=val_cos, val_gold=splits.validation.score,
        pair_features=evaluate.pair_features(test_a, test_b), categories=splits.test.category,
        texts=(splits.test.text_a, splits.test.text_b), threshold=spec.compatible_threshold, seed=spec.seed)
    quality["split"] = "test"
    quality["eval_precision"] = "fp32"  # restore_fp32_forward removed any training autocast first
    quality["threshold_from"] = "validation"
    quality["validation_spearman"] = evaluate.correlations(val_cos, splits.validation.score)["spearman"]
    # Per pair, for the clustered bootstraps and paired tests: reports need nothing but the record.
    quality["test_cos"] = [round(float(c), 7) for c in test_cos]
    quality["test_gold"] = [float(g) for g in splits.test.score]
    quality["test_group"] = list(splits.test.group)
    return quality


MERGE_TOLERANCE = 1e-5


def merge_check(model, pairs, device: str) -> dict:
    """Merge the adapter into the base weights (peft's LoraLayer.merge) and check that the merged model
    embeds the test texts like the unmerged one; encoding throughput of base, unmerged and merged
    (one pass each over the same texts; the bench suite has repeated measurements)."""
    from harness import models
    texts = sorted(set(pairs.text_a) | set(pairs.text_b))
    model.eval()

    def encode():
        with trackers.track_time(device) as t:
            vectors = model.encode(texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
        return vectors, len(texts) / t["wall_s"]

    unmerged, unmerged_rate = encode()
    model.disable_adapters()
    _, base_rate = encode()
    model.enable_adapters()
    merged_layers = models.merge_lora(model)
    merged, merged_rate = encode()
    diff = float(abs(merged - unmerged).max())
    return {"merged_layers": merged_layers, "max_abs_diff": diff, "tolerance": MERGE_TOLERANCE,
            "within_tolerance": diff <= MERGE_TOLERANCE, "sentences": len(texts), "dtype": "float32",
            "base_sentences_per_s": base_rate, "unmerged_sentences_per_s": unmerged_rate,
            "merged_sentences_per_s": merged_rate}


def _die_with_parent() -> None:
    """On Linux, ask for SIGTERM when the parent dies, so a hard-killed sweep leaves no orphan
    worker training in the background (and spoiling the next run's timings)."""
    if sys.platform != "linux":
        return
    import ctypes
    import signal
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        sys.exit(EXIT_FAILED)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _die_with_parent()
    if len(argv) != 2:
        print("usage: python -m harness.worker SPEC.json OUT.json", file=sys.stderr)
        return EXIT_BAD_SPEC
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    try:
        spec = RunSpec.from_dict(json.loads(spec_path.read_text()))
    except (OSError, json.JSONDecodeError, SpecError, TypeError) as exc:
        print(f"worker: cannot read spec {spec_path}: {exc}", file=sys.stderr)
        return EXIT_BAD_SPEC
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    record = run(spec)
    results.write_json_atomic(out_path, record, overwrite=True)
    return EXIT_OK if record["status"] == "success" else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
