"""What a user ships, and the proof that it loads back: save a trained arm's artifact, load it the way
its users do, and check that it embeds the test texts like the model that was evaluated.

The artifact is what ``SentenceTransformer.save_pretrained`` writes: the whole model for full
fine-tuning, the peft adapter folder (``adapter_config.json`` naming the base model, plus
``adapter_model.safetensors``) for adapter methods. Loading it back:

- full model: ``SentenceTransformer(folder)``;
- adapter: the base model, then peft's own loader on its transformer
  (``PeftModel.from_pretrained``, ``with_peft_adapter``). That is the check that decides.
  sentence-transformers' one-liner ``SentenceTransformer(folder)`` (transformers' adapter
  integration) is tried as well and recorded beside it, because it is what most users write and it
  is not always right: it drops DoRA's magnitude vectors without an error (transformers maps the
  saved key ``lora_magnitude_vector`` to no parameter and leaves the base's norms in place), and it
  cannot load VeRA at all (shared projections live on peft's tuner).

Two repairs make the shipped adapter mean what was evaluated (found by this check):
- PiSSA trains on a *residual* base (its principal components moved into the adapter), so its raw
  adapter on the original base counts those components twice. It is converted at save time to a
  plain LoRA of rank 2r on the original weights, with peft's own formula
  (``LoraModel.subtract_mutated_init``: ΔW = B A − B0 A0 = [B | −B0] [A ; A0], the scale kept by
  doubling alpha with r), which peft applies when ``save_pretrained`` is given the initial adapter.
- Adapters attached through peft's tuner class (VeRA, AdaLoRA) get ``base_model_name_or_path``, which
  transformers' ``add_adapter`` sets and the tuner does not, so the folder names its base model.

A run whose artifact does not reproduce the model fails with reason ``artifact_mismatch``
(harness/worker.py), with both figures in its record.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from harness.callbacks import FaultInjector

TOLERANCE = 1e-5  # largest absolute difference between float32 embeddings
PISSA_INIT = "_harness_initial_adapter"  # attribute holding PiSSA's initial A0, B0 per module


class ArtifactMismatch(RuntimeError):
    """The saved artifact, loaded back, does not embed like the evaluated model."""

    def __init__(self, check: dict):
        self.check = check
        super().__init__(f"the saved artifact does not reproduce the evaluated model: largest embedding "
                         f"difference {check['max_abs_diff']:.3g} > tolerance {check['tolerance']:g} "
                         f"(loaded with {check['loader']})")


def keep_initial_adapter(model) -> None:
    """Before training, remember each LoRA layer's initial A and B (PiSSA: the principal components
    moved out of the base), for the conversion at save time."""
    import torch
    init = {}
    for name, module in model[0].auto_model.named_modules():
        if isinstance(getattr(module, "lora_A", None), torch.nn.ModuleDict) and "default" in module.lora_A:
            init[name] = (module.lora_A["default"].weight.detach().clone(),
                          module.lora_B["default"].weight.detach().clone())
    setattr(model, PISSA_INIT, init)


def _convert_to_lora(model, dest: Path) -> None:
    """Rewrite the saved PiSSA adapter as a LoRA of rank 2r on the original base weights."""
    import torch
    from safetensors.torch import load_file, save_file
    init = getattr(model, PISSA_INIT)
    weights = dest / "adapter_model.safetensors"
    state = load_file(str(weights))
    converted = {}
    for key, value in state.items():
        module, _, kind = key.removeprefix("base_model.model.").rpartition(".lora_")
        if module not in init:
            raise RuntimeError(f"PiSSA conversion: no initial adapter kept for {module!r} (key {key})")
        a0, b0 = init[module]
        if kind == "A.weight":
            converted[key] = torch.cat([value, a0.to(value.dtype)], dim=0).contiguous()
        elif kind == "B.weight":
            converted[key] = torch.cat([value, -b0.to(value.dtype)], dim=1).contiguous()
        else:
            raise RuntimeError(f"PiSSA conversion: unexpected adapter tensor {key}")
    save_file(converted, str(weights), metadata={"format": "pt"})
    config_path = dest / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["r"] *= 2
    config["lora_alpha"] *= 2 ** 0.5 if config.get("use_rslora") else 2
    config["init_lora_weights"] = True
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))


def _rename_weights(dest: Path) -> None:
    """Test-only fault (HARNESS_INJECT_FAULT=artifact@rename): give every saved weight tensor a name that
    no loader knows, the way an adapter saved under the wrong keys loads back as the base model."""
    from safetensors.torch import load_file, save_file
    for weights in dest.rglob("*.safetensors"):
        state = load_file(str(weights))
        save_file({f"{key}.renamed": value for key, value in state.items()}, str(weights), metadata={"format": "pt"})


def save(model, method, dest: Path) -> dict:
    """Save what a user would ship and measure it: the adapter for adapter methods, else the full model."""
    transformer = model[0].auto_model
    for config in (getattr(transformer, "peft_config", None) or {}).values():
        if not getattr(config, "base_model_name_or_path", None):
            config.base_model_name_or_path = transformer.name_or_path
    model.save_pretrained(str(dest))
    if hasattr(model, PISSA_INIT):
        _convert_to_lora(model, dest)
    fault = FaultInjector.injected("artifact")
    if fault == "rename":
        _rename_weights(dest)
    if fault == "enospc":  # the disk fills while the artifact is written: its files are there, incomplete
        import errno
        raise OSError(errno.ENOSPC, "No space left on device (injected: artifact@enospc)", str(dest))
    weights = sorted(p for p in dest.rglob("*") if p.suffix in (".safetensors", ".bin"))
    return {"artifact_bytes": sum(p.stat().st_size for p in weights),
            "artifact_dir_bytes": sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()),
            "artifact_files": [str(p.relative_to(dest)) for p in weights],
            "artifact_kind": method.artifact}


def content_hash(folder: Path) -> str:
    """sha256 over the folder's files (relative path and bytes, in path order)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def load(folder: Path, *, base: str | None, device: str, max_seq_length: int = 0, via: str = "peft"):
    """Load an artifact as a user does. ``base`` (the base model's folder) and ``via="peft"`` for an
    adapter: peft's loader on the base's transformer; ``via="sentence-transformers"``, or a full model:
    ``SentenceTransformer(folder)``."""
    from sentence_transformers import SentenceTransformer
    if base is None or via == "sentence-transformers":
        model = SentenceTransformer(str(folder), device=device)
    else:
        model = SentenceTransformer(base, device=device)
        with_peft_adapter(model, folder)
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model.eval()


