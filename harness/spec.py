"""Run specs: one set of defaults, per-arm deltas, profiles, TOML and ``--set`` overrides.

The layering follows peft's method_comparison: everything an arm shares lives in ``DEFAULTS``;
each arm states only what it changes (``ARM_DELTAS``). A profile is one more named delta.
The order is: defaults -> arm delta -> profile -> TOML file -> ``--dataset`` -> ``--set`` (last wins).

A ``RunSpec`` validates itself at construction; a bad field raises ``SpecError`` naming the
field, its value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import methods

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ARMS = tuple(methods.METHODS)  # the method registry (harness/methods.py); "full" is an alias of standard
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")
LOSSES = ("CosineSimilarityLoss",)


# Spec fields added after results were published, with the default that leaves the hash unchanged.
LATE_DEFAULTS: dict[str, Any] = {"forgetting_reference": "auto", "train_category": ""}


class SpecError(ValueError):
    """Bad user input in a spec. Each line of the message names one field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class LoraSpec:
    """The adapter table of every adapter method (rank, alpha, dropout, targets): LoHa, LoKr, VeRA and
    IA3 read it as LoRA does. Named after LoRA and kept so: records and spec hashes carry the name
    (``spec.lora``), and renaming it would orphan every published run file."""
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.1
    target_modules: tuple[str, ...] = ("query", "value")


@dataclass(frozen=True)
class RunSpec:
    arm: str
    model: str = "all-MiniLM-L6-v2"
    dataset: str = "dating"
    dataset_seed: int = 0  # seeds the dating generator; fixed across training seeds so the test set is too
    score_range: tuple[float, float] = (0.0, 1.0)  # declared range of a user file's scores
    epochs: float = 4.0
    max_steps: int = 0  # when > 0, overrides epochs
    batch_size: int = 16
    learning_rate: float = 2e-5
    warmup_steps: int = 100
    loss: str = "CosineSimilarityLoss"
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    max_seq_length: int = 0  # 0 keeps the model's own limit
    lora: LoraSpec | None = None  # the adapter table of any adapter method (LoraSpec), None for standard
    train_limit: int = 0  # 0 = all pairs
    eval_limit: int = 0
    compatible_threshold: float = 0.5
    burn_in_steps: int = 5  # steps excluded from per-step timing (allocator and cache warm-up)
    measure_energy: bool = True
    country_iso_code: str = "USA"
    timeout_s: float = 0.0  # 0 = no limit on the worker
    eval_every_steps: int = 0  # > 0: validation Spearman every N steps (time-to-quality); 0 = off
    # zero-shot reference for forgetting (harness/forgetting.py): auto (stsb, or dating when training
    # on stsb), stsb, dating, dating-v1, none, or a .csv/.jsonl file
    forgetting_reference: str = "auto"
    # train (and choose the rate) on the pairs of one category only, e.g. kids: one adapter per task
    # (`run --per-category`); the test set stays whole, so each adapter is scored on every category
    train_category: str = ""

    def __post_init__(self):
        problems = validate(self)
        if problems:
            raise SpecError(problems)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def spec_hash(self) -> str:
        """sha256 of the canonical spec. Fields added after studies were published count only when
        they differ from their default, so that existing specs keep their hash and resume."""
        fields = {k: v for k, v in self.to_dict().items() if not (k in LATE_DEFAULTS and v == LATE_DEFAULTS[k])}
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def data_key(self) -> tuple:
        """What decides the data a run trains and is evaluated on (its fingerprint is a function of it):
        every seed and rate of a sweep point shares it."""
        return (self.dataset, self.dataset_seed, self.score_range)

    @property
    def dataset_name(self) -> str:
        from harness import data
        return self.dataset if self.dataset in data.DATASETS else Path(self.dataset).stem

    @property
    def method(self) -> methods.Method:
        return methods.get(self.arm)

    @property
    def label(self) -> str:
        """The variant label, e.g. ``lora r=8`` or ``standard bf16`` (methods.variant_label)."""
        return methods.variant_label(self.to_dict())

    @property
    def run_id(self) -> str:
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.dataset_name)
        return f"{methods.run_id_prefix(self.to_dict())}-{safe}-s{self.seed}-{self.spec_hash[:10]}"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        data = dict(data)
        lora = data.pop("lora", None)
        problems = _unknown_keys(data, _field_names(cls), prefix="")
        if lora is not None and not isinstance(lora, dict):
            problems.append(f"lora = {lora!r}: expected a table of LoRA fields (r, alpha, dropout, target_modules)")
        if isinstance(lora, dict):
            problems += _unknown_keys(lora, _field_names(LoraSpec), prefix="lora.")
        if problems:
            raise SpecError(problems)
        if isinstance(lora, dict):
            lora = LoraSpec(**_coerce_fields(LoraSpec, lora, prefix="lora."))
        return cls(**_coerce_fields(cls, data, prefix=""), lora=lora)


