"""Start one worker subprocess per spec, one at a time, and file each record in ``OUT/runs``.

As in pyperf, the parent never measures anything itself: it reads the worker's serialised record
and its exit status. A run whose worker crashed, was killed or timed out is still recorded, as
``failed`` with the reason. Runs share no process, so peak memory belongs to one run only, and
they never run concurrently, so they do not spoil each other's timings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import results
from harness.results import new_record, now
from harness.spec import RunSpec


class LocalExecutor:
    """The default: one worker subprocess at a time on this machine."""

    name = "local"

    def run(self, specs: list[RunSpec], on_record, log=print, *, cache_dir: Path | None = None) -> None:
        for i, spec in enumerate(specs, start=1):
            log(f"[{i}/{len(specs)} new] {spec.label}: running in a fresh worker process ({spec.run_id})")
            on_record(spec, run_in_worker(spec, cache_dir=cache_dir))


def run_all(specs: list[RunSpec], *, out: Path, force: bool = False, retry_failed: bool = True,
            log=print, executor=None, fingerprints: dict[tuple, str] | None = None) -> list[dict]:
    """Run each spec unless a successful record with the same spec hash exists (resume) and, where
    ``fingerprints`` (spec.data_key -> data fingerprint) are given, was made on the same data.

    The executor (local by default, or Ray) runs the pending specs; every record it returns is
    filed here, by the driver, so results are identical in schema whichever executor ran them.
    """
    executor = executor or LocalExecutor()
    records: dict[str, dict] = {}
    pending = []
    for i, spec in enumerate(specs, start=1):
        existing = results.find_existing(out, spec.run_id)
        keep = existing is not None and not force and (existing["status"] == "success" or not retry_failed)
        stale = keep and fingerprints is not None and existing["status"] == "success" and \
            (existing.get("data") or {}).get("fingerprint") != fingerprints.get(spec.data_key)
        if stale:
            log(f"[{i}/{len(specs)}] {spec.label}: the existing result {spec.run_id}.json was made on other data "
                f"({results.data_version(existing)}); running it again (the old file is kept in runs/superseded/)")
            keep = False
        if keep:
            log(f"[{i}/{len(specs)}] {spec.label}: kept existing {existing['status']} result "
                f"{spec.run_id}.json (same spec hash; --force reruns it)")
            records[spec.run_id] = existing
        else:
            pending.append(spec)
    started = {"n": 0, "t": time.perf_counter()}

    def on_record(spec: RunSpec, record: dict) -> None:
        started["n"] += 1
        store(record, out=out, log=log)
        status = record["status"] if record["status"] == "success" else \
            f"FAILED ({record['error']['reason']}: {record['error']['message'].splitlines()[0][:200]})"
        log(f"[{started['n']}/{len(pending)} new] {spec.label}: {status} ({spec.run_id}, "
            f"{time.perf_counter() - started['t']:.1f} s since the last)")
        started["t"] = time.perf_counter()
        records[spec.run_id] = record

    if pending:
        log(f"running {len(pending)} run(s) with the {executor.name} executor, one per device at a time")
        executor.run(pending, on_record, log, cache_dir=out / ".cache")
    return [records[s.run_id] for s in specs if s.run_id in records]


def check_out(out: Path):
    """Pre-run checks of the output folder: writable, then locked for this process (a context manager)."""
    results.check_writable(out)
    return results.OutputLock(out)


def store(record: dict, *, out: Path, log=print) -> Path:
    """File a record; an older record for the same run is moved aside, never destroyed.

    If the record cannot be written (a full disk, lost permissions), it is saved to the temporary
    folder instead when that works, and ``StoreError`` says where: the caller stops there.
    """
    path = results.runs_dir(out) / f"{record['run_id']}.json"
    try:
        if path.exists():
            aside = _aside_name(results.runs_dir(out) / "superseded", record["run_id"])
            aside.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, aside)
            log(f"    previous result moved to {aside}")
        results.write_json_atomic(path, record)
    except OSError as exc:
        raise results.StoreError(f"cannot file the result of {record['run_id']} in {results.runs_dir(out)} "
                                 f"({exc.strerror or exc}); {_rescue(record)}; later runs were not started") from None
    return path


def _aside_name(folder: Path, run_id: str) -> Path:
    """A name under runs/superseded/ that no earlier copy has (two copies within one second included)."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for n in range(10_000):
        candidate = folder / f"{run_id}.{stamp}.{n}.json"
        if not candidate.exists():
            return candidate
    raise FileExistsError(f"{folder}: too many superseded copies of {run_id} this second")


def _rescue(record: dict) -> str:
    """Keep a finished record that the output folder refused: in the temporary folder if possible."""
    rescue = Path(tempfile.gettempdir()) / f"harness-unfiled-{record['run_id']}-{os.getpid()}.json"
    try:
        results.write_json_atomic(rescue, record, overwrite=True)
    except OSError as exc:
        return f"it could not be saved elsewhere either ({exc.strerror or exc})"
    return f"the record was saved to {rescue}"


def repo_env(**extra: str) -> dict:
    """This environment with the harness's checkout first on PYTHONPATH (a PYTHONPATH already set is
    kept after it), for the subprocesses that must import this very harness: workers, bench rounds."""
    package_root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_in_worker(spec: RunSpec, *, cache_dir: Path | None = None) -> dict:
    """Run ``python -m harness.worker`` on the spec and return its record (or a failure record).
    ``cache_dir``: the job's cache folder (inside OUT), for what every run of a job would otherwise
    compute again (the base model's reference embeddings, forgetting.py)."""
    started_at = now()
    with tempfile.TemporaryDirectory(prefix="harness-worker-") as tmp:
        spec_path, record_path = Path(tmp) / "spec.json", Path(tmp) / "record.json"
        results.write_json_atomic(spec_path, spec.to_dict())
        cmd = [sys.executable, "-m", "harness.worker", str(spec_path), str(record_path)]
        env = repo_env()
        env.pop("HARNESS_JOB_CACHE", None)
        if cache_dir is not None:
            env["HARNESS_JOB_CACHE"] = str(cache_dir)
        proc = subprocess.Popen(cmd, env=env)  # an argument list, never a shell
        try:
            returncode = proc.wait(timeout=spec.timeout_s or None)
        except subprocess.TimeoutExpired:
            _stop(proc)
            return _failure(spec, "timeout", f"worker exceeded timeout_s = {spec.timeout_s}", started_at=started_at)
        except KeyboardInterrupt:
            _stop(proc)
            raise
        if record_path.exists():
            try:
                return results.load_record(record_path)
            except results.ResultError as exc:
                return _failure(spec, "crash", f"worker wrote an unreadable record: {exc}", started_at=started_at)
        if returncode < 0:
            name = signal.Signals(-returncode).name
            return _failure(spec, "crash", f"worker killed by signal {name}", started_at=started_at,
                            signal_name=name)
        return _failure(spec, "crash", f"worker exited with status {returncode} and wrote no record",
                        started_at=started_at)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _failure(spec: RunSpec, reason: str, message: str, *, started_at: str | None = None, **extra) -> dict:
    record = new_record(spec)
    record.update(status="failed", finished_at=now(), started_at=started_at or record["started_at"],
                  error={"reason": reason, "type": None, "message": message, **extra})
    return record
