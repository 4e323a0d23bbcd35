"""Spec layering, --set parsing, TOML and validation."""

import json

import pytest

from harness.spec import LoraSpec, RunSpec, SpecError, build_specs, parse_overrides

ALL = ["baseline", "standard", "lora"]


def test_adr_profile_matches_adr_001():
    base, std, lora = build_specs(arms=ALL)
    for s in (base, std, lora):
        assert (s.epochs, s.batch_size, s.warmup_steps, s.loss) == (4.0, 16, 100, "CosineSimilarityLoss")
    assert std.learning_rate == 2e-5 and lora.learning_rate == 2e-4
    assert lora.lora == LoraSpec(r=8, alpha=16.0, dropout=0.1, target_modules=("query", "value"))
    assert std.lora is None and base.lora is None


def test_arms_differ_only_in_what_each_declares():
    _, std, lora = build_specs(arms=ALL)
    a, b = std.to_dict(), lora.to_dict()
    assert {k for k in a if a[k] != b[k]} == {"arm", "learning_rate", "lora"}


def test_set_overrides_apply_to_every_arm_and_lora_fields_to_lora():
    specs = build_specs(arms=ALL, overrides=["lora.r=16", "epochs=1", "lora.target_modules=query,key,value"])
    assert all(s.epochs == 1.0 for s in specs)
    assert specs[2].lora.r == 16 and specs[2].lora.target_modules == ("query", "key", "value")
    assert specs[1].lora is None


def test_arm_specific_override():
    _, std, lora = build_specs(arms=ALL, overrides=["arms.standard.learning_rate=5e-5"])
    assert std.learning_rate == 5e-5 and lora.learning_rate == 2e-4


def test_toml_then_set(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("epochs = 2\nseed = 7\n[arms.lora]\nlearning_rate = 1e-3\n[arms.lora.lora]\nr = 4\n")
    _, std, lora = build_specs(arms=ALL, config_path=cfg, overrides=["seed=9"])
    assert std.epochs == 2.0 and lora.learning_rate == 1e-3 and lora.lora.r == 4
    assert std.seed == lora.seed == 9


def test_quick_profile():
    (std,) = build_specs(arms=["standard"], profile="quick")
    assert std.epochs == 1.0 and std.train_limit > 0


@pytest.mark.parametrize("override, message", [
    ("lora.r=0", "lora.r = 0: must be an integer >= 1"),
    ("lora.alpha=0", "lora.alpha = 0.0: must be > 0"),
    ("lora.dropout=1", "lora.dropout = 1.0: must be in [0, 1)"),
    ("learning_rate=-1", "learning_rate = -1.0: must be > 0"),
    ("batch_size=0", "batch_size = 0: must be >= 1"),
    ("epochs=-1", "epochs = -1.0: must be >= 0"),
    ("device=tpu", "device = 'tpu': must be one of auto, cpu, cuda, mps"),
    ("batch_size=eight", "batch_size = 'eight': expected an integer, got str"),
    ("batch_size=1.5", "batch_size = 1.5: expected an integer, got float"),
    ("epoch=3", "epoch: unknown key (did you mean 'epochs'?)"),
    ("lora.rank=4", "lora.rank: unknown key (did you mean 'r'?)"),
])
def test_bad_values_name_the_field_and_value(override, message):
    with pytest.raises(SpecError) as err:
        build_specs(arms=ALL, overrides=[override])
    assert message in str(err.value)


def test_bad_toml_and_bad_set_syntax(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("epochs = = 2\n")
    with pytest.raises(SpecError, match="not valid TOML"):
        build_specs(arms=ALL, config_path=cfg)
    with pytest.raises(SpecError, match="not found"):
        build_specs(arms=ALL, config_path=tmp_path / "missing.toml")
    with pytest.raises(SpecError, match="expected key=value"):
        parse_overrides(["epochs"])
    with pytest.raises(SpecError, match="did you mean 'lora'"):
        build_specs(arms=["lroa"])


def test_spec_hash_is_stable_and_sensitive():
    (a,) = build_specs(arms=["lora"])
    (b,) = build_specs(arms=["lora"])
    (c,) = build_specs(arms=["lora"], overrides=["lora.r=9"])
    assert a.spec_hash == b.spec_hash != c.spec_hash
    assert a.run_id.startswith("lora-r8-dating-s0-")
    text = json.dumps(a.to_dict())  # through real JSON text, as the worker receives its spec
    again = RunSpec.from_dict(json.loads(text))
    assert again == a and again.spec_hash == a.spec_hash and again.run_id == a.run_id


def test_lora_config_on_a_non_adapter_arm_is_rejected():
    with pytest.raises(SpecError, match=r"only adapter methods \(lora, .*\) take an adapter table"):
        RunSpec(arm="standard", lora=LoraSpec())
