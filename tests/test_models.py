"""Parameter counts are exact, checked against counts made independently of peft."""

import pytest

from harness import models
from harness.spec import LoraSpec


def independent_lora_count(config, *, r: int, per_layer_targets: int) -> int:
    """From the model config alone: each targeted hidden x hidden projection adds r * (h + h)."""
    h = config.hidden_size
    return config.num_hidden_layers * per_layer_targets * r * (h + h)


def test_minilm_total_params_match_the_published_count(minilm):
    assert models.count_params(minilm) == {"trainable_params": 22_713_216, "total_params": 22_713_216}


@pytest.mark.parametrize("r, targets, per_layer", [(8, ("query", "value"), 2), (16, ("query", "key", "value"), 3)])
def test_lora_trainable_params_are_exact(r, targets, per_layer):
    model = models.load_model(models.resolve_model_path(models.DEFAULT_MODEL), device="cpu")
    lora = LoraSpec(r=r, alpha=2.0 * r, target_modules=targets)
    models.attach_lora(model, lora)
    counts = models.count_params(model)
    config = model[0].auto_model.config
    expected = independent_lora_count(config, r=r, per_layer_targets=per_layer)
    assert counts["trainable_params"] == expected == models.expected_lora_params(model, lora)
    assert counts["total_params"] == 22_713_216 + expected


def test_adr_lora_config_gives_73728_not_294k():
    """ADR-001 reports 294K trainable parameters for r=8 on query and value; the live count is 4x less."""
    model = models.load_model(models.resolve_model_path(models.DEFAULT_MODEL), device="cpu")
    models.attach_lora(model, LoraSpec())
    assert models.count_params(model)["trainable_params"] == 73_728


def test_unknown_target_module_lists_what_the_model_has(tiny_model_path):
    model = models.load_model(tiny_model_path, device="cpu")
    with pytest.raises(models.ModelError) as err:
        models.attach_lora(model, LoraSpec(target_modules=("q", "v")))
    assert "['q', 'v'] not found" in str(err.value)
    assert "dense, key, query, value" in str(err.value)


def test_tiny_model_is_a_small_random_bert(tiny_model_path):
    model = models.load_model(tiny_model_path, device="cpu")
    counts = models.count_params(model)
    assert counts["total_params"] < 2_000_000
    assert model.encode(["hello"]).shape == (1, 32)


def test_model_path_errors(tmp_path):
    with pytest.raises(models.ModelError, match="no such folder"):
        models.resolve_model_path(str(tmp_path / "missing-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(models.ModelError, match="not a sentence-transformers model folder"):
        models.resolve_model_path(str(tmp_path / "empty"))
    assert models.resolve_model_path("sentence-transformers/all-mpnet-base-v2") == \
        "sentence-transformers/all-mpnet-base-v2"  # a hub id is passed through for a networked machine


def test_artifact_sizes(tiny_model_path, tmp_path):
    model = models.load_model(tiny_model_path, device="cpu")
    full = models.artifact_bytes(model, arm="standard", dest=tmp_path / "full")
    models.attach_lora(model, LoraSpec(r=4))
    adapter = models.artifact_bytes(model, arm="lora", dest=tmp_path / "adapter")
    assert adapter["artifact_files"] == ["adapter_model.safetensors"]
    assert full["artifact_files"] == ["model.safetensors"]
    # fp32 weights: 4 bytes a parameter plus a small safetensors header
    assert 4 * 1024 <= adapter["artifact_bytes"] < 4 * 1024 + 4096
    assert adapter["artifact_bytes"] * 50 < full["artifact_bytes"]
