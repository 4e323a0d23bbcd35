"""The shipped artifact: its size, and the round trip (saved, loaded back as a user would, compared with
the evaluated model) for every registry method, on the tiny BERT (and on MiniLM in the slow tests).

The adapters here are not trained: their trainable tensors are perturbed with random noise so that
each adapter changes the embeddings (a fresh LoRA's B is zero and would prove nothing)."""

from __future__ import annotations

import json

import pytest
import torch

from harness import artifacts, methods, models
from harness.spec import LoraSpec
from tests.conftest import TINY_ARGS, run_cli

ADAPTER_METHODS = [name for name, m in methods.METHODS.items() if m.adapter]
TEXTS = ["I love hiking on weekends", "no smoking, please", "a quiet night in with a book", "dogs > cats"]


def perturbed(model_path: str, method: str):
    """A model with ``method`` attached and every trainable tensor moved away from its initial value."""
    model = models.load_model(model_path, device="cpu")
    methods.METHODS[method].attach(model, LoraSpec(r=4, alpha=8.0), total_steps=10)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.3 * torch.randn(param.shape, generator=generator))
    return model


def test_artifact_sizes(tiny_model_path, tmp_path):
    model = models.load_model(tiny_model_path, device="cpu")
    full = artifacts.save(model, methods.get("standard"), tmp_path / "full")
    methods.get("lora").attach(model, LoraSpec(r=4))
    adapter = artifacts.save(model, methods.get("lora"), tmp_path / "adapter")
    assert adapter["artifact_files"] == ["adapter_model.safetensors"]
    assert full["artifact_files"] == ["model.safetensors"]
    # fp32 weights: 4 bytes a parameter (r=4 on query and value of 2 layers: 4 * 4 * 64 * 4) plus a header
    assert 4 * 1024 <= adapter["artifact_bytes"] < 4 * 1024 + 4096
    assert adapter["artifact_bytes"] * 50 < full["artifact_bytes"]


