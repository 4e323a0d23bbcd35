"""Shared setup of the benchmark suite.

HARNESS_BENCH_MODEL=tiny (or --bench-model=tiny) switches to the tiny random BERT for a fast
smoke run; the default is all-MiniLM-L6-v2 with ADR-001's settings.

What the training benchmarks compare (each a variant of the method registry, named like the start
of its run ids, methods.run_id_prefix, with the precision when not fp32: ``lora-r8-bf16``):
- HARNESS_BENCH_METHODS: registry entries (default standard,lora,dora,ia3);
- HARNESS_BENCH_RANKS: the ranks of LoRA (default 8,64); other ranked methods take the first;
- HARNESS_BENCH_ROUNDS: rounds per benchmark (default 5; 2 with the tiny model);
- HARNESS_BENCH_RATIO_ROUNDS: rounds of the faithfulness ratios (default HARNESS_BENCH_ROUNDS);
- HARNESS_BENCH_PROCESSES: fresh processes that share test_train_step's rounds (default: one per round);
- HARNESS_BENCH_THREADS: pin torch's thread count (default: torch's own choice; recorded);
- HARNESS_BENCH_PRECISIONS: default fp32,bf16 where this machine trains bf16 natively (a GPU with
  bf16, a CPU with AVX512-BF16 or AMX), else fp32. test_train_step runs every precision; the
  forward/backward and MFU benchmarks run fp32.
Every spec is built by harness.spec.build_specs, the function behind the CLI.
"""

from __future__ import annotations

import copy
import os
import platform
from importlib import metadata

import psutil
import pytest
import torch

from harness import data, devices, environment, methods, models
from harness.spec import RunSpec, build_specs


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
    machine_info.update(environment.cpu_signature())  # one CPU name can stand for CPUs of different speed
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


if os.environ.get("HARNESS_BENCH_THREADS"):  # pin torch's thread count (recorded in machine_info)
    torch.set_num_threads(int(os.environ["HARNESS_BENCH_THREADS"]))


def _list(name: str, default: str) -> list[str]:
    return [v.strip() for v in os.environ.get(name, default).split(",") if v.strip()]


def _native_bf16() -> bool:
    device = devices.resolve("auto")
    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    return device == "cpu" and bool(devices.cpu_has_native_bf16())


RANKS = [int(r) for r in _list("HARNESS_BENCH_RANKS", "8,64")]
METHODS = [methods.ALIASES.get(m, m) for m in _list("HARNESS_BENCH_METHODS", "standard,lora,dora,ia3")]
PRECISIONS = _list("HARNESS_BENCH_PRECISIONS", "fp32,bf16" if _native_bf16() else "fp32")


def variant_fields(method: str, rank: int | None, precision: str) -> dict:
    return {"arm": method, "precision": precision, **({"lora": {"r": rank}} if rank is not None else {})}


def variants(precisions=("fp32",)) -> list[dict]:
    """The benchmarked variants: each method at its ranks (LoRA at every HARNESS_BENCH_RANKS, other
    ranked methods at the first), in each precision."""
    out = []
    for precision in precisions:
        for name in METHODS:
            method = methods.get(name)
            ranks = (RANKS if name == "lora" else RANKS[:1]) if method.adapter and method.ranked else [None]
            out += [variant_fields(name, r, precision) for r in ranks]
    return out


def variant_id(fields: dict) -> str:
    precision = fields.get("precision", "fp32")
    return methods.run_id_prefix(fields) + ("" if precision == "fp32" else f"-{precision}")


ARMS = [variant_id(v) for v in variants()]  # fp32 variants, for the forward/backward and MFU benchmarks
TRAIN_VARIANTS = [variant_id(v) for v in variants(PRECISIONS)]


def ratio_pairs() -> list[tuple[str, str]]:
    """(numerator, denominator) variants of the interleaved step-time ratios: the first LoRA variant
    against standard, and each of the two in bf16 against itself in fp32 (where bf16 is benchmarked)."""
    lora = next((v for v in ARMS if v.startswith("lora-")), None)
    pairs = [(lora, "standard")] if lora and "standard" in ARMS else []
    if "bf16" in PRECISIONS:
        pairs += [(f"{v}-bf16", v) for v in ("standard", lora) if v and f"{v}-bf16" in TRAIN_VARIANTS]
    return pairs


RATIO_PAIRS = ratio_pairs()


def alternate(rounds: int, a, b) -> tuple[list[float], list[float]]:
    """Rounds of two variants interleaved A B, B A, A B ... so that drift on a shared machine hits
    both alike; returns each variant's per-round values."""
    values_a, values_b = [], []
    for i in range(rounds):
        order = [(a, values_a), (b, values_b)] if i % 2 == 0 else [(b, values_b), (a, values_a)]
        for fn, sink in order:
            sink.append(fn())
    return values_a, values_b
