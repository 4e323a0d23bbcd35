"""The method registry: every way of fine-tuning the harness can run, and what it needs to know of each.

One entry per method. An entry says whether the method trains, whether it takes the adapter table
(``spec.lora``: r, alpha, dropout, target_modules) and whether the rank in it means anything, how to
attach it to a SentenceTransformer (a peft config, or nothing), what it needs from the trainer (an
optimizer, a callback), its analytic trainable-parameter count (the worker checks it against the
live count and fails the run on a mismatch), whether peft can merge it, what a user ships, its
default learning rate and the grid a sweep tunes it over. Labels, run ids and the order of table
rows come from here, computed from a spec's fields, never parsed back from a label.

How a method reaches the model: most go through ``model.add_adapter(config)`` (transformers' peft
integration, what a sentence-transformers user calls). Methods whose tuner keeps state of its own
(VeRA's shared projections; AdaLoRA's rank allocator, which must be stepped during training) are
built with peft's own tuner class on the transformer, which injects the same layers in place and
keeps the tuner for the trainer hooks (``attach_via="tuner"``).

Adding a method: one ``Method(...)`` in METHODS and one test in tests/test_methods.py.

This module imports nothing heavy at import time (peft and torch are imported inside functions), so
the parent process and the report code can use it freely.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness import files


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
    ranked: bool = True  # an adapter method whose rank (spec.lora.r) changes it; IA3 has none
    attach_via: str = "inject"  # "inject": model.add_adapter; "tuner": peft's tuner class, kept for hooks
    # (model, training arguments) -> a torch optimizer the trainer uses instead of its own (LoRA+)
    optimizer: Callable[[Any, Any], Any] | None = None
    # (the tuner from attach) -> trainer callbacks the method needs (AdaLoRA's rank allocation)
    callbacks: Callable[[Any], list] | None = None
    notes: str = ""  # what a reader of the table must know about how the method was run
    # (model, tuner) -> None: a repair after attaching (a peft quirk the parameter check found)
    after_attach: Callable[[Any, Any], None] | None = None

    def attach(self, model, adapter, *, total_steps: int | None = None):
        """Add this method's adapter to ``model`` in place (peft freezes the base weights). Returns
        peft's tuner where the method keeps one (attach_via="tuner"), else None. ``total_steps``
        is the number of optimizer steps the run will take (AdaLoRA's budget schedule needs it)."""
        if self.peft_config is None:
            return None
        from harness import models
        models.check_targets(adapter, models.linear_module_names(model))
        config = self.peft_config(adapter, total_steps)
        if self.attach_via == "inject":
            model.add_adapter(config)
            tuner = None
        else:
            from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
            transformer = model[0].auto_model
            tuner = PEFT_TYPE_TO_TUNER_MAPPING[config.peft_type](transformer, config, "default")
            # What transformers' add_adapter records after injecting, so that save_pretrained,
            # disable_adapters and enable_adapters treat the model as one carrying a peft adapter.
            transformer._hf_peft_config_loaded = True
        if self.after_attach is not None:
            self.after_attach(model, tuner)
        return tuner


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


def ia3_params(model, adapter, active) -> int:
    """IA3: one learned scale per output feature of each adapted (non-feed-forward) layer: out."""
    return sum(b.out_features for _, b in targeted_linears(model, adapter, active))


def _near_square(n: int) -> tuple[int, int]:
    """n = a * b with a <= b and a the largest divisor of n not above its square root."""
    a = max(d for d in range(1, int(n ** 0.5) + 1) if n % d == 0)
    return a, n // a


def lokr_params(model, adapter, active) -> int:
    """LoKr: W = kron(W1, W2) with out = a*b and in = c*d split near their square roots; W1 is a x c,
    W2 is b x d, or its rank-r factors (b x r, r x d) when r < max(b, d) / 2."""
    total = 0
    for _, base in targeted_linears(model, adapter, active):
        (a, b), (c, d) = _near_square(base.out_features), _near_square(base.in_features)
        w2 = adapter.r * (b + d) if adapter.r < max(b, d) / 2 else b * d
        total += a * c + w2
    return total


def vera_params(model, adapter, active) -> int:
    """VeRA: per adapted layer a scaling vector d (r) and b (out); the shared random projections are
    frozen buffers and count for nothing: r + out."""
    return sum(adapter.r + b.out_features for _, b in targeted_linears(model, adapter, active))


def adalora_init_rank(r: int) -> int:
    """AdaLoRA starts every layer at 1.5 x the target average rank (peft's defaults: 12 -> 8) and prunes."""
    return max(r + 1, round(1.5 * r))


def adalora_params(model, adapter, active) -> int:
    """AdaLoRA: the SVD-form update P diag(E) Q at the initial rank R = 1.5 r: R * (in + out + 1) per
    adapted layer (pruned singular values are masked to zero, not removed)."""
    R = adalora_init_rank(adapter.r)
    return sum(R * (b.in_features + b.out_features + 1) for _, b in targeted_linears(model, adapter, active))


# --- peft configs ---------------------------------------------------------------------------------


def _lora_config(**extra):
    def build(adapter, total_steps=None):
        from peft import LoraConfig
        return LoraConfig(r=adapter.r, lora_alpha=adapter.alpha, lora_dropout=adapter.dropout,
                          target_modules=list(adapter.target_modules), **extra)
    return build


def _loha_config(adapter, total_steps=None):
    from peft import LoHaConfig
    # LoHa has no dropout on its input; the adapter table's dropout drops ranks (peft's rank_dropout).
    return LoHaConfig(r=adapter.r, alpha=adapter.alpha, rank_dropout=adapter.dropout,
                      target_modules=list(adapter.target_modules))


def _lokr_config(adapter, total_steps=None):
    from peft import LoKrConfig
    return LoKrConfig(r=adapter.r, alpha=adapter.alpha, rank_dropout=adapter.dropout,
                      target_modules=list(adapter.target_modules))


def _ia3_config(adapter, total_steps=None):
    from peft import IA3Config
    # The default targets (attention query and value) are not feed-forward layers: IA3 scales their
    # outputs. IA3 has no rank, no alpha and no dropout.
    return IA3Config(target_modules=list(adapter.target_modules), feedforward_modules=[])


def _vera_config(adapter, total_steps=None):
    from peft import VeraConfig
    # save_projection=False: the shipped adapter holds the trained vectors only; the frozen shared
    # projections are regenerated from projection_prng_key when it is loaded (peft's own option;
    # peft's check for saved projections expects a PeftModel's key names, which a tuner on the
    # transformer does not have).
    return VeraConfig(r=adapter.r, vera_dropout=adapter.dropout, target_modules=list(adapter.target_modules),
                      save_projection=False)


def _adalora_config(adapter, total_steps=None):
    from peft import AdaLoraConfig
    if not total_steps:
        raise ValueError("adalora needs the run's number of optimizer steps (total_step) to schedule its budget")
    # Budget schedule: full rank for the first 10% of steps, prune towards the target rank until the
    # last 20%, then train at the final allocation (peft's tinit, tfinal; deltaT=1 prunes every step).
    return AdaLoraConfig(init_r=adalora_init_rank(adapter.r), target_r=adapter.r, lora_alpha=adapter.alpha,
                         lora_dropout=adapter.dropout, target_modules=list(adapter.target_modules),
                         total_step=total_steps, tinit=total_steps // 10, tfinal=total_steps // 5, deltaT=1)


LORAPLUS_LR_RATIO = 16.0


def _loraplus_optimizer(model, args):
    """peft's LoRA+ optimizer: the trainer's own optimizer class and settings, with the B matrices at
    LORAPLUS_LR_RATIO times the learning rate."""
    from peft.optimizers import create_loraplus_optimizer
    from transformers import Trainer
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    kwargs = {k: v for k, v in kwargs.items() if k != "lr"}
    return create_loraplus_optimizer(model, cls, lr=args.learning_rate, loraplus_lr_ratio=LORAPLUS_LR_RATIO,
                                     loraplus_weight_decay=args.weight_decay, **kwargs)


def _adalora_after_attach(model, tuner) -> None:
    """Two repairs, each found by a run:
    - peft moves each new adapter to its base layer's device by re-assigning its tensors into their
      ParameterDict, which wraps them as new Parameters with requires_grad=True: on a model already
      on a GPU, AdaLoRA's rank counter ``ranknum`` (a constant) then trains. The parameter check
      caught it (4 parameters too many on the tiny BERT). It is frozen again here, as peft intends.
    - saving an AdaLoRA adapter after rank allocation calls ``resize_state_dict_by_rank_pattern``
      on the model being saved, a method of peft's AdaLoraModel that expects a PeftModel's key names
      (``base_model.model.``): the transformer is given the tuner's method behind that prefix, so
      the saved adapter holds the ranks that survived pruning."""
    for name, param in model.named_parameters():
        if ".ranknum." in name:
            param.requires_grad_(False)
    prefix = "base_model.model."

    def resize(rank_pattern, state_dict, adapter_name):
        prefixed = {prefix + k: v for k, v in state_dict.items()}
        resized = tuner.resize_state_dict_by_rank_pattern(rank_pattern, prefixed, adapter_name)
        return {k.removeprefix(prefix): v for k, v in resized.items()}

    model[0].auto_model.resize_state_dict_by_rank_pattern = resize


def _pissa_after_attach(model, tuner) -> None:
    """Keep PiSSA's initial adapter: the shipped artifact is converted to a LoRA on the original base
    weights (harness/artifacts.py), which needs it."""
    from harness import artifacts
    artifacts.keep_initial_adapter(model)


def _adalora_callbacks(tuner):
    from harness.callbacks import AdaLoraAllocator
    return [AdaLoraAllocator(tuner)]


LORA_LR_GRID = (1e-4, 2e-4, 5e-4)
ADAPTER = "peft adapter (safetensors)"

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("baseline", "the pre-trained model, untrained (the floor every method must beat)", trains=False),
    Method("standard", "full fine-tuning: every parameter on the forward path trains", default_lr=2e-5,
           lr_grid=(1e-5, 2e-5, 5e-5), artifact="full model (safetensors)"),
    Method("lora", "LoRA (Hu et al. 2021): a trainable low-rank update B A beside each targeted Linear",
           adapter=True, default_lr=2e-4, lr_grid=LORA_LR_GRID, peft_config=_lora_config(),
           expected_params=lora_params, merges=True, artifact="peft adapter (safetensors)"),
    Method("dora", "DoRA (Liu et al. 2024): LoRA on the direction of each weight plus a trained magnitude",
           adapter=True, default_lr=2e-4, lr_grid=LORA_LR_GRID, peft_config=_lora_config(use_dora=True),
           expected_params=dora_params, merges=True, artifact="peft adapter (safetensors)",
           notes="load the adapter with peft's PeftModel.from_pretrained: SentenceTransformer(folder) (transformers' "
           "adapter loading) silently drops the trained magnitude vectors (the artifact check records both)"),
    Method("rslora", "rank-stabilised LoRA (Kalajdzievski 2023): LoRA scaled by alpha / sqrt(r)",
           adapter=True, default_lr=2e-4, lr_grid=LORA_LR_GRID, peft_config=_lora_config(use_rslora=True),
           expected_params=lora_params, merges=True, artifact="peft adapter (safetensors)"),
    Method("pissa", "PiSSA (Meng et al. 2024): LoRA initialised from the principal singular vectors of each "
           "weight, the base keeping the residual", adapter=True, default_lr=1e-4, lr_grid=(5e-5, 1e-4, 2e-4),
           peft_config=_lora_config(init_lora_weights="pissa_niter_4"), expected_params=lora_params, merges=True,
           artifact="peft adapter (safetensors), converted to a LoRA of rank 2r on the original base",
           after_attach=_pissa_after_attach,
           notes="pissa_niter_4: a fast randomised SVD (4 subspace iterations) at attach time, "
           "counted in load time; the base weights become the residual, so the shipped adapter is converted "
           "to a LoRA of rank 2r on the original weights (peft's subtract_mutated_init formula). It runs "
           "with the shared adapter table, dropout 0.1 included, which here drops part of the principal components; "
           "PiSSA's authors train without dropout"),
    Method("loraplus", "LoRA+ (Hayou et al. 2024): LoRA with the B matrices at 16x the learning rate of A",
           adapter=True, default_lr=1e-4, lr_grid=(5e-5, 1e-4, 2e-4), peft_config=_lora_config(),
           expected_params=lora_params, merges=True, artifact=ADAPTER, optimizer=_loraplus_optimizer,
           notes=f"peft.optimizers.create_loraplus_optimizer, loraplus_lr_ratio {LORAPLUS_LR_RATIO:g}; the "
           "learning rate shown is A's"),
    Method("ia3", "IA3 (Liu et al. 2022): learned scaling vectors on the outputs of the targeted layers",
           adapter=True, ranked=False, default_lr=5e-3, lr_grid=(1e-3, 5e-3, 2e-2), peft_config=_ia3_config,
           expected_params=ia3_params, merges=True, artifact=ADAPTER,
           notes="no rank: runs once per seed; the adapter table's r, alpha and dropout do not apply"),
    Method("loha", "LoHa (Hyeon-Woo et al. 2022): the update is the Hadamard product of two low-rank products",
           adapter=True, default_lr=2e-4, lr_grid=LORA_LR_GRID, peft_config=_loha_config,
           expected_params=loha_params, merges=True, artifact=ADAPTER),
    Method("lokr", "LoKr (Edalati et al. 2022; LyCORIS): the update is a Kronecker product of a small full "
           "factor and a low-rank one", adapter=True, default_lr=2e-4, lr_grid=LORA_LR_GRID,
           peft_config=_lokr_config, expected_params=lokr_params, merges=True, artifact=ADAPTER),
    Method("vera", "VeRA (Kopiczko et al. 2024): frozen random projections shared by all layers, with trained "
           "scaling vectors", adapter=True, default_lr=5e-3, lr_grid=(1e-3, 5e-3, 2e-2), peft_config=_vera_config,
           expected_params=vera_params, merges=True, artifact=ADAPTER, attach_via="tuner",
           notes="peft's VeraModel (shared state: transformers' add_adapter cannot inject it); the artifact "
           "holds the trained vectors, the shared projections are regenerated from their PRNG key on loading "
           "(save_projection=False); it loads with peft's PeftModel.from_pretrained, not SentenceTransformer(folder)"),
    Method("adalora", "AdaLoRA (Zhang et al. 2023): an SVD-form update whose rank budget is reallocated "
           "across layers during training", adapter=True, default_lr=2e-4, lr_grid=LORA_LR_GRID,
           peft_config=_adalora_config, expected_params=adalora_params, merges=True, artifact=ADAPTER,
           attach_via="tuner", callbacks=_adalora_callbacks, after_attach=_adalora_after_attach,
           notes="starts at rank 1.5r and prunes to an average of r; update_and_allocate after every optimizer "
           "step (a trainer callback, peft issues 1327/1341). peft adds AdaLoRA's orthogonality penalty only to "
           "a loss the model itself returns; sentence-transformers computes the loss outside the model, so the "
           "penalty is not applied, as for any sentence-transformers user"),
)}
ALIASES = {"full": "standard"}  # other names of methods (spec._KEY_SUGGESTIONS are of config keys)


