"""Device choice, synchronisation and the memory APIs of each device type."""

from __future__ import annotations

from pathlib import Path

import torch


class DeviceError(ValueError):
    """A device that is unknown or not available here."""


def available() -> dict[str, bool]:
    return {"cpu": True, "cuda": torch.cuda.is_available(), "mps": _mps_available()}


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve(requested: str) -> str:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must exist."""
    have = available()
    if requested == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if have[d])
    if requested not in have:
        raise DeviceError(f"device = {requested!r}: unknown; allowed: auto, cpu, cuda, mps")
    if not have[requested]:
        raise DeviceError(f"device = {requested!r}: requested but not available on this machine "
                          f"(available: {', '.join(d for d, ok in have.items() if ok)})")
    return requested


def cpu_has_native_bf16() -> bool | None:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX); None where /proc/cpuinfo
    cannot tell (not Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_precision(device: str, precision: str) -> str | None:
    """Raise DeviceError for a precision this device cannot train in; return a warning (or None)
    for one it can only emulate. Called by the pre-flight, before any worker starts."""
    if precision == "fp16" and device != "cuda":
        raise DeviceError(f"precision = 'fp16': mixed fp16 training needs a CUDA GPU, and the device here is "
                          f"{device!r}; use bf16 or fp32")
    if precision == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"precision = 'bf16': this GPU ({torch.cuda.get_device_name(0)}) cannot compute in "
                          "bf16; use fp16 or fp32")
    if precision == "bf16" and device == "mps":
        raise DeviceError("precision = 'bf16': not supported by the harness on MPS; use fp32")
    if precision == "bf16" and device == "cpu" and cpu_has_native_bf16() is False:
        return ("precision = 'bf16': this CPU has neither AVX512-BF16 nor AMX, so bf16 matmuls are emulated "
                "and likely slower than fp32")
    return None


def synchronize(device: str) -> None:
    """Wait for queued kernels so that a clock read covers the work. note: a CPU-GPU sync point."""
    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def describe(device: str) -> dict:
    """The device's model and memory, as plain values."""
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        return {"device_type": "cuda", "device_name": props.name, "device_memory_bytes": props.total_memory}
    if device == "mps":
        return {"device_type": "mps", "device_name": "Apple MPS", "device_memory_bytes": None}
    return {"device_type": "cpu", "device_name": None, "device_memory_bytes": None}
