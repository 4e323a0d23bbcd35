"""The result store: one JSON file per run, versioned, written atomically, never silently overwritten.

Schema history (bump SCHEMA_VERSION and add a line for every change; keep reading old ones):
  1 - first version: spec, status, error, timings, memory, params, energy, quality, data,
      environment (harness/schema/run-v1.schema.json).
  2 - quality.test_gold and quality.test_group beside test_cos (reports need no data reload);
      data.version and data.test_groups; params.trainable_params counts only parameters that receive
      a gradient, with requires_grad_params and inert_params beside it (run-v2.schema.json).
      A version-1 record of dataset "dating" means dating-v1 (version 2 of the data came later).
  3 - method names any entry of the method registry (harness/methods.py: dora, rslora, ...), not
      only baseline/standard/lora; quality.eval_precision (evaluation runs in fp32 after
      mixed-precision training); environment.source_commit where the launcher named it
      (run-v3.schema.json). params.lora_params_expected holds any adapter method's analytic count.
  4 - artifact_check: the saved artifact loaded back as a user would, its largest embedding
      difference against the evaluated model (harness/artifacts.py); failure reason
      artifact_mismatch; timings.artifact_s; artifact_saved where --save-models kept the artifact
      (run-v4.schema.json).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import warnings
from pathlib import Path

from harness import hardware

SCHEMA_VERSION = 4
KNOWN_VERSIONS = (1, 2, 3, 4)
SCHEMA_DIR = Path(__file__).parent / "schema"
SCHEMA_FILE = SCHEMA_DIR / f"run-v{SCHEMA_VERSION}.schema.json"


# Library versions that can move a figure while the spec stays the same (compare lists those that differ).
SOFTWARE_FIELDS = ("torch_build", "torch_cuda", "transformers_version", "peft_version", "sentence-transformers_version",
                   "tokenizers_version", "accelerate_version", "python")
# What two runs must share to count as measured on one setup: the machine, its software and the code.
SETUP_FIELDS = ("hostname", "cpu_model", *hardware.CPU_FIELDS, "device_name", *SOFTWARE_FIELDS)


def code_commit(env: dict) -> str | None:
    """The harness commit a run's code came from: the one named by whoever copied the tree, else git's."""
    return env.get("source_commit") or env.get("git_commit")


def setup_differences(a: dict, b: dict) -> list[str]:
    """The environment fields in which two runs differ (SETUP_FIELDS, and ``commit`` for the code);
    empty when both ran on one setup. Two leases of a GPU kind, or two sessions of a study, differ at
    least in the commit, so a cost ratio between them is not a side-by-side measurement."""
    out = [f for f in SETUP_FIELDS if a.get(f) != b.get(f)]
    return out + (["commit"] if code_commit(a) != code_commit(b) else [])


def schema_file(version: int) -> Path:
    return SCHEMA_DIR / f"run-v{version}.schema.json"


def data_version(record: dict) -> str:
    """The dataset version a record was evaluated on (schema 1 predates it: "dating" then meant v1)."""
    data = record.get("data") or {}
    if data.get("version"):
        return data["version"]
    name = data.get("name") or (record.get("spec") or {}).get("dataset", "")
    return "dating-v1" if name == "dating" and record.get("schema_version") == 1 else name


class ResultError(ValueError):
    """A result file that cannot be read or is of an unknown schema version."""


def load_record(path: Path) -> dict:
    """A run record, validated against the JSON schema of its version; ResultError names the problem."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResultError(f"{path}: corrupt JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise ResultError(f"{path}: not a text file (not UTF-8)") from None
    except OSError as exc:
        raise ResultError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not isinstance(record, dict):
        raise ResultError(f"{path}: expected a JSON object")
    version = record.get("schema_version")
    if type(version) is not int or version not in KNOWN_VERSIONS:  # 4.0 and True compare equal to 4 and 1
        raise ResultError(f"{path}: unknown schema_version {version!r}; this harness reads "
                          f"{', '.join(map(str, KNOWN_VERSIONS))}")
    problem = schema_problem(record, version)
    if problem:
        raise ResultError(f"{path}: not a valid version-{version} run record ({problem})")
    from harness import readable
    problem = readable.problem(record)
    if problem:
        raise ResultError(f"{path}: a value the reports cannot use ({problem})")
    return record


_VALIDATORS: dict = {}