def with_peft_adapter(model, folder: Path, *, adapter_name: str = "default"):
    """Wrap ``model``'s transformer in peft's PeftModel with the adapter in ``folder`` (peft's own loader),
    so that ``model[0].auto_model`` is the PeftModel (its load_adapter and set_adapter serve several
    adapters). sentence-transformers 6 keeps the transformer in ``Transformer.model`` (``auto_model`` is a
    read-only view of it); earlier versions kept it in ``auto_model`` itself."""
    from peft import PeftModel
    module = model[0]
    attr = "model" if isinstance(getattr(type(module), "auto_model", None), property) else "auto_model"
    setattr(module, attr, PeftModel.from_pretrained(getattr(module, attr), str(folder), adapter_name=adapter_name))
    return model


def _encode(model, texts):
    return model.encode(texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False)


def round_trip(model, folder: Path, *, base: str | None, texts: list[str], device: str,
               max_seq_length: int = 0) -> dict:
    """Load ``folder`` back and compare its embeddings of ``texts`` with ``model``'s (float32).
    ``base`` is None for a full model. For an adapter, peft's loader decides; the one-liner
    ``SentenceTransformer(folder)`` is recorded beside it (its error, if it cannot load the folder)."""
    model.eval()
    expected = _encode(model, texts)
    loader = "peft" if base is not None else "sentence-transformers"

    def diff(via):
        loaded = load(folder, base=base, device=device, max_seq_length=max_seq_length, via=via)
        return float(abs(_encode(loaded, texts) - expected).max())

    worst = diff(loader)
    check = {"loader": loader, "max_abs_diff": worst, "tolerance": TOLERANCE, "within_tolerance": worst <= TOLERANCE,
             "sentences": len(texts), "dtype": "float32"}
    if base is not None:
        try:
            one_liner = diff("sentence-transformers")
            check["sentence_transformers_load"] = {"max_abs_diff": one_liner,
                                                   "within_tolerance": one_liner <= TOLERANCE}
        except Exception as exc:  # noqa: BLE001 - a loader that cannot load the folder is a finding
            check["sentence_transformers_load"] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
    return check
