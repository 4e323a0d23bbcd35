"""Parameter counts are exact, checked against counts made independently of peft."""

from pathlib import Path

import pytest

from harness import methods, models
from harness.spec import LoraSpec
from tests.conftest import needs_mpnet


def independent_lora_count(config, *, r: int, per_layer_targets: int) -> int:
    """From the model config alone: each targeted hidden x hidden projection adds r * (h + h)."""
    h = config.hidden_size
    return config.num_hidden_layers * per_layer_targets * r * (h + h)


def test_minilm_total_params_match_the_published_count(minilm):
    counts = models.count_params(minilm)
    assert counts["total_params"] == counts["requires_grad_params"] == 22_713_216


def test_standard_counts_only_the_parameters_that_receive_a_gradient(minilm):
    """Mean pooling never uses BERT's pooler: its 147,840 parameters require grad but never train."""
    from harness.data import load_splits
    train = load_splits("dating").train
    counts = models.count_params(minilm, receiving_grad=models.gradient_probe(minilm, train, batch_size=4))
    assert counts["trainable_params"] == 22_565_376 == 22_713_216 - 147_840
    assert counts["requires_grad_params"] == 22_713_216
    ((module, inert),) = counts["inert_params"].items()
    assert module.endswith("pooler.dense") and inert == 384 * 384 + 384
    assert all(p.grad is None for p in minilm.parameters())  # the probe leaves no gradient behind


def test_lora_on_dense_counts_only_adapters_on_the_forward_path(tiny_model_path):
    """`dense` also matches the pooler; its adapter never trains, so neither count includes it."""
    from harness.data import load_splits
    train = load_splits("dating").train
    model = models.load_model(tiny_model_path, device="cpu")
    active = models.forward_path_linears(model, train, batch_size=4)
    lora = LoraSpec(r=4, target_modules=("dense",))
    inert = models.check_inert_targets(model, lora, active)
    assert [n.rsplit(".", 2)[-2:] for n in inert] == [["pooler", "dense"]]
    methods.get("lora").attach(model, lora)
    counts = models.count_params(model, receiving_grad=models.gradient_probe(model, train, batch_size=4))
    config = model[0].auto_model.config
    h, inter = config.hidden_size, config.intermediate_size
    # per layer: attention.output.dense (h->h), intermediate.dense (h->inter), output.dense (inter->h)
    on_path = config.num_hidden_layers * 4 * ((h + h) + (h + inter) + (inter + h))
    assert counts["trainable_params"] == on_path == methods.lora_params(model, lora, active)
    assert counts["requires_grad_params"] == on_path + 4 * (h + h)  # plus the pooler's idle adapter


def test_lora_targets_that_match_only_inert_modules_are_an_error(tiny_model_path):
    model = models.load_model(tiny_model_path, device="cpu")
    with pytest.raises(models.ModelError, match="every module they match is inert"):
        models.check_inert_targets(model, LoraSpec(target_modules=("dense",)), active=set())


@pytest.mark.parametrize("r, targets, per_layer", [(8, ("query", "value"), 2), (16, ("query", "key", "value"), 3)])
def test_lora_trainable_params_are_exact(r, targets, per_layer):
    model = models.load_model(models.resolve_model_path(models.DEFAULT_MODEL), device="cpu")
    lora = LoraSpec(r=r, alpha=2.0 * r, target_modules=targets)
    methods.get("lora").attach(model, lora)
    counts = models.count_params(model)
    config = model[0].auto_model.config
    expected = independent_lora_count(config, r=r, per_layer_targets=per_layer)
    assert counts["trainable_params"] == expected == methods.lora_params(model, lora, None)
    assert counts["total_params"] == 22_713_216 + expected


def test_adr_lora_config_gives_73728_not_294k():
    """ADR-001 reports 294K trainable parameters for r=8 on query and value; the live count is 4x less."""
    model = models.load_model(models.resolve_model_path(models.DEFAULT_MODEL), device="cpu")
    methods.get("lora").attach(model, LoraSpec())
    assert models.count_params(model)["trainable_params"] == 73_728


def test_unknown_target_module_lists_what_the_model_has(tiny_model_path):
    model = models.load_model(tiny_model_path, device="cpu")
    with pytest.raises(models.ModelError) as err:
        methods.get("lora").attach(model, LoraSpec(target_modules=("q", "v")))
    assert "['q', 'v'] not found" in str(err.value)
    assert "dense, key, query, value" in str(err.value)
    assert "names its attention query and value projections query, value: --set lora.target_modules=query,value" \
        in str(err.value)