def get(name: str) -> Method:
    return METHODS[ALIASES.get(name, name)]


# --- the variant key: one identity for labels, run ids, table rows and plot series ----------------


def trains(name: str | None) -> bool:
    """Whether runs of this method train (every method but the untrained baseline; an unknown name, as
    in a record of a method since removed, counts as trained)."""
    method = METHODS.get(name) if name is not None else None
    return method is None or method.trains


def _ranked(method) -> bool:
    return method in METHODS and METHODS[method].adapter and METHODS[method].ranked


def variant_label(spec: dict) -> str:
    """``standard``, ``lora r=8``, ``dora r=16 bf16``: method, rank where it has one, and a precision
    other than fp32. Computed from a spec (or a record's ``spec``), never parsed back."""
    method = spec.get("arm")
    parts = [method]
    adapter = spec.get("lora")
    if adapter and _ranked(method):
        parts.append(f"r={adapter['r']}")
    trains = METHODS[method].trains if method in METHODS else True
    if trains and spec.get("precision", "fp32") != "fp32":  # the baseline trains nothing: no precision
        parts.append(spec["precision"])
    if spec.get("train_category"):  # one task's adapter (run --per-category)
        parts.append(f"on {spec['train_category']}")
    return " ".join(str(p) for p in parts)


def series_label(spec: dict) -> str:
    """The plot series a variant belongs to: its label without the rank (``lora``, ``dora bf16``)."""
    return variant_label({**spec, "lora": None})


