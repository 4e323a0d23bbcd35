"""One run in one fresh process: ``python -m harness.worker SPEC.json OUT.json [ARTIFACT_FOLDER]``.

The phases, in order: load (data, model, gradient probes, the method's adapter), train
(harness/train.py, inside the trackers), evaluate on the test split (in fp32), save the artifact and
load it back as a user would (harness/artifacts.py: it must reproduce the evaluated model), merge
check. Writes one run record atomically to OUT.json. Any failure is recorded (status ``failed`` with
a reason) instead of being lost. Exit status: 0 success, 1 failed run (record
written), 2 unreadable spec.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

from harness import artifacts, callbacks, convergence, devices, files, forgetting, results, trackers, train
from harness.spec import RunSpec, SpecError

EXIT_OK, EXIT_FAILED, EXIT_BAD_SPEC = 0, 1, 2
EXIT_INTERRUPTED = 130  # stopped by SIGINT or SIGTERM: no record, the parent decides what that means


def run(spec: RunSpec, *, artifact: Path | None = None) -> dict:
    """Execute one run; never raises for a run-time failure, which is recorded instead. ``artifact``:
    a folder (not yet existing) to save the trained arm's artifact in and leave there; by default it
    goes to a temporary folder, deleted once it is measured and checked."""
    record = results.new_record(spec)
    try:
        _execute(spec, record, artifact=artifact)
        record["status"] = "success"
    except Exception as exc:  # noqa: BLE001 - a failed run is a result, not a crash
        record["status"] = "failed"
        record["error"] = {"reason": classify(exc), "type": type(exc).__name__, "message": str(exc),
                           "traceback": traceback.format_exc(limit=20)}
        if isinstance(exc, callbacks.DivergedError):
            record["error"]["step"] = exc.step
    record["finished_at"] = results.now()
    return record


def classify(exc: BaseException) -> str:
    from harness.data import DataError
    from harness.models import ModelError
    if isinstance(exc, callbacks.DivergedError):
        return "diverged"
    if isinstance(exc, artifacts.ArtifactMismatch):
        return "artifact_mismatch"
    message = str(exc).lower()
    if ("out of memory" in message or "can't allocate memory" in message or isinstance(exc, MemoryError)
            or type(exc).__name__ == "OutOfMemoryError"):
        return "oom"
    if isinstance(exc, (DataError, ModelError, devices.DeviceError, SpecError)):
        return "bad_input"
    import errno
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk_full"
    return "exception"


def _execute(spec: RunSpec, record: dict, *, artifact: Path | None = None) -> None:
    from transformers import set_seed

    from harness import data, environment, models

    device = devices.resolve(spec.device)
    record["environment"] = environment.collect_environment(device)
    set_seed(spec.seed)  # python, numpy and torch, before anything random happens
    splits = data.load_splits(spec.dataset, seed=spec.dataset_seed, score_range=spec.score_range)
    splits = splits.for_category(spec.train_category).limited(train_limit=spec.train_limit, eval_limit=spec.eval_limit)
    record["data"] = splits.summary()

    # Loading includes the gradient probes (one backward pass on one batch each): which Linear layers
    # influence the loss, and which parameters receive a gradient (see _param_record).
    with trackers.track_time(device) as load:
        model_path = models.resolve_model_path(spec.model)
        model = models.load_model(model_path, device=device, max_seq_length=spec.max_seq_length)
        with trackers.track_time(device) as before:  # the base model's reference embeddings (forgetting.py)
            reference = forgetting.Probe(spec.forgetting_reference, spec.dataset)
            reference.before(model, model_path=model_path, device=device)
        method = spec.method
        active = models.forward_path_linears(model, splits.train, batch_size=spec.batch_size) if spec.lora else None
        if spec.lora is not None:
            inert_targets = models.check_inert_targets(model, spec.lora, active)
            if inert_targets:
                record.setdefault("warnings", []).append(
                    f"lora.target_modules also match inert modules (no gradient reaches them; their adapters "
                    f"never train and are not counted): {', '.join(inert_targets)}")
        tuner = method.attach(model, spec.lora, total_steps=train.total_steps(spec, len(splits.train)))
        record["params"] = _param_record(model, spec, splits.train, active=active)
    record["timings"]["load_s"] = load["wall_s"] - before["wall_s"]

    if not method.trains:
        _no_training(record)
    else:
        train.train_arm(model, spec, splits, device, record, tuner=tuner)
        train.restore_fp32_forward(model)

    with trackers.track_time(device) as ev:
        record["quality"] = evaluate_model(model, splits, spec)
    record["timings"]["eval_s"] = ev["wall_s"]
    if method.trains:
        record["training"]["convergence"] = convergence.of_record(record)
    with trackers.track_time(device) as after:
        record["quality"]["forgetting"] = reference.after(model)
    record["timings"]["forgetting_s"] = before["wall_s"] + after["wall_s"]

    if method.trains:
        ship_and_reload(model, spec, splits.test, device, record, base=model_path if method.adapter else None,
                        keep=artifact)
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


def evaluate_model(model, splits, spec: RunSpec) -> dict:
    """Encode validation and test texts with the model as trained, then score with evaluate.py."""
    from harness import evaluate, models

    val_a, val_b = models.encode_pairs(model, splits.validation)
    test_a, test_b = models.encode_pairs(model, splits.test)
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
    quality["test_category"] = list(splits.test.category)  # per-task tables score each adapter on its own
    return quality


def ship_and_reload(model, spec: RunSpec, pairs, device: str, record: dict, *, base: str | None,
                    keep: Path | None = None) -> None:
    """Save the artifact (harness/artifacts.py), load it back as a user would and check that it embeds
    the test texts like the evaluated model; out of tolerance, the run fails (artifact_mismatch).
    ``keep``: save it there and leave it (the runner moves it to OUT/models/<run_id>/)."""
    texts = sorted(set(pairs.text_a) | set(pairs.text_b))
    with trackers.track_time(device) as took, tempfile.TemporaryDirectory() as tmp:
        folder = keep or Path(tmp) / "artifact"
        record["params"].update(artifacts.save(model, spec.method, folder))
        record["artifact_check"] = artifacts.round_trip(model, folder, base=base, texts=texts, device=device,
                                                        max_seq_length=spec.max_seq_length)
        if keep is not None:
            record["artifact_saved"] = {"folder": f"models/{spec.run_id}", "base_model": spec.model if base else None,
                                        "base_model_path": base,
                                        "dir_bytes": record["params"]["artifact_dir_bytes"],
                                        "sha256": artifacts.content_hash(folder)}
    record["timings"]["artifact_s"] = took["wall_s"]
    if not record["artifact_check"]["within_tolerance"]:
        raise artifacts.ArtifactMismatch(record["artifact_check"])


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


def _stop_quietly_on_signals() -> None:
    """Ctrl-C in a terminal reaches the worker as well as the parent (the whole foreground process group
    gets it), and the parent stops a worker with SIGTERM. Either way the worker unwinds (its temporary
    folders removed) and ends with EXIT_INTERRUPTED, writing no record and printing no traceback of its
    own: the parent prints the one line the user needs and keeps every finished record."""
    import signal

    def stop(signum, frame):
        raise SystemExit(EXIT_INTERRUPTED)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _stop_quietly_on_signals()
    _die_with_parent()
    if len(argv) not in (2, 3):
        print("usage: python -m harness.worker SPEC.json OUT.json [ARTIFACT_FOLDER]", file=sys.stderr)
        return EXIT_BAD_SPEC
    spec_path, out_path = Path(argv[0]), Path(argv[1])
    artifact = Path(argv[2]) if len(argv) == 3 else None
    try:
        spec = RunSpec.from_dict(json.loads(spec_path.read_text()))
    except (OSError, json.JSONDecodeError, SpecError, TypeError) as exc:
        print(f"worker: cannot read spec {spec_path}: {exc}", file=sys.stderr)
        return EXIT_BAD_SPEC
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not callbacks.verbose():  # loading bars and load reports only with --verbose
        from transformers.utils import logging as hf_logging

        from harness import models
        models.quiet_progress_bars()
        hf_logging.set_verbosity_error()
    record = run(spec, artifact=artifact)
    files.write_json_atomic(out_path, record, overwrite=True)
    return EXIT_OK if record["status"] == "success" else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
