"""What every reader of a run record relies on, whatever the record's schema version.

The versioned schemas (harness/schema/run-v*.schema.json) say which fields a record of that version
has. Readers (report, sweep and methods tables, publish, compare, the site) also rely on the *types*
of the values they compute with, deep in the tree: a per-category figure that is a list, a memory
figure that is a string, cosines and gold scores of different lengths. A record that breaks one of
these is not a record the readers can use: ``problem(record)`` names the first such value, and
``results.load_record`` skips the file with one warning, as it does for a record that breaks its
version's schema. Fields absent from old versions stay allowed; only the types of present ones and
the consistency between them are checked.

The rules were found by generating hostile records (tests/test_properties.py): each class of value
that made a reader raise is stated here once.
"""

from __future__ import annotations

NUM = {"type": ["number", "null"]}
INT = {"type": ["integer", "null"]}
STR = {"type": ["string", "null"]}
BOOL = {"type": ["boolean", "null"]}
SCALAR = {"type": ["number", "string", "boolean", "null"]}


def _obj(properties: dict | None = None, *, rest: dict | None = None) -> dict:
    out: dict = {"type": "object"}
    if properties:
        out["properties"] = properties
    if rest is not None:
        out["additionalProperties"] = rest
    return out


def _arr(items: dict) -> dict:
    return {"type": "array", "items": items}


# what the sweep's rows read from a merge check (variants.point_rows)
MERGE_FIGURES = ("max_abs_diff", "unmerged_sentences_per_s", "merged_sentences_per_s", "base_sentences_per_s")
FIGURES = {k: NUM for k in ("spearman", "pearson", "margin", "cohens_d", "auc_roc", "f1", "decision_threshold",
                            "validation_f1", "best_f1_oracle", "best_f1_oracle_threshold", "compatible_threshold",
                            "cluster_purity", "cluster_purity_floor", "spearman_ceiling", "validation_spearman")}
SCHEMA = _obj({
    "run_id": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]*$"},
    "method": {"type": "string"}, "label": {"type": "string"}, "status": {"type": "string"},
    "spec": _obj({
        "arm": {"type": "string"}, "model": {"type": "string"}, "dataset": {"type": "string"},
        "seed": {"type": "integer"}, "dataset_seed": {"type": "integer"}, "epochs": {"type": "number"},
        "max_steps": {"type": "integer"}, "batch_size": {"type": "integer"}, "learning_rate": {"type": "number"},
        "warmup_steps": {"type": "integer"}, "device": {"type": "string"}, "precision": {"type": "string"},
        "max_seq_length": {"type": "integer"}, "train_limit": {"type": "integer"}, "eval_limit": {"type": "integer"},
        "compatible_threshold": {"type": "number"}, "eval_every_steps": {"type": "integer"},
        "train_category": {"type": "string"},
        "score_range": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
        "lora": {"oneOf": [{"type": "null"}, {**_obj({
            "r": {"type": "integer"}, "alpha": {"type": "number"}, "dropout": {"type": "number"},
            "target_modules": _arr({"type": "string"})}), "required": ["r", "alpha", "target_modules"]}]},
    }),
    "error": {"oneOf": [{"type": "null"}, _obj({"reason": {"type": "string"}, "message": {"type": "string"}})]},
    "timings": _obj(rest=SCALAR),
    "memory": _obj(rest=SCALAR),
    "energy": _obj(rest=SCALAR),
    "params": _obj({"trainable_params": INT, "requires_grad_params": INT, "total_params": INT,
                    "trainable_pct": NUM, "lora_params_expected": INT, "lora_params_match": BOOL,
                    "base_params": INT, "artifact_bytes": INT, "artifact_dir_bytes": INT,
                    "inert_params": _obj(rest={"type": "integer"}),
                    "artifact_files": _arr({"type": "string"}), "artifact_kind": STR}),
    "quality": _obj({
        **FIGURES, "n_pairs": INT, "n_compatible": INT,
        # a category's figures, which tables compare and count (tradeoffs.dataset_notes: n_pairs < 30)
        "per_category": _obj(rest=_obj({**FIGURES, "n_pairs": INT, "n_compatible": INT}, rest=SCALAR)),
        "false_positives": _obj({"count": INT, "n_incompatible": INT,
                                 "top": _arr({**_obj({"cos": {"type": "number"}, "category": STR,
                                                      "text_a": {"type": "string"}, "text_b": {"type": "string"}},
                                                     rest=SCALAR), "required": ["cos", "text_a", "text_b"]})}),
        "test_cos": _arr({"type": "number"}), "test_gold": _arr({"type": "number"}),
        "test_group": _arr({"type": ["string", "integer"]}), "test_category": _arr(STR),
        "forgetting": {"oneOf": [{"type": "null"}, _obj(rest=SCALAR)]},
        "split": STR, "eval_precision": STR, "threshold_from": STR,
    }),
    "training": _obj({"global_step": INT, "train_loss": NUM,
                      "loss_history": _arr({"type": ["number", "null", "object"]}),
                      "validation_curve": _arr(_obj({"step": {"type": "integer"}}, rest=SCALAR)),
                      "convergence": {"oneOf": [{"type": "null"}, _obj(rest=SCALAR)]}}),
    "data": _obj(rest=SCALAR),
    "environment": _obj(rest=SCALAR),
    "merge": {"oneOf": [{"type": "null"}, {**_obj({k: {"type": "number"} for k in MERGE_FIGURES}, rest=SCALAR),
                                            "required": list(MERGE_FIGURES)}]},
    "artifact_check": {**_obj({"loader": {"type": "string"}, "max_abs_diff": {"type": "number"},
                               "tolerance": {"type": "number"}, "within_tolerance": {"type": "boolean"},
                               "sentence_transformers_load": _obj(rest=SCALAR)},
                              rest={"type": ["number", "string", "boolean", "null", "object"]}),
                       "required": ["loader", "max_abs_diff", "tolerance", "within_tolerance"]},
    "artifact_saved": _obj(rest=SCALAR),
    "warnings": _arr({"type": "string"}),
})

