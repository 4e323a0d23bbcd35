"""Environment metadata for every result: a few small ``collect_*`` functions, one flat dict."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

from harness.hardware import cpu_signature

PACKAGES = ("torch", "transformers", "peft", "sentence-transformers", "codecarbon", "numpy",
            "scikit-learn", "scipy", "accelerate", "datasets", "tokenizers", "huggingface-hub")


def collect_environment(device: str) -> dict:
    env: dict = {}
    for collect in (collect_platform, collect_packages, collect_cpu, collect_git):
        env.update(collect())
    env.update(collect_torch(device))
    return env


def collect_platform() -> dict:
    return {"os": platform.platform(), "python": platform.python_version(), "hostname": socket.gethostname()}


def collect_packages() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[f"{name}_version"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[f"{name}_version"] = None
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect_cpu() -> dict:
    import torch  # here, not at the top: the reports read machine_label without loading torch
    return {"cpu_model": cpu_model(), **cpu_signature(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "loadavg_1m_at_start": load_average()}


def load_average() -> float | None:
    """The 1-minute load average: timings taken while it exceeds the core count were shared."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def collect_torch(device: str) -> dict:
    import torch

    from harness import devices
    out = {"torch_build": torch.__version__, "torch_cuda": torch.version.cuda, "device": device}
    out.update(devices.describe(device))
    return out


def collect_git() -> dict:
    """The harness's own commit and whether its tree had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    out = {"git_commit": commit, "git_dirty": dirty}
    # A tree copied to another machine (a GPU, say) may carry a stale .git or none: whoever copied
    # it can name the commit the tree was taken from; it is recorded beside git's own view.
    if os.environ.get("HARNESS_SOURCE_COMMIT"):
        out["source_commit"] = os.environ["HARNESS_SOURCE_COMMIT"]
    return out
