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
import math
import os
import sys
import tempfile
import warnings
from pathlib import Path

SCHEMA_VERSION = 4
KNOWN_VERSIONS = (1, 2, 3, 4)
SCHEMA_DIR = Path(__file__).parent / "schema"
SCHEMA_FILE = SCHEMA_DIR / f"run-v{SCHEMA_VERSION}.schema.json"


# Library versions that can move a figure while the spec stays the same (compare lists those that differ).
SOFTWARE_FIELDS = ("torch_build", "torch_cuda", "transformers_version", "peft_version", "sentence-transformers_version",
                   "tokenizers_version", "accelerate_version", "python")
# What two runs must share to count as measured on one setup: the machine, its software and the code.
SETUP_FIELDS = ("hostname", "cpu_model", "device_name", *SOFTWARE_FIELDS)


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


def write_json_atomic(path: Path, data: dict, *, overwrite: bool = False) -> None:
    """Write to a temporary file in the same folder, flush and fsync, then rename into place.

    A reader never sees a half-written file. Without ``overwrite`` an existing file is an error.
    """
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise FileExistsError(f"{path}: a result already exists; refusing to overwrite it")
    text = json.dumps(_finite(data), indent=2, allow_nan=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def write_text_atomic(path: Path, text: str) -> Path:
    """Tables and pages: the same temporary file, fsync and rename as records."""
    write_bytes_atomic(Path(path), text.encode("utf-8"))
    return Path(path)


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    """Never through a symlink (the rename replaces the link itself), never half written, and with
    the permissions the user's umask gives a new file (mkstemp alone would make it 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_figure_atomic(fig, path: Path, **kwargs) -> Path:
    """matplotlib's savefig into a buffer, then an atomic write."""
    import io
    buffer = io.BytesIO()
    fmt = Path(path).suffix.lstrip(".")
    if fmt == "svg":  # no creation date: the same figure gives the same file (published files are diffed)
        kwargs.setdefault("metadata", {"Date": None})
    import matplotlib
    with matplotlib.rc_context({"svg.hashsalt": "harness"}):  # element ids from a fixed salt, not a random one
        fig.savefig(buffer, format=fmt, **kwargs)
    write_bytes_atomic(Path(path), buffer.getvalue())
    return Path(path)


def frame_to_csv_atomic(frame, path: Path, **kwargs) -> Path:
    return write_text_atomic(Path(path), frame.to_csv(**kwargs))


def _finite(value):
    """JSON has no NaN or infinity: store them as null rather than lose the record."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


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
        _VALIDATORS[version] = jsonschema.Draft202012Validator(json.loads(schema_file(version).read_text()))
    error = jsonschema.exceptions.best_match(_VALIDATORS[version].iter_errors(record))
    if error is None:
        return None
    where = "/".join(map(str, error.absolute_path)) or "the top level"
    return f"{error.message} at {where}"


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


class OutputLock:
    """An exclusive ``fcntl.flock`` on ``OUT/.lock`` for one harness process at a time: two processes
    on one folder would run every arm twice and spoil each other's timings. Released on exit, even
    when the process is killed (the kernel drops the lock with the file descriptor)."""

    def __init__(self, out: Path):
        self.path = Path(out) / ".lock"
        self.fd: int | None = None

    def __enter__(self):
        import fcntl
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ValueError(f"--out {str(self.path.parent)!r} is in use by {holder}; wait for it to finish or "
                             "choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} ({' '.join(sys.argv[:3])})".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


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


# --- the job manifest ------------------------------------------------------------------------

MANIFEST = "job.json"


def read_manifest(out) -> dict | None:
    """OUT/job.json, or None where there is none (folders made before manifests) or it is unreadable."""
    path = Path(out) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        warnings.warn(f"{path}: unreadable job manifest, ignored ({exc})", stacklevel=2)
        return None
    return data if isinstance(data, dict) else None


def manifest_says(manifest: dict | None, kind: str) -> bool:
    """Whether a job's manifest (its job.json, or None) records a command of ``kind`` (run, sweep)."""
    return kind in (manifest or {}).get("kinds", [])


# How job.json records a command line: this prefix, then the arguments (publish reads them back after it).
CLI = "python -m harness"


def write_manifest(out, *, kind: str, argv: list[str], lr_grids: dict[str, list[float]] | None = None,
                   lr_selection=None, margin: float | None = None) -> Path:
    """Add this command to OUT/job.json: which kinds of job wrote here, each exact command line, and
    the harness version, so that report and publish need not guess what a folder holds. ``lr_grids``
    (a sweep with a learning-rate grid): per sweep point, the rates its first seed is to run; the
    manifest keeps the union over every command, so the tables can tell a grid still running from one
    that is done (see manifest_grids). ``lr_selection`` (a tuning.Selection): the rule that chooses
    the rates and the seeds the study reports, the union over every command. ``margin``: the smallest
    difference in Spearman that counts (stats.verdict), where the command set one; the latest wins."""
    import shlex

    from harness import __version__
    old = read_manifest(out) or {}
    commands = old.get("commands") if isinstance(old.get("commands"), list) else []
    kinds = old.get("kinds") if isinstance(old.get("kinds"), list) else []
    manifest = {"kinds": sorted({*kinds, kind}), "created_at": old.get("created_at", now()),
                "commands": [*commands, {"kind": kind, "command": f"{CLI} {shlex.join(argv)}",
                                         "harness_version": __version__, "at": now()}]}
    grids = manifest_grids(out, old)
    for point, rates in (lr_grids or {}).items():
        grids[point] = sorted({*grids.get(point, []), *map(float, rates)})
    if grids:
        manifest["lr_grids"] = grids
    if lr_selection is not None:
        from harness import tuning
        old_selection = old.get("lr_selection")
        if isinstance(old_selection, dict):
            lr_selection = tuning.Selection.from_manifest(old).merged(lr_selection)
        manifest["lr_selection"] = lr_selection.to_manifest()
    elif "lr_selection" in old:
        manifest["lr_selection"] = old["lr_selection"]
    if margin is not None or "spearman_margin" in old:
        manifest["spearman_margin"] = margin if margin is not None else old["spearman_margin"]
    path = Path(out) / MANIFEST
    write_text_atomic(path, json.dumps(manifest, indent=2) + "\n")
    return path


def manifest_margin(out, manifest: dict | None = None) -> float:
    """The job's smallest difference of interest in Spearman (job.json's spearman_margin, set by --margin),
    else the documented default (stats.SPEARMAN_MARGIN); a malformed one is ignored with a warning."""
    import math

    from harness import stats
    manifest = read_manifest(out) if manifest is None else manifest
    value = (manifest or {}).get("spearman_margin")
    if value is None:
        return stats.SPEARMAN_MARGIN
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value < 1:
        return float(value)
    warnings.warn(f"{Path(out) / MANIFEST}: spearman_margin = {value!r} is not a number in [0, 1); the default "
                  f"{stats.SPEARMAN_MARGIN} is used", stacklevel=2)
    return stats.SPEARMAN_MARGIN


def manifest_grids(out, manifest: dict | None = None) -> dict[str, list[float]]:
    """The learning rates the sweeps in OUT were asked to run on each point's first seed (the manifest's
    lr_grids), or {} where no sweep with a grid recorded them (folders made before they were recorded).
    An entry that is not a list of positive numbers is left out, with a warning."""
    manifest = read_manifest(out) if manifest is None else manifest
    raw = (manifest or {}).get("lr_grids")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        warnings.warn(f"{Path(out) / MANIFEST}: lr_grids is not a table of point: rates; ignored", stacklevel=2)
        return {}
    good = {}
    for point, rates in raw.items():
        if isinstance(rates, list) and rates and all(
                isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0 for r in rates):
            good[str(point)] = sorted(float(r) for r in rates)
        else:
            warnings.warn(f"{Path(out) / MANIFEST}: lr_grids[{point!r}] = {rates!r} is not a list of rates; "
                          "ignored", stacklevel=2)
    return good