def main_precision(specs) -> str | None:
    """The precision a job compares its methods in: the one that holds the most trained variants
    (``bf16`` in a study of ten adapters in bf16 with standard and LoRA also in fp32 for the precision
    section); a tie goes to fp32, then to table order."""
    variants: dict[str, set[str]] = {}
    for s in specs:
        if trains(s.get("arm")):
            variants.setdefault(s.get("precision", "fp32"), set()).add(variant_label({**s, "precision": "fp32"}))
    if not variants:
        return None
    return min(variants, key=lambda p: (-len(variants[p]), p != "fp32", p))


def reference_label(specs) -> str | None:
    """The variant every other is compared with: full fine-tuning in the job's main precision
    (main_precision: ``standard``, or ``standard bf16`` in a job that compares its methods in bf16),
    so that a method's Δ never mixes the method with the precision; where standard did not train in
    that precision, the first standard in table order."""
    specs = list(specs)
    full = sorted((s for s in specs if s.get("arm") == "standard"), key=sort_key)
    main = main_precision(specs)
    same = [s for s in full if s.get("precision", "fp32") == main]
    return variant_label((same or full)[0]) if full else None


def run_id_prefix(spec: dict) -> str:
    """``lora-r8``, ``standard``: the start of a run id (the spec hash follows, so ids stay unique)."""
    adapter = spec.get("lora")
    method = spec.get("arm")
    prefix = f"{method}-r{adapter['r']}" if adapter and _ranked(method) else str(method)
    if spec.get("train_category"):
        prefix += "-" + (files.slug(spec["train_category"]) or "category")
    return prefix


def sort_key(spec: dict) -> tuple:
    """Table and plot order: baseline, standard, then each method in registry order by rank, fp32 first."""
    order = list(METHODS)
    method = spec.get("arm")
    adapter = spec.get("lora") or {}
    return (order.index(method) if method in order else len(order), adapter.get("r", 0) if _ranked(method) else 0,
            spec.get("precision", "fp32") != "fp32", spec.get("precision", "fp32"), spec.get("train_category") or "")
