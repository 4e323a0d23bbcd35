"""Trackers around a measured region, in the shape of optimum-benchmark's.

Each tracker is a context manager that synchronises the device on entry and exit and fills a
plain dict whose keys carry their unit (``_s``, ``_bytes``, ``_kwh``, ``_kg``).
"""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import threading
import time

import psutil
import torch
from transformers import TrainerCallback

from harness import cpu_share, devices

SAMPLE_INTERVAL_S = 0.01


@contextlib.contextmanager
def track_time(device: str):
    """Wall time of the region in ``record["wall_s"]`` (device synchronised at both ends)."""
    record: dict = {}
    devices.synchronize(device)
    start = time.perf_counter()
    try:
        yield record
    finally:
        devices.synchronize(device)
        record["wall_s"] = time.perf_counter() - start


# --- what else used the CPUs ---------------------------------------------------------------------


@contextlib.contextmanager
def track_cpu_share():
    """What else used the CPUs while the region ran: filled on exit with ``cpu_share.cpu_share``'s
    figures (cores: own, other, steal), or left empty where the kernel's counters cannot be read (not
    Linux). Timings taken while other work used more than ``cpu_share.SHARED_CORES`` cores on average
    are not those of a quiet machine."""
    record: dict = {}
    before, own, start = cpu_share.read_proc_stat(), cpu_share.own_cpu_s(), time.perf_counter()
    try:
        yield record
    finally:
        wall_s, own_s = time.perf_counter() - start, cpu_share.own_cpu_s() - own
        share = cpu_share.cpu_share(before, cpu_share.read_proc_stat(), own_s=own_s, wall_s=wall_s,
                                    tick_s=1 / os.sysconf("SC_CLK_TCK"))
        record.update(share or {})


# --- memory ------------------------------------------------------------------------------------


