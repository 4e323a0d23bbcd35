"""The method registry: every way of fine-tuning the harness can run, and what it needs to know of each.

One entry per method. An entry says whether the method trains, whether it takes the adapter table
(``spec.lora``: r, alpha, dropout, target_modules), how to attach it to a SentenceTransformer (a peft
config, or nothing), its analytic trainable-parameter count (the worker checks it against the live
count and fails the run on a mismatch), whether peft can merge it, what a user ships, its default
learning rate and the grid a sweep tunes it over. Labels, run ids and the order of table rows come
from here, computed from a spec's fields, never parsed back from a label.

Adding a method: one ``Method(...)`` in METHODS and one test in tests/test_methods.py.

This module imports nothing heavy at import time (peft and torch are imported inside functions), so
the parent process and the report code can use it freely.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    trains: bool = True
    adapter: bool = False  # takes the adapter table spec.lora (r, alpha, dropout, target_modules)
    default_lr: float = 2e-5
    lr_grid: tuple[float, ...] = ()
    peft_config: Callable[[Any], Any] | None = None  # adapter table -> a peft config
    # (model after attaching, adapter table, full names of the Linear modules on the forward path) -> count
    expected_params: Callable[[Any, Any, set[str] | None], int] | None = None
    merges: bool = False  # peft can fold it into the base weights (checked by the worker's merge check)
    artifact: str = "none"

    def attach(self, model, adapter) -> None:
        """Add this method's adapter to ``model`` in place (peft freezes the base weights)."""
        if self.peft_config is None:
            return
        from harness import models
        models.check_targets(adapter, models.linear_module_names(model))
        model.add_adapter(self.peft_config(adapter))


# --- analytic parameter counts --------------------------------------------------------------------


def targeted_linears(model, adapter, active: set[str] | None):
    """(name, base Linear) of each adapted layer on the forward path; call after attaching."""
    import torch
    for name, module in model.named_modules():
        base = getattr(module, "base_layer", None)
        if (name.rsplit(".", 1)[-1] in adapter.target_modules and isinstance(base, torch.nn.Linear)
                and (active is None or name in active)):
            yield name, base


def lora_params(model, adapter, active) -> int:
    """LoRA: A (r x in) and B (out x r) per adapted layer: r * (in + out)."""
    return sum(adapter.r * (b.in_features + b.out_features) for _, b in targeted_linears(model, adapter, active))


def dora_params(model, adapter, active) -> int:
    """DoRA: LoRA's A and B plus a magnitude vector of out_features per adapted layer."""
    magnitudes = sum(b.out_features for _, b in targeted_linears(model, adapter, active))
    return lora_params(model, adapter, active) + magnitudes


def loha_params(model, adapter, active) -> int:
    """LoHa: two pairs of rank-r factors, (out x r) and (r x in) each, per adapted layer: 2r * (in + out)."""
    return sum(2 * adapter.r * (b.in_features + b.out_features) for _, b in targeted_linears(model, adapter, active))


# --- peft configs ---------------------------------------------------------------------------------


def _lora_config(**extra):
    def build(adapter):
        from peft import LoraConfig
        return LoraConfig(r=adapter.r, lora_alpha=adapter.alpha, lora_dropout=adapter.dropout,
                          target_modules=list(adapter.target_modules), **extra)
    return build


def _loha_config(adapter):
    from peft import LoHaConfig
    # LoHa has no dropout on its input; the adapter table's dropout drops ranks (peft's rank_dropout).
    return LoHaConfig(r=adapter.r, alpha=adapter.alpha, rank_dropout=adapter.dropout,
                      target_modules=list(adapter.target_modules))


LORA_LR_GRID = (1e-4, 2e-4, 5e-4)

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("baseline", "the pre-trained model, untrained (the floor every method must beat)", trains=False),
    Method("standard", "full fine-tuning: every parameter on the forward path trains", default_lr=2e-5,
           lr_grid=(1e-5, 2e-5, 5e-5), artifact="full model (safetensors)"),
    Method("lora", "LoRA (Hu et al. 2021): a trainable low-rank update B A beside each targeted Linear",
           adapter=True, default_lr=2e-4, lr_grid=LORA_LR_GRID, peft_config=_lora_config(),
           expected_params=lora_params, merges=True, artifact="peft adapter (safetensors)"),
    Method("dora", "DoRA (Liu et al. 2024): LoRA on the direction of each weight plus a trained magnitude",
           adapter=True, default_lr=2e-4, lr_grid=LORA_LR_GRID, peft_config=_lora_config(use_dora=True),
           expected_params=dora_params, merges=True, artifact="peft adapter (safetensors)"),
    Method("rslora", "rank-stabilised LoRA (Kalajdzievski 2023): LoRA scaled by alpha / sqrt(r)",
           adapter=True, default_lr=2e-4, lr_grid=LORA_LR_GRID, peft_config=_lora_config(use_rslora=True),
           expected_params=lora_params, merges=True, artifact="peft adapter (safetensors)"),
    Method("loha", "LoHa (Hyeon-Woo et al. 2022): the update is the Hadamard product of two low-rank products",
           adapter=True, default_lr=2e-4, lr_grid=LORA_LR_GRID, peft_config=_loha_config,
           expected_params=loha_params, merges=True, artifact="peft adapter (safetensors)"),
)}
ALIASES = {"full": "standard"}


def get(name: str) -> Method:
    return METHODS[ALIASES.get(name, name)]


# --- the variant key: one identity for labels, run ids, table rows and plot series ----------------


def variant_label(spec: dict) -> str:
    """``standard``, ``lora r=8``, ``dora r=16 bf16``: method, rank where it has one, and a precision
    other than fp32. Computed from a spec (or a record's ``spec``), never parsed back."""
    method = spec.get("arm")
    parts = [method]
    adapter = spec.get("lora")
    if adapter and method in METHODS and METHODS[method].adapter:
        parts.append(f"r={adapter['r']}")
    trains = METHODS[method].trains if method in METHODS else True
    if trains and spec.get("precision", "fp32") != "fp32":  # the baseline trains nothing: no precision
        parts.append(spec["precision"])
    return " ".join(str(p) for p in parts)


def series_label(spec: dict) -> str:
    """The plot series a variant belongs to: its label without the rank (``lora``, ``dora bf16``)."""
    return variant_label({**spec, "lora": None})


def reference_label(specs) -> str | None:
    """The variant every other is compared with: the first full fine-tuning variant in table order
    (``standard``, or ``standard bf16`` in a job that trained only in bf16)."""
    full = sorted((s for s in specs if s.get("arm") == "standard"), key=sort_key)
    return variant_label(full[0]) if full else None


def run_id_prefix(spec: dict) -> str:
    """``lora-r8``, ``standard``: the start of a run id (the spec hash follows, so ids stay unique)."""
    adapter = spec.get("lora")
    method = spec.get("arm")
    return f"{method}-r{adapter['r']}" if adapter and method in METHODS and METHODS[method].adapter else str(method)


def sort_key(spec: dict) -> tuple:
    """Table and plot order: baseline, standard, then each method in registry order by rank, fp32 first."""
    order = list(METHODS)
    method = spec.get("arm")
    adapter = spec.get("lora") or {}
    return (order.index(method) if method in order else len(order), adapter.get("r", 0),
            spec.get("precision", "fp32") != "fp32", spec.get("precision", "fp32"))
