"""The real all-MiniLM-L6-v2 on real data: the published zero-shot STS-B figure, and the dating
generator's inversion (the ADR's headline phenomenon)."""

import json

import pytest

from harness.data import load_splits
from harness.spec import RunSpec
from harness.worker import evaluate_model
from tests.conftest import needs_mpnet, run_cli


@pytest.mark.slow
def test_stsb_zero_shot_spearman_reproduces_the_published_0_8203(tmp_path):
    # the forgetting reference (the dating test's 3,000 profiles) is not this test's subject: off
    proc = run_cli("run", "--dataset", "stsb", "--arms", "baseline", "--set", "forgetting_reference=none",
                   "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = (tmp_path / "runs").glob("*.json")
    record = json.loads(path.read_text())
    assert record["data"]["test_pairs"] == 1379
    assert record["quality"]["spearman"] == pytest.approx(0.8203, abs=0.002)


@pytest.mark.slow
@needs_mpnet
def test_mpnet_zero_shot_stsb_spearman_matches_its_published_figure(tmp_path):
    """all-mpnet-base-v2, joined from its five PyPI parts with nothing downloaded, scored by the same
    evaluator on the 1,379 STS-B test pairs: MTEB publishes 0.834 (cosine Spearman, STSBenchmark test);
    measured here 0.83422. The forgetting reference (most of the time) is switched off: not this test's subject."""
    proc = run_cli("run", "--dataset", "stsb", "--arms", "baseline", "--set", "model=all-mpnet-base-v2",
                   "--set", "forgetting_reference=none",
                   "--out", str(tmp_path / "out"), env_extra={"HARNESS_CACHE": str(tmp_path / "cache")},
                   timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (path,) = (tmp_path / "out" / "runs").glob("*.json")
    record = json.loads(path.read_text())
    assert record["data"]["test_pairs"] == 1379 and record["params"]["total_params"] > 100_000_000
    assert record["quality"]["spearman"] == pytest.approx(0.834, abs=0.002)


@pytest.mark.slow
def test_stock_model_is_inverted_on_dating_test(minilm):
    """dating v2: opposed stances in the same words look alike to a word matcher (harness/dating.py)."""
    splits = load_splits("dating", seed=0)
    quality = evaluate_model(minilm, splits, RunSpec(arm="baseline"))
    assert quality["spearman"] < -0.2  # measured: -0.45 on the 1,500 test pairs
    assert quality["margin"] < 0  # incompatible pairs sit closer than compatible ones
    assert quality["auc_roc"] < 0.5
