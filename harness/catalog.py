"""Job folders as every reader sees them: ``results/<hardware id>/<dataset>/<job>/`` (publish, the
site, compare, sizes), the hardware id a record's environment gives, and one folder read once:
the runs it reports on (each variant at its chosen rate, sweep.reported) and what it leaves out.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from harness import jobfile, results, sweep
from harness.files import slug


def hardware_id(env: dict) -> str:
    """e.g. ``cpu-amd-epyc-f25m1-2c`` or ``cuda-nvidia-h100-80gb-hbm3-80gb``. A CPU's family and model
    (hardware.cpu_signature) follow its name, because one name can stand for several CPUs; a
    record made before the harness kept them gives the name alone (``cpu-amd-epyc-2c``)."""
    if env.get("device_type") == "cuda":
        gb = round((env.get("device_memory_bytes") or 0) / 2**30)
        return slug(f"cuda-{slug(env.get('device_name') or 'gpu')}-{gb}gb")
    if env.get("device_type") == "mps":
        return f"mps-{slug(env.get('cpu_model') or 'apple')}"
    tag = "".join(f"{letter}{env[key]}" for letter, key in (("f", "cpu_family"), ("m", "cpu_model_number"))
                  if env.get(key) not in (None, ""))
    name = slug(env.get("cpu_model") or "unknown")
    return slug(f"cpu-{name}-{slug(tag) + '-' if tag else ''}{env.get('cpu_count')}c")


def safe_destination(root: Path, *parts: str, what: str) -> Path:
    """root/part/... for slugged, non-empty parts, refused unless it resolves inside root."""
    if any(not p or p in (".", "..") for p in parts):
        raise ValueError(f"{what}: an empty name in the destination {'/'.join(parts)!r} (job, dataset or hardware "
                         "id); give a job name with letters or digits")
    dest = Path(root).joinpath(*parts)
    if not dest.resolve().is_relative_to(Path(root).resolve()):
        raise ValueError(f"{what}: destination {dest} is outside the results root {root}")
    return dest


IN_PROGRESS = "IN-PROGRESS.md"  # in a job folder: a study still running; its run files are kept, not published


def job_folders(results_root: Path) -> list[Path]:
    return sorted(p.parent for p in results_root.glob("*/*/*/runs") if p.is_dir()
                  and not (p.parent / IN_PROGRESS).is_file())


def studies_in_progress(results_root: Path) -> list[tuple[Path, int]]:
    """Job folders marked IN-PROGRESS.md, with how many run files they hold so far."""
    return sorted((p.parent, len(list(p.glob("*.json")))) for p in results_root.glob("*/*/*/runs")
                  if p.is_dir() and (p.parent / IN_PROGRESS).is_file())


def published_records(folder: Path, manifest: jobfile.Manifest = jobfile.NOT_GIVEN) -> list[dict]:
    """The runs a published job reports on, the same for the index, the ADR page, the site and
    compare (sweep.reported): its successful runs and, in a sweep, each point at its chosen learning
    rate only; a run file that cannot be read is skipped here (report names it).
    ``manifest``: the folder's job.json, where the caller has read it already."""
    return read_job(folder, manifest).records


def read_job(folder: Path, manifest: jobfile.Manifest = jobfile.NOT_GIVEN, *, quiet: bool = True) -> Job:
    """One job folder as publish, compare, sizes and the site read it: the runs it reports on
    (sweep.reported), every run file read (failed runs too), and how many successful runs at a rate
    not chosen it leaves out. ``quiet``: a run file that cannot be read is skipped without its
    warning (report names it)."""
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        loaded = results.load_runs(folder)
    succeeded = [r for r in loaded if r["status"] == "success"]
    manifest = jobfile.resolved(folder, manifest)
    records = sweep.reported(loaded, folder, manifest=manifest)  # a diverged run makes its rate unstable
    return Job(folder, records, manifest, len(succeeded) - len(records), loaded)


class Job(NamedTuple):
    """One published job as publish reads it, once: its folder, the runs it reports on, its job.json,
    the successful runs it leaves out (tuning runs at rates that were not chosen) and every run file
    read (``loaded``: the failed runs too, which the recommendation's stability rule needs)."""
    folder: Path
    records: list[dict]
    manifest: dict | None
    left_out: int = 0
    loaded: Sequence[dict] = ()


def published_jobs(results_root: Path) -> list[Job]:
    """Every job under ``results_root`` with runs to report, each folder read once for the index, the
    ADR page and the site."""
    jobs = []
    for folder in job_folders(results_root):
        job = read_job(folder)
        if job.records:
            jobs.append(job)
    return jobs
