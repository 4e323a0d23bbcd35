"""Encoding throughput (base, LoRA unmerged, LoRA merged) and the metric suite's throughput."""

from __future__ import annotations

import numpy as np
import pytest

from bench.conftest import timed_pedantic
from harness import evaluate, methods, models
from harness.spec import LoraSpec


def _texts(bench):
    test = bench.splits.test
    return sorted(set(test.text_a) | set(test.text_b))


@pytest.mark.parametrize("variant", ["base", "lora-unmerged", "lora-merged"])
def test_encode(benchmark, bench, variant):
    model, _ = bench.model("standard")
    if variant != "base":
        methods.get("lora").attach(model, LoraSpec(r=8, alpha=16.0))
        if variant == "lora-merged":
            models.merge_lora(model)
    model.eval()
    texts = _texts(bench)
    result, median_s = timed_pedantic(benchmark, lambda: model.encode(texts, batch_size=64, convert_to_numpy=True,
                                                                       show_progress_bar=False),
                                      rounds=bench.rounds, warmup_rounds=1)
    assert result.shape[0] == len(texts)
    benchmark.extra_info.update(bench.common_info(model), variant=variant, sentences=len(texts),
                                sentences_per_s=len(texts) / median_s)


def test_metric_suite(benchmark, bench):
    model, _ = bench.model("standard")
    model.eval()
    test, val = bench.splits.test, bench.splits.validation

    def embed(pairs):
        return (model.encode(pairs.text_a, convert_to_numpy=True, show_progress_bar=False),
                model.encode(pairs.text_b, convert_to_numpy=True, show_progress_bar=False))
    (ta, tb), (va, vb) = embed(test), embed(val)

    def score():
        return evaluate.evaluate(test_cos=evaluate.cosine_rows(ta, tb), test_gold=test.score,
                                 val_cos=evaluate.cosine_rows(va, vb), val_gold=val.score,
                                 pair_features=evaluate.pair_features(ta, tb), categories=test.category,
                                 texts=(test.text_a, test.text_b))
    out, median_s = timed_pedantic(benchmark, score, rounds=bench.rounds, warmup_rounds=1)
    assert np.isfinite(out["spearman"])
    benchmark.extra_info.update(pairs=len(test), pairs_per_s=len(test) / median_s,
                                device="cpu (metrics run in numpy/scikit-learn)")
