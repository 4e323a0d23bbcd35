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

from harness import files, results
from harness.results import new_record, now
from harness.spec import RunSpec

WORKER_INTERRUPTED = 130  # harness/worker.py's EXIT_INTERRUPTED: the worker stopped on SIGINT or SIGTERM


class LocalExecutor:
    """The default: one worker subprocess at a time on this machine."""

    name = "local"

    def run(self, specs: list[RunSpec], on_record, log=print, *, cache_dir: Path | None = None,
            models_dir: Path | None = None, pause_file: Path | None = None) -> None:
        for i, spec in enumerate(specs, start=1):
            if pause_file is not None:
                wait_while_paused(pause_file, log)
            log(f"[{i}/{len(specs)} new] {spec.label}: running in a fresh worker process ({spec.run_id})")
            on_record(spec, run_in_worker(spec, cache_dir=cache_dir, models_dir=models_dir))


PAUSE = "PAUSE"  # OUT/PAUSE: no new run starts while it exists (the one in progress finishes)
PAUSE_POLL_S = 2.0


def wait_while_paused(pause_file: Path, log=print) -> None:
    """Between runs, wait as long as ``pause_file`` exists: a long study on a shared machine can be held
    at a run boundary (``touch OUT/PAUSE``) while something else needs the cores, and goes on when the
    file is removed, so that no run's timings share the machine and no run is lost."""
    if not pause_file.exists():
        return
    log(f"paused: {pause_file} exists; the next run starts when it is removed")
    waited = time.perf_counter()
    while pause_file.exists():
        time.sleep(PAUSE_POLL_S)
    log(f"resumed after {time.perf_counter() - waited:.0f} s paused")


def run_all(specs: list[RunSpec], *, out: Path, force: bool = False, retry_failed: bool = True,
            log=print, executor=None, fingerprints: dict[tuple, str] | None = None,
            save_models: bool = False) -> list[dict]:
    """Run each spec unless a successful record with the same spec hash exists (resume) and, where
    ``fingerprints`` (spec.data_key -> data fingerprint) are given, was made on the same data.

    The executor (local by default, or Ray) runs the pending specs; every record it returns is
    filed here, by the driver, so results are identical in schema whichever executor ran them.
    ``save_models``: each successful trained run keeps its artifact in OUT/models/<run_id>/ (an older
    one of the same run is moved to OUT/models/superseded/, like its record).
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
            if save_models and spec.method.trains and existing["status"] == "success" and \
                    not (out / MODELS / spec.run_id).is_dir():
                log(f"    note: no saved model for {spec.run_id} (it ran without --save-models; --force reruns it)")
            records[spec.run_id] = existing
        else:
            pending.append(spec)
    started = {"n": 0, "t": time.perf_counter()}

    def on_record(spec: RunSpec, record: dict) -> None:
        started["n"] += 1
        store(record, out=out, log=log)
        status = f"success{_figures(record)}" if record["status"] == "success" else \
            f"FAILED ({record['error']['reason']}: {record['error']['message'].splitlines()[0][:200]})"
        log(f"[{started['n']}/{len(pending)} new] {spec.label}: {status} ({spec.run_id}, "
            f"{time.perf_counter() - started['t']:.1f} s since the last)")
        started["t"] = time.perf_counter()
        records[spec.run_id] = record

    if pending:
        log(f"running {len(pending)} run(s) with the {executor.name} executor, one per device at a time")
        executor.run(pending, on_record, log, cache_dir=out / ".cache",
                     models_dir=out / MODELS if save_models else None, pause_file=out / PAUSE)
    return [records[s.run_id] for s in specs if s.run_id in records]


def _figures(record: dict) -> str:
    """" (test Spearman 0.256, trained 391 s)": the run's own figures for its console line."""
    quality, timings = record.get("quality") or {}, record.get("timings") or {}
    parts = []
    if isinstance(quality.get("spearman"), (int, float)):
        parts.append(f"test Spearman {quality['spearman']:.3f}")
    if isinstance(timings.get("train_wall_s"), (int, float)):
        parts.append(f"trained {timings['train_wall_s']:.0f} s")
    return f" ({', '.join(parts)})" if parts else ""


