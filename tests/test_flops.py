"""The FLOP count of a training step against a hand computation."""


from harness.flops import EncoderShape, encoder_shape, step_flops


def test_full_fine_tune_flops_by_hand():
    shape = EncoderShape(n_layers=2, hidden=4, linear_params=100)
    out = step_flops(shape, seq_lens=[3, 5], lora=False)
    linear = 2 * 100 * 8  # 2 FLOPs per weight per token, 8 tokens
    attn = 4 * 2 * 4 * (9 + 25)  # QK^T and AV, per layer, per sequence
    assert out["forward_flops"] == linear + attn
    assert out["backward_flops"] == 2 * (linear + attn)
    assert out["step_flops"] == 3 * (linear + attn)


def test_lora_skips_frozen_weight_gradients():
    shape = EncoderShape(n_layers=1, hidden=2, linear_params=50, lora_params=6)
    out = step_flops(shape, seq_lens=[2], lora=True)
    linear, attn, lora = 2 * 50 * 2, 4 * 1 * 4 * 2, 2 * 6 * 2
    assert out["forward_flops"] == linear + attn + lora
    assert out["backward_flops"] == linear + 2 * attn + 2 * lora
    full = step_flops(EncoderShape(1, 2, 50), seq_lens=[2], lora=False)
    assert out["backward_flops"] < full["backward_flops"]


def test_encoder_shape_counts_only_linear_weights(minilm):
    shape = encoder_shape(minilm)
    # MiniLM-L6-H384: per layer q,k,v,o (4 x 384^2) + intermediate and output (2 x 384 x 1536)
    assert shape.linear_params == 6 * (4 * 384 * 384 + 2 * 384 * 1536)
    assert (shape.n_layers, shape.hidden) == (6, 384)


def test_encoder_shape_ignores_adapter_layers(tiny_model_path):
    from harness import methods, models
    from harness.spec import LoraSpec
    model = models.load_model(tiny_model_path, device="cpu")
    before = encoder_shape(model).linear_params
    methods.get("lora").attach(model, LoraSpec(r=4))
    assert encoder_shape(model, lora_params=1).linear_params == before
