"""Learning against forgetting: how much general quality a fine-tuned arm lost.

Every trained arm is also scored zero-shot on a reference benchmark it did not train on (Biderman
et al., TMLR 2024, "LoRA Learns Less and Forgets Less"). The default reference is the STS-B test
split, or ``dating`` when training on STS-B (``forgetting_reference = auto``); ``none`` switches it
off, and a .csv/.jsonl path names a user file. Three figures:

- ``spearman``: the tuned model's test Spearman on the reference;
- ``forgetting``: the untuned base model's reference Spearman minus the tuned one's (positive means
  general quality was lost);
- ``drift_mean_cos``: the mean cosine between the base and the tuned embedding of each reference
  text (1 means the representation did not move).

The base model's reference embeddings are taken before the adapter is attached, once per job: the
first run of a job encodes them and leaves them in the job's folder (``OUT/.cache/``, named after
the model's files, the reference, the sequence length, the device and the torch version); later
runs of the job read them back, and each record says which (``base_source``). A reference that
cannot be loaded (STS-B's package missing, say) is recorded with its reason; it never fails the run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from harness import models

CACHE_ENV = "HARNESS_JOB_CACHE"  # set by the runner for its workers: the job's cache folder


def resolve(reference: str, dataset: str) -> str:
    """``auto`` -> the reference of the arm's dataset (data.DATASETS: stsb, or dating when it trains on
    STS-B); stsb for a user file."""
    if reference != "auto":
        return reference
    from harness import data
    return data.DATASETS[dataset].forgetting_reference if dataset in data.DATASETS else "stsb"


def load_reference(reference: str):
    """The reference benchmark's test pairs."""
    from harness import data
    return data.load_splits(reference).test


def spearman_of(texts: list[str], vectors: np.ndarray, pairs) -> float | None:
    from harness import evaluate
    from harness.models import pair_vectors
    a, b = pair_vectors(texts, vectors, pairs)
    return evaluate.correlations(evaluate.cosine_rows(a, b), pairs.score)["spearman"]


def drift(base: np.ndarray, tuned: np.ndarray) -> float:
    """Mean cosine between each text's base and tuned embedding."""
    num = (base * tuned).sum(axis=1)
    den = np.linalg.norm(base, axis=1) * np.linalg.norm(tuned, axis=1)
    return float(np.mean(num / np.where(den == 0, 1.0, den)))


class Probe:
    """Holds the base model's reference embeddings between the load phase and the evaluation phase."""

    def __init__(self, reference: str, dataset: str):
        self.reference = resolve(reference, dataset)
        self.pairs = None
        self.texts: list[str] = []
        self.base_vectors = None
        self.base_spearman = None
        self.base_source = None
        self.unavailable = None

    def before(self, model, *, model_path: str | None = None, device: str = "cpu") -> None:
        if self.reference == "none":
            self.unavailable = "switched off (forgetting_reference = none)"
            return
        from harness.data import DataError
        try:
            self.pairs = load_reference(self.reference)
        except DataError as exc:
            self.unavailable = f"reference {self.reference!r} cannot be loaded here: {exc}"
            return
        cache = _cache_file(model, self.pairs, model_path, device)
        if cache is not None and cache.is_file():
            with np.load(cache, allow_pickle=False) as saved:
                texts, vectors = [str(t) for t in saved["texts"]], saved["vectors"]
            if texts == sorted(set(self.pairs.text_a) | set(self.pairs.text_b)):
                self.texts, self.base_vectors, self.base_source = texts, vectors, "job cache"
        if self.base_vectors is None:
            self.texts, self.base_vectors = models.encode_texts(model, self.pairs)
            self.base_source = "computed in this run"
            if cache is not None:
                _save(cache, self.texts, self.base_vectors)
        self.base_spearman = spearman_of(self.texts, self.base_vectors, self.pairs)

    def after(self, model) -> dict:
        out = {"reference": self.reference}
        if self.unavailable:
            return {**out, "unavailable_reason": self.unavailable}
        texts, tuned = models.encode_texts(model, self.pairs)
        assert texts == self.texts
        spearman = spearman_of(texts, tuned, self.pairs)
        return {**out, "reference_pairs": len(self.pairs), "base_spearman": self.base_spearman,
                "base_source": self.base_source,
                "spearman": spearman,
                "forgetting": None if spearman is None or self.base_spearman is None else self.base_spearman - spearman,
                "drift_mean_cos": drift(self.base_vectors, tuned),
                "method": "zero-shot test Spearman on the reference before (the base model, encoded once per job) "
                          "and after training; forgetting = before - after; drift = mean cosine of base vs tuned "
                          "embeddings"}


def _cache_file(model, pairs, model_path: str | None, device: str) -> Path | None:
    """Where this job keeps the base model's reference embeddings, or None outside a job (no cache
    folder given) or for a model that is not a local folder."""
    folder = os.environ.get(CACHE_ENV)
    if not folder or not model_path or not Path(model_path).is_dir():
        return None
    import torch
    files = sorted((str(p.relative_to(model_path)), p.stat().st_size, p.stat().st_mtime_ns)
                   for p in Path(model_path).rglob("*") if p.is_file())
    texts = sorted(set(pairs.text_a) | set(pairs.text_b))
    key = json.dumps({"model": str(Path(model_path).resolve()), "files": files, "device": device,
                      "max_seq_length": model.max_seq_length, "torch": torch.__version__,
                      "texts": hashlib.sha256("\n".join(texts).encode()).hexdigest()})
    return Path(folder) / f"reference-base-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"


def _save(path: Path, texts: list[str], vectors: np.ndarray) -> None:
    """Atomically: a concurrent reader sees the whole file or none. A cache that cannot be written
    costs only time, so errors are ignored."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, texts=np.array(texts), vectors=vectors)
        os.replace(tmp, path)
    except OSError:
        pass