def test_the_default_targets_on_an_mpnet_name_the_fix():
    """MPNet calls BERT's query and value q and v: the error says so and gives the --set that works."""
    mpnet_linears = ["dense", "k", "o", "q", "v"]
    with pytest.raises(models.ModelError, match=r"projections q, v: --set lora.target_modules=q,v$"):
        models.check_targets(LoraSpec(), mpnet_linears)
    with pytest.raises(models.ModelError) as err:  # targets that are no family's pair: no guess
        models.check_targets(LoraSpec(target_modules=("attention",)), mpnet_linears)
    assert "--set" not in str(err.value)


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
    assert models.resolve_model_path("sentence-transformers/paraphrase-MiniLM-L3-v2") == \
        "sentence-transformers/paraphrase-MiniLM-L3-v2"  # a hub id is passed through for a networked machine


def test_bf16_training_leaves_evaluation_in_fp32(tiny_model_path, tmp_path):
    """accelerate wraps model.forward in autocast for mixed-precision training and leaves the wrapper
    on; the worker removes it, so evaluation (and the merge check) run in fp32."""
    import torch

    from harness import data, train
    from harness.spec import build_specs
    (spec,) = build_specs(arms=["standard"], overrides=["model=tiny-random-bert", "precision=bf16", "max_steps=2",
                                                        "batch_size=4", "warmup_steps=0"])
    model = models.load_model(tiny_model_path, device="cpu")
    pairs = data.load_splits("dating").limited(train_limit=8, eval_limit=8).train
    seen = []
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    train.build_trainer(model, spec, pairs, "cpu", output_dir=str(tmp_path)).train()

    model.encode(["one sentence"])
    assert seen[-1] == torch.bfloat16  # the trainer's autocast is still on the forward after training
    train.restore_fp32_forward(model)
    model.encode(["one sentence"])
    assert seen[-1] == torch.float32


def _split_zip_of(folder, dest, parts: int = 5) -> list:
    """``folder`` zipped under its own name and cut into ``parts`` files, as the mpnet packages ship it."""
    import shutil
    archive = Path(shutil.make_archive(str(dest / "whole"), "zip", root_dir=folder.parent, base_dir=folder.name))
    data = archive.read_bytes()
    size = -(-len(data) // parts)
    paths = []
    for i in range(parts):
        path = dest / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        path.write_bytes(data[i * size:(i + 1) * size])
        paths.append(path)
    return paths


def test_mpnet_is_joined_from_its_parts_checked_and_extracted_once(tiny_model_path, tmp_path, monkeypatch):
    """The mechanism on a small folder cut into five parts: joined in order, CRC-checked, extracted
    atomically under the cache, and reused; a corrupted part is one ModelError line."""
    parts = _split_zip_of(Path(tiny_model_path), tmp_path)
    monkeypatch.setattr(models, "_mpnet_part", lambda i: parts[i - 1])
    cache = tmp_path / "cache"
    path = models.resolve_model_path("all-mpnet-base-v2", cache_dir=cache)
    assert path == str(cache / "all-mpnet-base-v2") and (Path(path) / "modules.json").is_file()
    assert sorted(p.name for p in cache.iterdir()) == ["all-mpnet-base-v2"]  # no temporary folder left
    assert models.load_model(path, device="cpu").encode(["a sentence"]).shape == (1, 32)
    assert models.resolve_model_path("sentence-transformers/all-mpnet-base-v2", cache_dir=cache) == path

    data = bytearray(parts[2].read_bytes())
    data[len(data) // 2] ^= 0xFF
    parts[2].write_bytes(bytes(data))
    with pytest.raises(models.ModelError, match="corrupt|not a zip"):
        models.resolve_model_path("all-mpnet-base-v2", cache_dir=tmp_path / "other-cache")
    assert not (tmp_path / "other-cache" / "all-mpnet-base-v2").exists()


def test_a_missing_mpnet_part_is_one_line_naming_its_package(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "MPNET_PACKAGE", "no-such-package-part-{:03d}")
    with pytest.raises(models.ModelError, match=r"part 1 of 5 is not installed \(PyPI package no-such-package-part"):
        models.resolve_model_path("all-mpnet-base-v2", cache_dir=tmp_path)


@pytest.mark.slow
@needs_mpnet
def test_the_real_mpnet_loads_offline_and_its_default_targets_are_q_and_v(tmp_path):
    from harness.spec import build_specs
    path = models.resolve_model_path("all-mpnet-base-v2", cache_dir=tmp_path)
    model = models.load_model(path, device="cpu")
    assert sum(p.numel() for p in model.parameters()) > 100_000_000
    assert model.encode(["a sentence"]).shape == (1, 768)
    (spec,) = build_specs(arms=["lora"], overrides=["model=all-mpnet-base-v2"])
    (spec,) = models.follow_model_targets([spec])
    assert spec.lora.target_modules == ("q", "v")