_VALIDATOR = None
# JSON values as json.loads makes them, by schema type name (exact types: a bool is no number here)
_PLAIN = {"number": (int, float), "integer": (int,), "string": (str,), "boolean": (bool,), "null": (type(None),)}


def validator(schema: dict):
    """A Draft 2020-12 validator of ``schema`` (jsonschema) whose ``items`` keyword passes an array of
    plain values in one loop where its items schema is a type alone and every item is of that type as
    json.loads makes it; anything else (a failing item included) goes to jsonschema's own ``items``, with
    its own errors. The verdicts and messages are jsonschema's; its per-item descent over the thousands
    of per-pair values of each record was most of the time a report took to read a job's runs."""
    import jsonschema
    standard = jsonschema.Draft202012Validator.VALIDATORS["items"]

    def items(check, items_schema, instance, schema):
        kinds = _plain_types(items_schema)
        if kinds and isinstance(instance, list) and all(type(x) in kinds for x in instance):
            return  # every item passes (with prefixItems, jsonschema checks a subset of them)
        yield from standard(check, items_schema, instance, schema)

    return jsonschema.validators.extend(jsonschema.Draft202012Validator, {"items": items})(schema)


def _plain_types(items_schema) -> tuple | None:
    """The Python types of an items schema that is ``{"type": name or [names]}`` alone, else None."""
    if not isinstance(items_schema, dict) or set(items_schema) != {"type"}:
        return None
    names = items_schema["type"] if isinstance(items_schema["type"], list) else [items_schema["type"]]
    if not all(isinstance(n, str) and n in _PLAIN for n in names):
        return None
    return tuple(t for n in names for t in _PLAIN[n])


def problem(record: dict) -> str | None:
    """The first value of ``record`` that a reader could not use, or None."""
    global _VALIDATOR
    import jsonschema
    if _VALIDATOR is None:
        _VALIDATOR = validator(SCHEMA)
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(record))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "the top level"
        return f"{error.message} at {where}"
    quality = record.get("quality") or {}
    lengths = {k: len(quality[k]) for k in ("test_cos", "test_gold", "test_group", "test_category")
               if isinstance(quality.get(k), list)}
    if len(set(lengths.values())) > 1:
        return "quality: " + ", ".join(f"{k} has {n}" for k, n in lengths.items()) + " entries (one per test pair)"
    return None