# --- defaults, arm deltas and profiles -------------------------------------------------------

# ADR-001: 4 epochs, batch 16, 100 warm-up steps, CosineSimilarityLoss.
DEFAULTS: dict[str, Any] = {
    "epochs": 4.0,
    "batch_size": 16,
    "learning_rate": 2e-5,
    "warmup_steps": 100,
}
# The adapter table every adapter method starts from (ADR-001: r=8, alpha 16 on query and value).
DEFAULT_ADAPTER: dict[str, Any] = {"r": 8, "alpha": 16.0, "dropout": 0.1, "target_modules": ["query", "value"]}
# What each arm changes, from the method registry. The learning rate is a nuisance parameter tuned
# per method (ADR-001); the baseline trains nothing and changes nothing.
ARM_DELTAS: dict[str, dict[str, Any]] = {
    name: ({} if not m.trains else {"learning_rate": m.default_lr, **({"lora": DEFAULT_ADAPTER} if m.adapter else {})})
    for name, m in methods.METHODS.items()
}
PROFILES: dict[str, dict[str, Any]] = {
    "adr": {},
    # A first table in about two minutes on a 2-core CPU.
    "quick": {"epochs": 1.0, "train_limit": 480, "eval_limit": 200, "warmup_steps": 10},
}


def build_specs(
    *,
    arms: list[str],
    dataset: str | None = None,
    profile: str = "adr",
    config_path: str | Path | None = None,
    overrides: list[str] = (),
) -> list[RunSpec]:
    """One validated RunSpec per arm, from the layers described in the module docstring."""
    arms = [methods.ALIASES.get(a, a) for a in arms]
    problems = [f"arm {a!r}: unknown{_did_you_mean(a, ARMS)}; allowed: {', '.join(ARMS)}"
                for a in arms if a not in ARMS]
    problems += [f"arms: {a!r} is given {arms.count(a)} times; give each arm once"
                 for a in dict.fromkeys(arms) if arms.count(a) > 1]
    if not arms:
        problems.append("arms: none given; choose from " + ", ".join(ARMS))
    if profile not in PROFILES:
        problems.append(f"profile {profile!r}: unknown{_did_you_mean(profile, PROFILES)}; "
                        f"allowed: {', '.join(PROFILES)}")
    if problems:
        raise SpecError(problems)
    file_layer = load_toml(config_path) if config_path else {}
    set_layer = parse_overrides(overrides)
    specs = []
    for arm in arms:
        merged: dict[str, Any] = {"dataset": "dating"}
        cli_dataset = {"dataset": dataset} if dataset is not None else {}  # an explicit --dataset beats the file
        for layer in (DEFAULTS, ARM_DELTAS[arm], PROFILES[profile], _arm_view(file_layer, arm), cli_dataset,
                      _arm_view(set_layer, arm)):
            _deep_merge(merged, layer)
        if not methods.METHODS[arm].adapter:
            merged.pop("lora", None)  # lora.* (the adapter table) only concerns adapter methods
        merged["arm"] = arm
        specs.append(RunSpec.from_dict(merged))
    return specs


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise SpecError([f"config file {str(path)!r}: not found"]) from None
    except IsADirectoryError:
        raise SpecError([f"config file {str(path)!r}: is a folder, expected a .toml file"]) from None
    except OSError as exc:
        raise SpecError([f"config file {str(path)!r}: cannot be read ({exc.strerror or exc})"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError([f"config file {str(path)!r}: not valid TOML ({exc})"]) from None
    _check_layer_keys(data, source=f"config file {str(path)!r}")
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lora.r=16", "epochs=1"]`` -> nested dict. Values are parsed as TOML, else kept as text."""
    layer: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError([f"--set {item!r}: expected key=value, e.g. --set lora.r=16"])
        node = layer
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SpecError([f"--set {item!r}: {part!r} is not a table"])
        node[parts[-1]] = _parse_value(raw.strip())
    _check_layer_keys(layer, source="--set")
    return layer


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _check_layer_keys(layer: dict[str, Any], *, source: str) -> None:
    """Reject unknown keys early, with a suggestion, wherever they sit in a layer."""
    run_fields = _field_names(RunSpec) - {"arm"}
    problems = []
    for key, value in layer.items():
        if key in ("sweep", "arms") and not isinstance(value, dict):
            problems.append(f"{source}: {key} = {value!r}: expected a table ([{key}] in TOML)")
            continue
        if key == "sweep":
            continue  # the sweep command's own table, checked there
        if key == "arms":
            for arm, sub in value.items():
                if arm not in ARMS:
                    problems.append(f"{source}: arm {arm!r} in [arms] is unknown{_did_you_mean(arm, ARMS)}")
                elif not isinstance(sub, dict):
                    problems.append(f"{source}: arms.{arm} = {sub!r}: expected a table of spec fields "
                                    f"([arms.{arm}] in TOML, or --set arms.{arm}.KEY=VALUE)")
                else:
                    problems += _layer_problems(sub, run_fields, source, prefix=f"arms.{arm}.")
        else:
            problems += _layer_problems({key: value}, run_fields, source, prefix="")
    if problems:
        raise SpecError(problems)


def _layer_problems(layer, run_fields, source, *, prefix):
    problems = [f"{source}: {p}" for p in _unknown_keys(layer, run_fields, prefix=prefix)]
    lora = layer.get("lora")
    if "lora" in layer and not isinstance(lora, dict):
        problems.append(f"{source}: {prefix}lora = {lora!r}: expected a table of LoRA fields (r, alpha, dropout, "
                        f"target_modules), e.g. --set {prefix}lora.r=16")
    if isinstance(lora, dict):
        problems += [f"{source}: {p}" for p in _unknown_keys(lora, _field_names(LoraSpec),
                                                             prefix=f"{prefix}lora.")]
    return problems


def _arm_view(layer: dict[str, Any], arm: str) -> dict[str, Any]:
    """The shared keys of a layer, then its ``[arms.<arm>]`` table on top."""
    view = {k: v for k, v in layer.items() if k not in ("arms", "sweep")}
    _deep_merge(view, layer.get("arms", {}).get(arm, {}))
    return view


def _deep_merge(into: dict[str, Any], layer: dict[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            into[key] = dict(into[key])
            _deep_merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, dict) else value


# --- validation --------------------------------------------------------------------------------


def _field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


# Names people carry over from peft, transformers or papers.
_KEY_SUGGESTIONS = {"rank": "r", "lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout",
                    "lr": "learning_rate", "targets": "target_modules", "num_train_epochs": "epochs",
                    "per_device_train_batch_size": "batch_size"}


def _did_you_mean(name: str, choices) -> str:
    choices = list(choices)
    if _KEY_SUGGESTIONS.get(name) in choices:
        return f" (did you mean {_KEY_SUGGESTIONS[name]!r}?)"
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_keys(data: dict[str, Any], known: set[str], *, prefix: str) -> list[str]:
    return [f"{prefix}{k}: unknown key{_did_you_mean(k, known)}" for k in data if k not in known]


_TYPES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _coerce_fields(cls, data: dict[str, Any], *, prefix: str) -> dict[str, Any]:
    """Check each value's type against the dataclass field; ints are accepted for floats."""
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    out, problems = {}, []
    for key, value in data.items():
        hint = hints[key]
        try:
            out[key] = _coerce(value, hint)
        except TypeError as exc:
            problems.append(f"{prefix}{key} = {value!r}: {exc}")
    if problems:
        raise SpecError(problems)
    return out


def _coerce(value: Any, hint: str) -> Any:
    if hint == "tuple[str, ...]":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise TypeError("expected a list of module names, e.g. [\"query\", \"value\"] or query,value")
        return tuple(value)
    if hint == "tuple[float, float]":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",")]
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise TypeError("expected two numbers [low, high]") from None
        return (lo, hi)
    base = {"int": int, "float": float, "str": str, "bool": bool}.get(hint)
    if base is None:
        return value
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, base) or (base is int and isinstance(value, bool)):
        raise TypeError(f"expected {_TYPES[base]}, got {type(value).__name__}")
    return value


