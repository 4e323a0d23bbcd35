"""Serve a job's per-category adapters from one process: ``python -m harness serve OUT``.

For a job run with ``run --per-category ... --save-models``: the base model is loaded once, every
category's adapter is loaded onto it from ``OUT/models/<run_id>/`` with peft's own loaders
(``PeftModel.from_pretrained`` for the first, ``load_adapter`` for the others), and each one in turn
is made active (``set_adapter``) and encodes its category's test pairs. The cosines must reproduce the
ones its run recorded (``quality.test_cos``) within TOLERANCE: the adapters really are interchangeable
on one resident base. Recorded in OUT/serving.json: each adapter's largest cosine difference and the
time ``set_adapter`` took, the process's resident memory before the base, with the base alone and with
every adapter loaded. tasks.md shows it (tasks.serving_markdown).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from harness import files, results
from harness.figures import lookup

TOLERANCE = 1e-5  # float32 cosines of the same model on the same texts


class ServingError(ValueError):
    """A job that has nothing to serve (one line, naming what is missing)."""


def _rss() -> int:
    import psutil
    return psutil.Process().memory_info().rss


def _adapters(out: Path, records: list[dict]) -> list[dict]:
    runs = [r for r in records if r["status"] == "success" and lookup(r, "spec.train_category")
            and lookup(r, "artifact_saved.folder") == f"models/{r['run_id']}"]  # where the runner keeps it
    if not runs:
        raise ServingError(f"{out}: no per-category adapter kept in {out / 'models'} (run with --per-category "
                           "and --save-models)")
    missing = [r["run_id"] for r in runs if not (out / r["artifact_saved"]["folder"]).is_dir()]
    if missing:
        raise ServingError(f"{out}: the kept adapter folder of {', '.join(missing)} is missing under {out / 'models'}")
    bases = sorted({r["spec"]["model"] for r in runs})
    if len(bases) != 1:
        raise ServingError(f"{out}: the adapters belong to different base models ({', '.join(bases)})")
    return sorted(runs, key=lambda r: (r["spec"]["train_category"], r["spec"]["seed"], r["run_id"]))


def serve(out: Path, records: list[dict]) -> dict:
    """Load the base once and every per-category adapter onto it; check each against its record
    (``records``: the folder's run records, as results.load_runs reads them)."""
    import gc

    from sentence_transformers import SentenceTransformer

    from harness import data, evaluate, models
    from harness.artifacts import with_peft_adapter
    out = Path(out)
    runs = _adapters(out, records)
    spec = runs[0]["spec"]
    try:
        splits = data.load_splits(spec["dataset"], seed=spec.get("dataset_seed", 0),
                                  score_range=tuple(spec.get("score_range", (0.0, 1.0))))
        base = models.resolve_model_path(spec["model"])
    except (data.DataError, models.ModelError, ValueError, TypeError) as exc:
        raise ServingError(f"{out}: cannot load what its runs were trained on ({exc})") from None
    test = splits.test.head(spec.get("eval_limit", 0))
    if splits.fingerprint != lookup(runs[0], "data.fingerprint"):
        raise ServingError(f"{out}: the data of {spec['dataset']!r} has changed since these runs")
    gc.collect()
    rss_before = _rss()
    model = SentenceTransformer(base, device="cpu").eval()
    if spec.get("max_seq_length"):
        model.max_seq_length = spec["max_seq_length"]
    gc.collect()
    rss_base = _rss()
    names = {}
    for i, r in enumerate(runs):
        names[r["run_id"]] = f"task{i}"
        folder = out / r["artifact_saved"]["folder"]
        if i == 0:
            with_peft_adapter(model, folder, adapter_name=names[r["run_id"]])
        else:
            model[0].auto_model.load_adapter(str(folder), adapter_name=names[r["run_id"]])
    gc.collect()
    rss_all = _rss()
    served = []
    for r in runs:
        own = [i for i, c in enumerate(test.category) if c == r["spec"]["train_category"]]
        started = time.perf_counter()
        model[0].auto_model.set_adapter(names[r["run_id"]])
        switch_s = time.perf_counter() - started
        cos = evaluate.cosine_rows(*models.encode_pairs(model, test.of_category(r["spec"]["train_category"])))
        recorded = np.asarray(r["quality"]["test_cos"], dtype=float)[own]
        diff = float(np.max(np.abs(cos - recorded))) if own else 0.0
        served.append({"run_id": r["run_id"], "category": r["spec"]["train_category"], "seed": r["spec"]["seed"],
                       "pairs": len(own), "max_abs_cos_diff": diff, "within_tolerance": diff <= TOLERANCE,
                       "set_adapter_s": switch_s})
    record = {"base_model": spec["model"], "device": "cpu", "tolerance": TOLERANCE, "adapters": served,
              "rss_before_bytes": rss_before, "rss_base_bytes": rss_base, "rss_all_bytes": rss_all,
              "per_adapter_bytes": (rss_all - rss_base) / len(runs),
              "method": "one process: the base loaded once (SentenceTransformer), every adapter loaded onto it "
                        "with peft (PeftModel.from_pretrained, then load_adapter), each made active with "
                        "set_adapter and its category's test pairs encoded; RSS from psutil after gc"}
    files.write_json_atomic(out / results.SERVING_FILE, record)
    return record