def rotate(rounds: int, fns: dict) -> dict[str, list[float]]:
    """Rounds of several operations interleaved, the order rotated each round (A B C, B C A, C A B ...),
    so that drift on a shared machine hits all alike; returns each operation's per-round values."""
    names = list(fns)
    values: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names[i % len(names):] + names[:i % len(names)]:
            values[name].append(fns[name]())
    return values


_BY_ID = {variant_id(v): v for v in variants(PRECISIONS)}


class Bench:
    """What every benchmark needs: the model, ADR-001 settings, realistic dating batches."""

    def __init__(self, which: str, cache_dir):
        self.tiny = which == "tiny"
        self.device = devices.resolve("auto")
        self.model_name = models.TINY_MODEL if self.tiny else models.DEFAULT_MODEL
        self.cache_dir = str(cache_dir)
        self.base = models.load_model(models.resolve_model_path(self.model_name, cache_dir=cache_dir),
                                      device=self.device)
        self.splits = data.load_splits("dating", seed=0)
        self.batch_size = 16
        self.burn_in_steps = 2 if self.tiny else 3
        # the tiny model's steps take about 13 ms here: 20 of them make a round whose median is stable
        self.steps_per_round = 20 if self.tiny else 10
        # HARNESS_BENCH_ROUNDS: more rounds narrow the CIs of the side-by-side ratios and give
        # bench-compare more evidence (the README recommends 6, in 6 processes, for regression checks).
        self.rounds = int(os.environ.get("HARNESS_BENCH_ROUNDS", 2 if self.tiny else 5))
        # HARNESS_BENCH_RATIO_ROUNDS: rounds of the two faithfulness ratios (trackers on/off, harness/plain),
        # default the same; judging their 0.98 target needs a CI half-width of about 0.02 (the published run
        # used 36 rounds; its half-widths are in results/benchmarks/README.md).
        self.ratio_rounds = int(os.environ.get("HARNESS_BENCH_RATIO_ROUNDS", self.rounds))
        # HARNESS_BENCH_PROCESSES: fresh processes that share test_train_step's rounds (pyperf's remedy for
        # a process's own speed: here one process's median differed from the next one's by a CV of 2%
        # with all-MiniLM-L6-v2 and 7-12% with the tiny model)
        self.processes = max(1, min(self.rounds, int(os.environ.get("HARNESS_BENCH_PROCESSES", self.rounds))))

    def spec(self, variant: str) -> RunSpec:
        """The variant's spec through build_specs (the CLI's own function): registry defaults, ADR-001's
        profile, then the bench's short budget (warm-up longer than the run: a constant-ish rate)."""
        fields = _BY_ID.get(variant) or {"arm": variant, "precision": "fp32"}
        overrides = [f"batch_size={self.batch_size}", "warmup_steps=100",
                     f"max_steps={self.burn_in_steps + self.steps_per_round}",
                     f"burn_in_steps={self.burn_in_steps}", f"device={self.device}",
                     f"precision={fields['precision']}", "measure_energy=false"]
        if "lora" in fields:
            r = fields["lora"]["r"]
            overrides += [f"lora.r={r}", f"lora.alpha={2.0 * r}"]
        (spec,) = build_specs(arms=[fields["arm"]], overrides=overrides)
        return spec

    def prepared(self, variant: str):
        """(model, spec, tuner): a fresh copy of the base model with the variant's method attached."""
        model = copy.deepcopy(self.base)
        spec = self.spec(variant)
        tuner = spec.method.attach(model, spec.lora, total_steps=spec.max_steps) \
            if spec.lora is not None else None
        return model, spec, tuner

    def model(self, variant: str):
        """A fresh copy of the base model with the variant's method attached, and its spec."""
        model, spec, _ = self.prepared(variant)
        return model, spec

    def worker(self, variant: str, rounds: int = 1) -> dict:
        """Rounds of the variant in a fresh process (bench/isolated.py): per-round median step times
        (warm-up rounds discarded) and that process's peak memory."""
        import json
        import subprocess
        import sys
        from pathlib import Path
        repo = Path(__file__).resolve().parent.parent
        from harness.runner import repo_env
        proc = subprocess.run([sys.executable, "-m", "bench.isolated", variant, self.model_name, self.cache_dir,
                               str(rounds)], cwd=repo, env=repo_env(), capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"worker process of {variant} failed: {proc.stderr[-2000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def timed_round(self, variant: str) -> list[float]:
        """One training round of the variant on a fresh copy of the model (the harness's own trainer,
        train.build_trainer): the step times after the burn-in steps, every step checked to be timed."""
        import tempfile

        from harness import trackers, train
        model, spec, tuner = self.prepared(variant)
        timer = trackers.StepTimer(self.device)
        trainer = train.build_trainer(model, spec, self.train_pairs(spec), self.device,
                                      output_dir=tempfile.mkdtemp(prefix="bench-"), callbacks=[timer], tuner=tuner)
        trainer.train()
        if len(timer.step_s) != spec.max_steps:
            raise RuntimeError(f"{variant}: timed {len(timer.step_s)} of {spec.max_steps} steps")
        return timer.step_s[spec.burn_in_steps:]

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