def check_out(out: Path):
    """Pre-run checks of the output folder: writable, then locked for this process (a context manager)."""
    results.check_writable(out)
    return files.OutputLock(out)


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
        files.write_json_atomic(path, record)
    except OSError as exc:
        raise results.StoreError(f"cannot file the result of {record['run_id']} in {results.runs_dir(out)} "
                                 f"({exc.strerror or exc}); {_rescue(record)}; later runs were not started") from None
    return path


def _aside_name(folder: Path, run_id: str, suffix: str = ".json") -> Path:
    """A name under a superseded/ folder that no earlier copy has (two copies within one second included)."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for n in range(10_000):
        candidate = folder / f"{run_id}.{stamp}.{n}{suffix}"
        if not candidate.exists():
            return candidate
    raise FileExistsError(f"{folder}: too many superseded copies of {run_id} this second")


def _rescue(record: dict) -> str:
    """Keep a finished record that the output folder refused: in the temporary folder if possible."""
    rescue = Path(tempfile.gettempdir()) / f"harness-unfiled-{record['run_id']}-{os.getpid()}.json"
    try:
        files.write_json_atomic(rescue, record, overwrite=True)
    except OSError as exc:
        return f"it could not be saved elsewhere either ({exc.strerror or exc})"
    return f"the record was saved to {rescue}"


def repo_env(**extra: str) -> dict:
    """This environment with the harness's checkout first on PYTHONPATH (a PYTHONPATH already set is
    kept after it), for the subprocesses that must import this very harness: workers, bench rounds."""
    package_root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_in_worker(spec: RunSpec, *, cache_dir: Path | None = None, models_dir: Path | None = None) -> dict:
    """Run ``python -m harness.worker`` on the spec and return its record (or a failure record).
    ``cache_dir``: the job's cache folder (inside OUT), for what every run of a job would otherwise
    compute again (the base model's reference embeddings, forgetting.py). ``models_dir``: where a
    successful trained run's artifact is kept, as ``<run_id>/`` (the worker saves it into a folder
    beside it, moved into place only once the run has succeeded)."""
    if models_dir is None or not spec.method.trains:
        return _run_worker(spec, cache_dir=cache_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".incoming-{spec.run_id}-", dir=models_dir) as incoming:
        artifact = Path(incoming) / "artifact"
        record = _run_worker(spec, cache_dir=cache_dir, artifact=artifact)
        if record["status"] == "success" and artifact.is_dir():
            keep_model(artifact, models_dir, spec.run_id)
        return record


MODELS = "models"  # OUT/models/<run_id>/: the kept artifacts (--save-models)


def keep_model(folder: Path, models_dir: Path, run_id: str) -> Path:
    """Move a run's artifact to models_dir/run_id; an older one is moved to models_dir/superseded/."""
    dest = models_dir / run_id
    if dest.exists():
        aside = _aside_name(models_dir / "superseded", run_id, suffix="")
        aside.parent.mkdir(parents=True, exist_ok=True)
        os.replace(dest, aside)
    os.replace(folder, dest)
    return dest


def _run_worker(spec: RunSpec, *, cache_dir: Path | None = None, artifact: Path | None = None) -> dict:
    started_at = now()
    with tempfile.TemporaryDirectory(prefix="harness-worker-") as tmp:
        spec_path, record_path = Path(tmp) / "spec.json", Path(tmp) / "record.json"
        files.write_json_atomic(spec_path, spec.to_dict())
        cmd = [sys.executable, "-m", "harness.worker", str(spec_path), str(record_path),
               *([str(artifact)] if artifact is not None else [])]
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
        if returncode == WORKER_INTERRUPTED and not record_path.exists():
            # Ctrl-C or SIGTERM reached the worker (a terminal signals the whole group; `kill` may signal the
            # worker alone): the job stops as on Ctrl-C, finished results kept, rather than filing a "crash"
            # and starting the next run, whether or not this process has seen the signal yet.
            raise KeyboardInterrupt
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
    """SIGTERM to the worker (it unwinds and exits), then SIGKILL after 10 s, or at once on a second
    Ctrl-C: a user who presses it again wants the command gone, not a wait."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        proc.kill()
        proc.wait()


def _failure(spec: RunSpec, reason: str, message: str, *, started_at: str | None = None, **extra) -> dict:
    record = new_record(spec)
    record.update(status="failed", finished_at=now(), started_at=started_at or record["started_at"],
                  error={"reason": reason, "type": None, "message": message, **extra})
    return record
