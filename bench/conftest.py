"""Shared setup of the benchmark suite.

HARNESS_BENCH_MODEL=tiny (or --bench-model=tiny) switches to the tiny random BERT for a fast
smoke run; the default is all-MiniLM-L6-v2 with ADR-001's settings. HARNESS_BENCH_RANKS picks the
LoRA ranks (default 8,64).
"""

from __future__ import annotations

import copy
import os
import platform
from importlib import metadata

import psutil
import pytest
import torch

from harness import data, devices, environment, models
from harness.spec import LoraSpec, RunSpec


def pytest_addoption(parser):
    parser.addoption("--bench-model", default=os.environ.get("HARNESS_BENCH_MODEL", "minilm"),
                     choices=["minilm", "tiny"], help="minilm (default) or tiny for a smoke run")


def pytest_report_header(config):
    """The load average at the start, with a warning when the machine is busy (timings then shared)."""
    load, cores = environment.load_average(), os.cpu_count() or 1
    line = f"load average (1 min) at start: {load} on {cores} cores; torch threads: {torch.get_num_threads()}"
    if load is not None and load > cores:
        line += "  <-- BUSY: other processes share the cores; step times and ratios will be noisy"
    return [line]


# The matmul peak behind every MFU figure: measured once per device and precision in a session (the
# best of PEAK_REPEATS measurements), so MFU figures of one run share one denominator.
PEAK_REPEATS = 5
_PEAKS: dict[str, float] = {}


def session_peak(device: str, precision: str = "fp32") -> float:
    from harness import flops
    key = f"{device}/{precision}"
    if key not in _PEAKS:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        _PEAKS[key] = max(flops.matmul_peak_flops(device=device, dtype=dtype) for _ in range(PEAK_REPEATS))
    return _PEAKS[key]


def pytest_benchmark_update_machine_info(config, machine_info):
    # Only what identifies the machine: pytest-benchmark compares machine_info between saved runs and
    # warns on any difference, so per-run values (load average, the session's matmul peak) go into
    # each benchmark's extra_info instead.
    machine_info["cpu_model"] = environment.cpu_model()
    machine_info["cpu_count"] = os.cpu_count()
    machine_info["memory_bytes"] = psutil.virtual_memory().total
    machine_info["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        machine_info["gpu_model"], machine_info["gpu_memory_bytes"] = props.name, props.total_memory
    else:
        machine_info["gpu_model"], machine_info["gpu_memory_bytes"] = None, None
    for name in ("torch", "transformers", "peft", "sentence-transformers"):
        machine_info[f"{name}_version"] = metadata.version(name)
    machine_info["platform"] = platform.platform()


RANKS = [int(r) for r in os.environ.get("HARNESS_BENCH_RANKS", "8,64").split(",") if r.strip()]
ARMS = ["standard", *[f"lora-r{r}" for r in RANKS]]


class Bench:
    """What every benchmark needs: the model, ADR-001 settings, realistic dating batches."""

    def __init__(self, which: str, cache_dir):
        self.tiny = which == "tiny"
        self.device = devices.resolve("auto")
        name = models.TINY_MODEL if self.tiny else models.DEFAULT_MODEL
        self.base = models.load_model(models.resolve_model_path(name, cache_dir=cache_dir), device=self.device)
        self.splits = data.load_splits("dating", seed=0)
        self.batch_size = 16
        self.burn_in_steps = 2 if self.tiny else 3
        self.steps_per_round = 4 if self.tiny else 10
        self.rounds = 2 if self.tiny else 5

    def spec(self, arm: str, **changes) -> RunSpec:
        fields = dict(arm="standard", learning_rate=2e-5, batch_size=self.batch_size, warmup_steps=100,
                      max_steps=self.burn_in_steps + self.steps_per_round, burn_in_steps=self.burn_in_steps,
                      device=self.device)
        if arm.startswith("lora"):
            r = int(arm.split("-r")[1])
            fields.update(arm="lora", learning_rate=2e-4, lora=LoraSpec(r=r, alpha=2.0 * r))
        fields.update(changes)
        return RunSpec(**fields)

    def model(self, arm: str):
        """A fresh copy of the base model, with a LoRA adapter for a lora arm."""
        model = copy.deepcopy(self.base)
        spec = self.spec(arm)
        if spec.lora is not None:
            models.attach_lora(model, spec.lora)
        return model, spec

    def train_pairs(self, spec: RunSpec):
        return self.splits.train.head(spec.max_steps * spec.batch_size)

    def common_info(self, model) -> dict:
        params = models.count_params(model)
        return {"device": self.device, "dtype": str(next(model.parameters()).dtype),
                "threads": torch.get_num_threads(), "loadavg_1m": environment.load_average(),
                "model": "tiny-random-bert" if self.tiny else "all-MiniLM-L6-v2",
                **params}


@pytest.fixture(scope="session")
def bench(request, tmp_path_factory) -> Bench:
    return Bench(request.config.getoption("--bench-model"), tmp_path_factory.mktemp("bench-cache"))


def timed_pedantic(benchmark, target, *, setup=None, rounds: int, warmup_rounds: int = 0):
    """benchmark.pedantic, also keeping our own clock of each call (warm-up rounds dropped), so the
    derived figures exist with --benchmark-disable too. Returns (result, median seconds)."""
    import statistics
    import time
    times: list[float] = []

    def clocked(*args, **kwargs):
        start = time.perf_counter()
        out = target(*args, **kwargs)
        times.append(time.perf_counter() - start)
        return out

    result = benchmark.pedantic(clocked, setup=setup, rounds=rounds, iterations=1, warmup_rounds=warmup_rounds)
    return result, statistics.median(times[warmup_rounds:] or times)