@pytest.mark.parametrize("method", ADAPTER_METHODS)
def test_every_method_ships_an_adapter_that_reproduces_the_model(tiny_model_path, tmp_path, method):
    model = perturbed(tiny_model_path, method)
    base_embeddings = models.load_model(tiny_model_path, device="cpu").encode(TEXTS)
    assert abs(model.encode(TEXTS) - base_embeddings).max() > 1e-3  # the adapter changes the model
    artifacts.save(model, methods.get(method), tmp_path / "artifact")
    config = json.loads((tmp_path / "artifact" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == tiny_model_path  # the folder names its base model
    check = artifacts.round_trip(model, tmp_path / "artifact", base=tiny_model_path, texts=TEXTS, device="cpu")
    assert check["loader"] == "peft" and check["within_tolerance"], check
    assert check["max_abs_diff"] <= artifacts.TOLERANCE
    one_liner = check["sentence_transformers_load"]
    if method == "dora":  # transformers' adapter loading drops the magnitudes: the failure users report
        assert not one_liner["within_tolerance"], one_liner
    elif method == "vera":  # shared projections: only peft's own loader can build it
        assert "error" in one_liner and "VERA" in one_liner["error"].upper(), one_liner
    else:
        assert one_liner["within_tolerance"], one_liner


def test_pissa_ships_a_lora_of_twice_the_rank_on_the_original_weights(tiny_model_path, tmp_path):
    model = perturbed(tiny_model_path, "pissa")
    artifacts.save(model, methods.get("pissa"), tmp_path / "converted")
    config = json.loads((tmp_path / "converted" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["init_lora_weights"]) == (8, 16.0, True)
    # The raw adapter, without the conversion, loaded on the original base counts the principal
    # components twice: the check catches it.
    delattr(model, artifacts.PISSA_INIT)
    artifacts.save(model, methods.get("pissa"), tmp_path / "raw")
    raw = artifacts.round_trip(model, tmp_path / "raw", base=tiny_model_path, texts=TEXTS, device="cpu")
    assert not raw["within_tolerance"] and raw["max_abs_diff"] > 100 * artifacts.TOLERANCE, raw


def test_the_full_model_round_trip_loads_the_folder(tiny_model_path, tmp_path):
    model = models.load_model(tiny_model_path, device="cpu")
    with torch.no_grad():  # a "trained" model that differs from the base
        for param in model.parameters():
            param.mul_(1.5)
    artifacts.save(model, methods.get("standard"), tmp_path / "full")
    check = artifacts.round_trip(model, tmp_path / "full", base=None, texts=TEXTS, device="cpu")
    assert check["loader"] == "sentence-transformers" and check["max_abs_diff"] == 0.0
    assert "sentence_transformers_load" not in check
    assert len(artifacts.content_hash(tmp_path / "full")) == 64


def test_an_artifact_saved_under_the_wrong_names_fails_the_run(tmp_path, harness_cache):
    """The injected fault renames every saved weight tensor: the adapter loads back as the base model,
    the full model with fresh weights. Both runs fail with artifact_mismatch and keep both figures."""
    out = tmp_path / "out"
    proc = run_cli("run", "--out", str(out), "--arms", "standard,lora", *TINY_ARGS,
                   env_extra={"HARNESS_INJECT_FAULT": "artifact@rename"})
    assert proc.returncode != 0
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert sorted(r["method"] for r in records) == ["lora", "standard"]
    for record in records:
        assert record["status"] == "failed" and record["error"]["reason"] == "artifact_mismatch", record.get("error")
        check = record["artifact_check"]
        assert not check["within_tolerance"] and check["max_abs_diff"] > check["tolerance"] == artifacts.TOLERANCE
        assert f"{check['max_abs_diff']:.3g}" in record["error"]["message"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ADAPTER_METHODS)
def test_every_method_round_trips_on_minilm(tmp_path, method):
    path = models.resolve_model_path(models.DEFAULT_MODEL)
    model = perturbed(path, method)
    artifacts.save(model, methods.get(method), tmp_path / "artifact")
    check = artifacts.round_trip(model, tmp_path / "artifact", base=path, texts=TEXTS, device="cpu")
    assert check["within_tolerance"], check


def test_save_models_keeps_each_trained_arm_loadable_the_way_the_readme_says(tmp_path, harness_cache):
    """--save-models: the kept folders load with the README's lines and give back the evaluated model
    (the test pairs' cosines in the record, computed again from the loaded model); a forced rerun moves
    the old folder aside instead of writing over it."""
    import numpy as np
    from peft import PeftModel
    from sentence_transformers import SentenceTransformer

    from harness.data import load_splits
    out = tmp_path / "out"
    args = ("run", "--out", str(out), "--arms", "baseline,standard,lora", "--save-models", *TINY_ARGS)
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {r["method"]: r for r in (json.loads(p.read_text()) for p in (out / "runs").glob("*.json"))}
    assert "artifact_saved" not in records["baseline"] and not (out / "models" / records["baseline"]["run_id"]).exists()
    test = load_splits("dating").limited(train_limit=64, eval_limit=48).test
    for name in ("standard", "lora"):
        record = records[name]
        saved = record["artifact_saved"]
        folder = out / saved["folder"]
        assert folder == out / "models" / record["run_id"] and folder.is_dir()
        assert saved["sha256"] == artifacts.content_hash(folder)
        if name == "standard":  # the README's lines, as written there
            model = SentenceTransformer(str(folder))
        else:
            model = SentenceTransformer(saved["base_model_path"])
            model[0].model = PeftModel.from_pretrained(model[0].model, str(folder))
        a, b = models.encode_pairs(model, test)
        cos = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        assert np.abs(cos - np.array(record["quality"]["test_cos"])).max() < 1e-5, name
    assert not list((out / "models").glob(".incoming-*"))  # nothing half-moved is left behind

    proc = run_cli(*args, "--force")
    assert proc.returncode == 0, proc.stderr[-3000:]
    superseded = sorted(p.name for p in (out / "models" / "superseded").iterdir())
    assert [name.split(".")[0] for name in superseded] == sorted(records[m]["run_id"] for m in ("lora", "standard"))


def test_save_models_is_refused_with_the_ray_executor_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("run", "--out", str(out), "--save-models", "--executor", "ray", *TINY_ARGS)
    assert proc.returncode == 2 and proc.stderr.count("error:") == 1 and "--save-models" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
