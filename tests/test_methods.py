"""The method registry: one entry per method; labels, ids and order from spec fields; exact counts.

Each adapter method's live trainable count (parameters that receive a gradient) is checked against
a formula written here from the model's shape, independently of the registry's own formula.
"""

import json

import pytest

from harness import methods, models
from harness.data import load_splits
from harness.spec import ARMS, build_specs
from tests.conftest import REPO, TINY_ARGS, run_cli


def test_every_arm_is_a_registry_entry_and_full_is_standard():
    assert ARMS == tuple(methods.METHODS)
    (spec,) = build_specs(arms=["full"])
    assert spec.arm == "standard" and spec.lora is None and spec.learning_rate == 2e-5
    for name, method in methods.METHODS.items():
        (spec,) = build_specs(arms=[name])
        assert (spec.lora is not None) == method.adapter
        assert spec.learning_rate == (method.default_lr if method.trains else 2e-5)


def test_spec_hashes_and_run_ids_of_published_runs_are_unchanged():
    """Studies resume by spec hash: the registry must not change the hash of an existing spec."""
    published = REPO / "results" / "cpu-amd-epyc-2c" / "dating-v2" / "adr" / "runs"
    for arm in ("baseline", "standard", "lora"):
        (spec,) = build_specs(arms=[arm])
        path = published / f"{spec.run_id}.json"
        assert path.is_file(), f"{spec.run_id} is not among the published runs"
        assert json.loads(path.read_text())["spec_hash"] == spec.spec_hash


@pytest.mark.parametrize(("spec", "label", "prefix"), [
    ({"arm": "baseline", "precision": "bf16"}, "baseline", "baseline"),
    ({"arm": "standard"}, "standard", "standard"),
    ({"arm": "standard", "precision": "bf16"}, "standard bf16", "standard"),
    ({"arm": "lora", "lora": {"r": 8}}, "lora r=8", "lora-r8"),
    ({"arm": "dora", "lora": {"r": 16}, "precision": "bf16"}, "dora r=16 bf16", "dora-r16"),
])
def test_variant_label_and_run_id_come_from_the_spec(spec, label, prefix):
    assert methods.variant_label(spec) == label
    assert methods.run_id_prefix(spec) == prefix


def test_table_order_and_reference():
    specs = [{"arm": "dora", "lora": {"r": 4}}, {"arm": "lora", "lora": {"r": 16}},
             {"arm": "standard", "precision": "bf16"}, {"arm": "lora", "lora": {"r": 4}}, {"arm": "baseline"},
             {"arm": "standard"}]
    ordered = [methods.variant_label(s) for s in sorted(specs, key=methods.sort_key)]
    assert ordered == ["baseline", "standard", "standard bf16", "lora r=4", "lora r=16", "dora r=4"]
    assert methods.reference_label(specs) == "standard"
    assert methods.reference_label([s for s in specs if s.get("precision") == "bf16"]) == "standard bf16"


def independent_count(model, method: str, *, r: int, targets: tuple[str, ...]) -> int:
    """From the encoder's config alone: each targeted hidden x hidden projection gets A (r x h) and
    B (h x r); DoRA adds a magnitude of h; rsLoRA only rescales, so it counts as LoRA; LoHa has two
    such pairs."""
    config = model[0].auto_model.config
    h = config.hidden_size
    per_module = {"lora": r * 2 * h, "rslora": r * 2 * h, "dora": r * 2 * h + h, "loha": 2 * r * 2 * h}[method]
    return config.num_hidden_layers * len(targets) * per_module


@pytest.mark.parametrize("method", [n for n, m in methods.METHODS.items() if m.adapter])
@pytest.mark.parametrize("r", [1, 4])
def test_live_count_matches_an_independent_formula_on_the_tiny_model(tiny_model_path, method, r):
    from harness.spec import LoraSpec
    model = models.load_model(tiny_model_path, device="cpu")
    train = load_splits("dating").train
    active = models.forward_path_linears(model, train, batch_size=4)
    adapter = LoraSpec(r=r, alpha=2.0 * r, target_modules=("query", "value"))
    methods.METHODS[method].attach(model, adapter)
    live = models.count_params(model, receiving_grad=models.gradient_probe(model, train, batch_size=4))
    expected = independent_count(model, method, r=r, targets=("query", "value"))
    assert live["trainable_params"] == expected == methods.METHODS[method].expected_params(model, adapter, active)


def test_dora_at_r8_on_minilm_query_value(minilm):
    import copy

    from harness.spec import LoraSpec
    model = copy.deepcopy(minilm)
    adapter = LoraSpec(r=8, alpha=16.0, target_modules=("query", "value"))
    methods.METHODS["dora"].attach(model, adapter)
    train = load_splits("dating").train
    live = models.count_params(model, receiving_grad=models.gradient_probe(model, train, batch_size=4))
    assert live["trainable_params"] == 73_728 + 6 * 2 * 384 == 78_336


def test_adapter_methods_run_end_to_end_and_merge(tmp_path, harness_cache):
    out = tmp_path / "out"
    proc = run_cli("run", "--out", str(out), "--arms", "standard,dora,rslora,loha", *TINY_ARGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {json.loads(p.read_text())["method"]: json.loads(p.read_text()) for p in (out / "runs").glob("*.json")}
    assert set(records) == {"standard", "dora", "rslora", "loha"}
    for name in ("dora", "rslora", "loha"):
        record = records[name]
        assert record["status"] == "success" and record["label"] == f"{name} r=8"
        assert record["params"]["lora_params_match"] and record["params"]["artifact_kind"].startswith("peft adapter")
        assert record["merge"]["within_tolerance"] and record["merge"]["merged_layers"] == 4, record["merge"]
    assert "| dora r=8 % of standard" in (out / "tradeoffs.md").read_text()