SEED_MAX = 2**32 - 1  # numpy's and torch's seeds are unsigned 32-bit


def _non_finite(spec: RunSpec) -> list[str]:
    """Every float field that is inf, -inf or NaN, by name (JSON cannot even store them)."""
    values = [(f.name, getattr(spec, f.name)) for f in dataclasses.fields(spec)]
    if spec.lora is not None:
        values += [(f"lora.{f.name}", getattr(spec.lora, f.name)) for f in dataclasses.fields(spec.lora)]
    out = []
    for name, value in values:
        numbers = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
            out.append(f"{name} = {list(value) if isinstance(value, tuple) else value!r}: must be a finite number")
    return out


def validate(spec: RunSpec) -> list[str]:
    """Every problem with a spec, one line each; empty when the spec is valid."""
    p: list[str] = _non_finite(spec)
    if p:
        return p  # the range checks below would only repeat these

    def need(ok: bool, name: str, value: Any, allowed: str) -> None:
        if not ok:
            p.append(f"{name} = {value!r}: must be {allowed}")

    need(spec.arm in ARMS, "arm", spec.arm, f"one of {', '.join(ARMS)}")
    need(bool(spec.model), "model", spec.model, "a model name or path")
    need(bool(spec.dataset), "dataset", spec.dataset, "dating, stsb or a .csv/.jsonl file")
    need(spec.epochs >= 0, "epochs", spec.epochs, ">= 0")
    need(spec.max_steps >= 0, "max_steps", spec.max_steps, ">= 0 (0 = use epochs)")
    if methods.trains(spec.arm):
        need(spec.epochs > 0 or spec.max_steps > 0, "epochs", spec.epochs,
             "> 0 when max_steps is 0 (a training arm must train)")
    need(spec.batch_size >= 1, "batch_size", spec.batch_size, ">= 1")
    need(spec.learning_rate > 0, "learning_rate", spec.learning_rate, "> 0")
    need(spec.warmup_steps >= 0, "warmup_steps", spec.warmup_steps, ">= 0")
    need(0 <= spec.seed <= SEED_MAX, "seed", spec.seed, f"an integer in [0, {SEED_MAX}]")
    need(0 <= spec.dataset_seed <= SEED_MAX, "dataset_seed", spec.dataset_seed, f"an integer in [0, {SEED_MAX}]")
    need(spec.loss in LOSSES, "loss", spec.loss, f"one of {', '.join(LOSSES)}")
    need(spec.device in DEVICES, "device", spec.device, f"one of {', '.join(DEVICES)}")
    need(spec.precision in PRECISIONS, "precision", spec.precision, f"one of {', '.join(PRECISIONS)}")
    need(spec.max_seq_length >= 0, "max_seq_length", spec.max_seq_length, ">= 0 (0 = model default)")
    need(spec.train_limit >= 0, "train_limit", spec.train_limit, ">= 0 (0 = all pairs)")
    need(spec.eval_limit >= 0, "eval_limit", spec.eval_limit, ">= 0 (0 = all pairs)")
    need(0 < spec.compatible_threshold < 1, "compatible_threshold", spec.compatible_threshold,
         "strictly between 0 and 1")
    need(spec.burn_in_steps >= 0, "burn_in_steps", spec.burn_in_steps, ">= 0")
    need(spec.timeout_s >= 0, "timeout_s", spec.timeout_s, ">= 0 (0 = no limit)")
    need(spec.eval_every_steps >= 0, "eval_every_steps", spec.eval_every_steps, ">= 0 (0 = off)")
    need(bool(spec.forgetting_reference), "forgetting_reference", spec.forgetting_reference,
         f"auto, {_dataset_names()}, none or a .csv/.jsonl file")
    need(len(spec.country_iso_code) == 3 and spec.country_iso_code.isalpha(), "country_iso_code",
         spec.country_iso_code, "a 3-letter ISO code such as USA, FRA or DEU")
    need(spec.train_category == spec.train_category.strip() and spec.train_category.isprintable(),
         "train_category", spec.train_category, "a category name of the dataset (printable, no surrounding spaces)")
    lo, hi = spec.score_range
    need(hi > lo, "score_range", list(spec.score_range), "[low, high] with high > low")
    adapter_arms = ", ".join(n for n, m in methods.METHODS.items() if m.adapter)
    if spec.arm in methods.METHODS and methods.METHODS[spec.arm].adapter:
        need(spec.lora is not None, "lora", spec.lora, f"an adapter table for the {spec.arm} arm")
    elif spec.lora is not None:
        p.append(f"lora = {dataclasses.asdict(spec.lora)!r}: only adapter methods ({adapter_arms}) take an "
                 "adapter table")
    if spec.lora is not None:
        need(spec.lora.r >= 1, "lora.r", spec.lora.r, "an integer >= 1")
        need(spec.lora.alpha > 0, "lora.alpha", spec.lora.alpha, "> 0")
        need(0 <= spec.lora.dropout < 1, "lora.dropout", spec.lora.dropout, "in [0, 1)")
        need(len(spec.lora.target_modules) > 0, "lora.target_modules", list(spec.lora.target_modules),
             "a non-empty list of module names")
    return p


def _dataset_names() -> str:
    from harness import data
    return data.names()
