"""Device choice, synchronisation and the memory APIs of each device type."""

from __future__ import annotations

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
