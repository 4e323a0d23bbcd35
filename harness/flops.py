"""Model FLOPs of one training step of a BERT-style encoder, and MFU.

Sources: Kaplan et al. 2020, "Scaling Laws for Neural Language Models", section 2.1 and Table 1
(forward ~ 2N FLOPs per token for N non-embedding parameters, plus 2 n_layer n_ctx d per token
for attention; backward ~ 2x forward); Narayanan et al. 2021, "Efficient Large-Scale Language
Model Training on GPU Clusters" (the 2x backward: one matmul for input gradients and one for
weight gradients). A multiply-add counts as 2 FLOPs. Embedding lookups, layer norms, softmax and
pooling are left out (they are not matmuls).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EncoderShape:
    n_layers: int
    hidden: int
    linear_params: int  # weights of the encoder's Linear layers (frozen or not), biases excluded
    lora_params: int = 0  # adapter weights (A and B), 0 for full fine-tuning


def step_flops(shape: EncoderShape, *, seq_lens: list[int], lora: bool) -> dict[str, float]:
    """FLOPs of forward and backward over sequences of the given (padded) lengths."""
    tokens = sum(seq_lens)
    linear_fwd = 2 * shape.linear_params * tokens
    # QK^T and attention x V: 2 matmuls of seq x seq x hidden per layer, 2 FLOPs per multiply-add
    attn_fwd = sum(4 * shape.n_layers * s * s * shape.hidden for s in seq_lens)
    lora_fwd = 2 * shape.lora_params * tokens
    forward = linear_fwd + attn_fwd + lora_fwd
    if lora:
        # Frozen weights still pass gradients to their inputs (1x) but compute no weight gradient
        # (the other 1x). Attention has no weights: its backward is the full 2x. The adapters get both.
        backward = linear_fwd + 2 * attn_fwd + 2 * lora_fwd
    else:
        backward = 2 * forward
    return {"forward_flops": float(forward), "backward_flops": float(backward),
            "step_flops": float(forward + backward), "tokens": tokens}


def encoder_shape(model, *, lora_params: int = 0) -> EncoderShape:
    """Read the shape from a live sentence-transformers model (base weights only)."""
    import torch
    config = model[0].auto_model.config
    linear = 0
    for name, module in model.named_modules():
        # The BERT pooler acts on one token per sequence (and mean pooling ignores it): not per-token work.
        if isinstance(module, torch.nn.Linear) and "lora_" not in name and "pooler" not in name:
            linear += module.weight.numel()
    return EncoderShape(n_layers=config.num_hidden_layers, hidden=config.hidden_size, linear_params=linear,
                        lora_params=lora_params)


def matmul_peak_flops(*, size: int = 1024, repeats: int = 20, dtype=None, device: str = "cpu") -> float:
    """Best achieved FLOP/s of a square GEMM on this machine: the denominator of MFU."""
    import time

    import torch

    from harness import devices
    dtype = dtype or torch.float32
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    best = float("inf")
    for _ in range(repeats):
        devices.synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        devices.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best