def _proc_status_bytes(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024  # the kernel reports kB (KiB)
    except OSError:
        return None
    return None


def _reset_linux_peak_rss() -> bool:
    """Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so the peak covers this region only."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _Sampler:
    """Polls ``read()`` in a daemon thread and keeps the maximum of each value."""

    def __init__(self, read, interval_s: float = SAMPLE_INTERVAL_S):
        self._read, self._interval_s = read, interval_s
        self.peaks = list(read())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self._interval_s):
            self.peaks = [max(p, v) for p, v in zip(self.peaks, self._read(), strict=True)]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peaks = [max(p, v) for p, v in zip(self.peaks, self._read(), strict=True)]


@contextlib.contextmanager
def track_memory(device: str):
    """Peak memory of the region and the memory in use when it began, with the source named."""
    devices.synchronize(device)
    record: dict = {}
    if device == "cuda":
        with _track_cuda(record):
            yield record
    elif device == "mps":
        with _track_mps(record):
            yield record
    else:
        with _track_cpu(record):
            yield record
    if record.get("peak_memory_bytes") is not None and record.get("baseline_memory_bytes") is not None:
        record["peak_increment_bytes"] = record["peak_memory_bytes"] - record["baseline_memory_bytes"]


@contextlib.contextmanager
def _track_cuda(record: dict):
    torch.cuda.reset_peak_memory_stats()
    record["baseline_memory_bytes"] = torch.cuda.memory_allocated()
    record["baseline_reserved_bytes"] = torch.cuda.memory_reserved()
    record["source"] = "cuda: torch.cuda.max_memory_allocated/max_memory_reserved, reset at region start"
    try:
        yield
    finally:
        torch.cuda.synchronize()
        record["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
        record["peak_reserved_bytes"] = torch.cuda.max_memory_reserved()


@contextlib.contextmanager
def _track_mps(record: dict):
    # MPS has no peak API: sample the allocator every SAMPLE_INTERVAL_S.
    def read():
        return torch.mps.current_allocated_memory(), torch.mps.driver_allocated_memory()

    record["baseline_memory_bytes"], record["baseline_driver_bytes"] = read()
    record["source"] = (f"mps: torch.mps.current_allocated_memory/driver_allocated_memory "
                        f"sampled every {SAMPLE_INTERVAL_S * 1000:.0f} ms (no peak API)")
    sampler = _Sampler(read)
    try:
        with sampler:
            yield
    finally:
        record["peak_memory_bytes"], record["peak_driver_bytes"] = sampler.peaks


@contextlib.contextmanager
def _track_cpu(record: dict):
    process = psutil.Process()
    record["baseline_memory_bytes"] = process.memory_info().rss
    if _reset_linux_peak_rss() and _proc_status_bytes("VmHWM") is not None:
        record["source"] = "cpu: process peak RSS (Linux VmHWM, reset at region start)"
        try:
            yield
        finally:
            record["peak_memory_bytes"] = _proc_status_bytes("VmHWM")
        return
    record["source"] = f"cpu: process RSS sampled every {SAMPLE_INTERVAL_S * 1000:.0f} ms (psutil)"
    sampler = _Sampler(lambda: (process.memory_info().rss,))
    try:
        with sampler:
            yield
    finally:
        record["peak_memory_bytes"] = sampler.peaks[0]


def process_peak_rss_bytes() -> int:
    """The whole process's peak RSS since it started (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if os.uname().sysname == "Darwin" else peak * 1024


# --- energy ------------------------------------------------------------------------------------

# codecarbon's CPU modes, and whether each is a measurement or an estimate.
_CPU_METHODS = {
    "intel_rapl": ("RAPL counters", False),
    "intel_power_gadget": ("Intel Power Gadget counters", False),
    "windows_emi": ("Windows EMI counters", False),
    "apple_powermetrics": ("powermetrics", False),
    "cpu_load": ("estimate: TDP x CPU load", True),
    "constant": ("estimate: constant share of TDP", True),
}


@contextlib.contextmanager
def track_energy(*, enabled: bool, country_iso_code: str, device: str):
    """Energy (kWh, split into CPU, GPU and RAM) and CO2eq through codecarbon's offline tracker.

    If no energy can be measured the figures are None with ``energy_unavailable_reason``; never 0.
    """
    record: dict = {"energy_kwh": None, "cpu_kwh": None, "gpu_kwh": None, "ram_kwh": None, "co2_kg": None,
                    "energy_method": None, "energy_is_estimate": None, "country_iso_code": country_iso_code}
    if not enabled:
        record["energy_unavailable_reason"] = "disabled by the spec (measure_energy = false)"
        yield record
        return
    tracker = None
    try:
        from codecarbon import OfflineEmissionsTracker
        tracker = OfflineEmissionsTracker(country_iso_code=country_iso_code, save_to_file=False,
                                          log_level="error", measure_power_secs=5, tracking_mode="process")
        tracker.start()
    except Exception as exc:  # noqa: BLE001 - any failure here must not stop the run
        record["energy_unavailable_reason"] = f"codecarbon could not start: {type(exc).__name__}: {exc}"
        tracker = None
    devices.synchronize(device)
    try:
        yield record
    finally:
        devices.synchronize(device)
        if tracker is not None:
            _finish_energy(tracker, record)


def _finish_energy(tracker, record: dict) -> None:
    try:
        tracker.stop()
        data = tracker.final_emissions_data
    except Exception as exc:  # noqa: BLE001
        record["energy_unavailable_reason"] = f"codecarbon failed at stop: {type(exc).__name__}: {exc}"
        return
    record.update(energy_kwh=data.energy_consumed, cpu_kwh=data.cpu_energy, gpu_kwh=data.gpu_energy,
                  ram_kwh=data.ram_energy, co2_kg=data.emissions)
    record.update(describe_energy_method(tracker))


def describe_energy_method(tracker) -> dict:
    """Which hardware codecarbon read and how: counters (measured) or a TDP/size model (estimate)."""
    parts, estimate = [], False
    for hw in getattr(tracker, "_hardware", []):
        kind = type(hw).__name__
        if kind == "CPU":
            label, est = _CPU_METHODS.get(getattr(hw, "_mode", ""), (f"mode {getattr(hw, '_mode', '?')}", True))
            parts.append(f"cpu={label}")
            estimate |= est
        elif kind == "GPU":
            parts.append("gpu=NVML energy counters")
        elif kind == "RAM":
            parts.append("ram=estimate from RAM size")
            estimate = True
        else:
            parts.append(f"{kind.lower()}={hw!r}")
    import codecarbon
    return {"energy_method": f"codecarbon {codecarbon.__version__} ({'; '.join(parts)}; "
                             f"{tracker._tracking_mode} mode)",
            "energy_is_estimate": estimate}


# --- per-step timing through the trainer's own hooks ------------------------------------------


class StepTimer(TrainerCallback):
    """Times every optimizer step from the trainer's own callbacks.

    ``on_step_begin`` and ``on_step_end`` bracket forward, backward and the optimizer update.
    On CUDA/MPS each end is a sync point, so a step's time covers its kernels.
    """

    def __init__(self, device: str):
        self.device = device
        self.step_s: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        devices.synchronize(self.device)
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        devices.synchronize(self.device)
        self.step_s.append(time.perf_counter() - self._start)


def summarize_steps(step_s: list[float], *, burn_in_steps: int) -> dict:
    """Median and p90 of step time, excluding the first ``burn_in_steps`` (warm-up) steps."""
    timed = step_s[burn_in_steps:] if len(step_s) > burn_in_steps else []
    if not timed:
        return {"steps": len(step_s), "timed_steps": 0, "step_s_median": None, "step_s_p90": None,
                "step_s_sum": sum(step_s)}
    ordered = sorted(timed)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return {"steps": len(step_s), "timed_steps": len(timed), "step_s_median": statistics.median(timed),
            "step_s_p90": p90, "step_s_sum": sum(step_s)}