def schema_problem(record: dict, version: int) -> str | None:
    """The first way ``record`` breaks its version's JSON schema (jsonschema), or None."""
    import jsonschema
    if version not in _VALIDATORS:
        from harness import readable
        _VALIDATORS[version] = readable.validator(json.loads(schema_file(version).read_text()))
    error = jsonschema.exceptions.best_match(_VALIDATORS[version].iter_errors(record))
    if error is None:
        return None
    where = "/".join(map(str, error.absolute_path)) or "the top level"
    return f"{error.message} at {where}"


SERVING_FILE = "serving.json"  # a job's serving record: written by serve (harness/serving.py), read by report/tasks.py


def runs_dir(out: Path) -> Path:
    return Path(out) / "runs"


def load_runs(out: Path) -> list[dict]:
    """Every readable run record under ``OUT/runs``; unreadable files are skipped with a warning."""
    records = []
    for path in sorted(runs_dir(out).glob("*.json")):
        try:
            records.append(load_record(path))
        except ResultError as exc:
            warnings.warn(f"skipping {exc}", stacklevel=2)
    return records


def find_existing(out: Path, run_id: str) -> dict | None:
    path = runs_dir(out) / f"{run_id}.json"
    if not path.exists():
        return None
    try:
        return load_record(path)
    except ResultError:
        return None


def evaluation_set(records: list[dict]):
    """(gold, groups) of the test pairs that the successful records were evaluated on, or None.

    Schema-2 records carry both. For schema-1 records the data is regenerated from the record's data
    version and must reproduce the recorded fingerprint. Records evaluated on different data are an
    error: their statistics cannot be compared.
    """
    import numpy as np
    ok = [r for r in records if r.get("status") == "success" and (r.get("quality") or {}).get("test_cos")]
    if not ok:
        return None
    seen = {((r.get("data") or {}).get("fingerprint"), len(r["quality"]["test_cos"])) for r in ok}
    if len(seen) > 1:
        raise ResultError("the runs were evaluated on different data (fingerprint, test pairs): "
                          + "; ".join(f"{fp and fp[:12]}, {n}" for fp, n in sorted(seen, key=str)))
    first = ok[0]
    if "test_gold" in first["quality"]:
        gold, groups = first["quality"]["test_gold"], first["quality"]["test_group"]
        for r in ok:
            if r["quality"].get("test_gold", gold) != gold or r["quality"].get("test_group", groups) != groups:
                raise ResultError(f"{r['run_id']}: gold scores or groups differ from {first['run_id']}'s")
        return np.asarray(gold, dtype=float), list(groups)
    return _regenerated_evaluation_set(first)


def _regenerated_evaluation_set(record: dict):
    from harness.data import DataError, load_splits
    spec = record["spec"]
    try:
        splits = load_splits(data_version(record), seed=spec.get("dataset_seed", 0),
                             score_range=tuple(spec.get("score_range", (0.0, 1.0))))
    except DataError as exc:
        raise ResultError(f"{record['run_id']}: cannot regenerate its test data ({exc})") from None
    if splits.fingerprint != record["data"].get("fingerprint"):
        recorded = record["data"].get("fingerprint") or ""
        raise ResultError(f"{record['run_id']}: the data of {data_version(record)!r} has changed since this run "
                          f"(fingerprint {splits.fingerprint[:12]} != recorded {recorded[:12]})")
    test = splits.test.head(spec.get("eval_limit", 0))
    return test.score, list(test.group)


class StoreError(OSError):
    """A finished record could not be filed in the output folder (full disk, lost permissions)."""


def check_writable(out: Path) -> None:
    """Before any worker starts: can records be filed in ``OUT/runs``? Raises ValueError with one line."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r}: exists and is not a folder")
    try:
        runs_dir(out).mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=runs_dir(out), prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"--out {str(out)!r}: cannot write there ({exc.strerror or exc})") from None


# --- the record's shape ---------------------------------------------------------------------


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_record(spec) -> dict:
    """The shape of a run record, before anything ran (the worker fills it; the runner files failures in it)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": spec.run_id,
        "spec_hash": spec.spec_hash,
        "method": spec.arm,
        "label": spec.label,
        "spec": spec.to_dict(),
        "status": "running",
        "error": None,
        "started_at": now(),
        "finished_at": None,
        "timings": {},
        "memory": {},
        "params": {},
        "energy": {},
        "quality": {},
        "training": {},
        "data": {},
        "environment": {},
        "warnings": [],
    }


