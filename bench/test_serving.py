"""Serving adapters as ADR-001 sells them: "swap adapters at inference without reloading the base
model", "separate LoRA adapters per category", "merge post-training". What each really costs here:

- test_swap_latency: the time until the next request is answered with another task's model, three
  ways, their rounds interleaved (order rotated each round): activating another adapter already
  resident on the loaded base (peft's ``set_adapter``), loading a new adapter from disk onto the
  loaded base (``load_adapter`` + ``set_adapter``), and loading a full fine-tuned model from disk
  (``SentenceTransformer(folder)``); each followed by encoding one sentence. Medians with 95%
  bootstrap CIs, and the paired ratios against a full reload.
- test_task_memory: resident memory of one base with K adapters against K full models (K = 1, 2,
  4, 8), each K in a fresh process (bench/serving.py), with the increment per task fitted over K.
- test_merge: what folding a LoRA adapter into the base weights costs (peft's merge).
(Encoding throughput of base, unmerged and merged: bench/test_inference.py.)

The adapters are LoRA r=8 on query and value, saved as every run saves its artifact
(harness/artifacts.py); their weights are random perturbations, stand-ins for trained ones: what
swapping, loading and holding them costs depends on their shapes and sizes, not on their values.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.conftest import rotate, timed_pedantic
from harness import artifacts, benchcompare, environment, methods, models
from harness.spec import LoraSpec

K_TASKS = (1, 2, 4, 8)
ADAPTER = LoraSpec(r=8, alpha=16.0)
QUERY = ["I love hiking on weekends and quiet evenings with a book"]


@dataclass
class Shipped:
    base: str
    adapters: list[str]
    full: str


def _lora_model(bench, seed: int):
    """A copy of the base with a LoRA adapter whose weights are moved off their initial values."""
    model = copy.deepcopy(bench.base)
    methods.get("lora").attach(model, ADAPTER)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn(param.shape, generator=generator).to(param.device))
    return model.eval()


@pytest.fixture(scope="module")
def shipped(bench, tmp_path_factory) -> Shipped:
    root = tmp_path_factory.mktemp("shipped")
    adapters = []
    for k in range(max(K_TASKS) + 2):
        folder = root / f"adapter-{k}"
        artifacts.save(_lora_model(bench, seed=k), methods.get("lora"), folder)
        adapters.append(str(folder))
    full = root / "full"
    artifacts.save(copy.deepcopy(bench.base), methods.get("standard"), full)
    return Shipped(models.resolve_model_path(bench.model_name, cache_dir=Path(bench.cache_dir)), adapters, str(full))


def _sync(bench):
    from harness import devices
    devices.synchronize(bench.device)


def test_swap_latency(benchmark, bench, shipped):
    from sentence_transformers import SentenceTransformer

    server = artifacts.with_peft_adapter(SentenceTransformer(shipped.base, device=bench.device).eval(),
                                         Path(shipped.adapters[0]), adapter_name="a0")
    peft = server[0].auto_model
    peft.load_adapter(shipped.adapters[1], adapter_name="a1")
    # the swap really swaps: each resident adapter answers like the same adapter loaded alone
    for name, folder in (("a0", shipped.adapters[0]), ("a1", shipped.adapters[1])):
        peft.set_adapter(name)
        alone = artifacts.load(Path(folder), base=shipped.base, device=bench.device)
        assert np.abs(server.encode(QUERY) - alone.encode(QUERY)).max() <= artifacts.TOLERANCE
    state = {"active": "a1", "loaded": 0}

    def clocked(fn) -> float:
        _sync(bench)
        start = time.perf_counter()
        fn()
        _sync(bench)
        return time.perf_counter() - start

    def activate() -> float:
        other = "a0" if state["active"] == "a1" else "a1"

        def op():
            peft.set_adapter(other)
            server.encode(QUERY, show_progress_bar=False)
        took = clocked(op)
        state["active"] = other
        return took

    def load_adapter() -> float:
        name = f"new{state['loaded']}"
        folder = shipped.adapters[2 + state["loaded"] % (len(shipped.adapters) - 2)]

        def op():
            peft.load_adapter(folder, adapter_name=name)
            peft.set_adapter(name)
            server.encode(QUERY, show_progress_bar=False)
        took = clocked(op)
        peft.set_adapter(state["active"])
        peft.delete_adapter(name)  # back to two resident adapters, outside the clock
        state["loaded"] += 1
        return took

    def load_full() -> float:
        def op():
            SentenceTransformer(shipped.full, device=bench.device).encode(QUERY, show_progress_bar=False)
        return clocked(op)

    ops = {"activate": activate, "load-adapter": load_adapter, "load-full": load_full}
    for fn in ops.values():  # one warm-up call each (first-call costs: file cache, lazy imports)
        fn()
    values = benchmark.pedantic(rotate, args=(max(bench.rounds, 5), ops), rounds=1, iterations=1)
    info = {"swap_ops": list(ops), "loadavg_1m": environment.load_average(), "device": bench.device,
            "threads": torch.get_num_threads(), "model": bench.model_name, "adapter": "lora r=8 on query,value",
            "measured": "from the call until one sentence is encoded by the newly active model (device synced)"}
    for name, seconds in values.items():
        ci = benchcompare.median_ci(seconds)
        info[f"swap_{name}_s"] = ci["median"]
        info[f"swap_{name}_s_ci95"] = [ci["lo"], ci["hi"]]
        info[f"swap_{name}_s_rounds"] = seconds
    for name in ("activate", "load-adapter"):  # how many times faster than a full reload, paired by round
        r = benchcompare.paired_ratio(values[name], values["load-full"])
        info[f"full_reload_over_{name}"] = r["ratio"]
        info[f"full_reload_over_{name}_ci95"] = [r["ratio_lo"], r["ratio_hi"]]
    benchmark.extra_info.update(info)
    assert all(len(v) == max(bench.rounds, 5) for v in values.values())
    assert info["swap_activate_s"] > 0


def _serve(kind: str, bench, folders: list[str]) -> dict:
    from harness.runner import repo_env
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-m", "bench.serving", kind, bench.device, *folders], cwd=repo,
                          env=repo_env(), capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.serving {kind} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["adapters", "full"])
def test_task_memory(benchmark, bench, shipped, kind):
    """Memory of K tasks in one fresh process each: the RSS increment over the process before loading,
    and (on a GPU) the device memory; the per-task increment is the least-squares slope over K."""
    def measure() -> list[dict]:
        return [_serve(kind, bench, [shipped.base, *shipped.adapters[:k]] if kind == "adapters"
                       else [shipped.full] * k) for k in K_TASKS]

    runs = benchmark.pedantic(measure, rounds=1, iterations=1)
    increments = [r["rss_after_bytes"] - r["rss_before_bytes"] for r in runs]
    slope, intercept = np.polyfit(K_TASKS, increments, 1)
    info = {"kind": kind, "tasks": list(K_TASKS), "rss_increment_bytes": increments,
            "rss_per_task_bytes": float(slope), "rss_fixed_bytes": float(intercept),
            "measured": "RSS after loading and using K tasks minus RSS before loading (fresh process per K, "
                        "bench/serving.py); per task: least-squares slope over K",
            "loadavg_1m": environment.load_average(), "device": bench.device, "model": bench.model_name}
    if bench.device == "cuda":
        info["device_allocated_bytes"] = [r["device_allocated_bytes"] for r in runs]
    benchmark.extra_info.update(info)
    assert [r["tasks"] for r in runs] == list(K_TASKS)


def test_merge(benchmark, bench):
    """peft's merge of a LoRA r=8 adapter into the base weights (models.merge_lora), on a fresh model
    each round (the copy and the attach are outside the clock)."""
    def setup():
        return (_lora_model(bench, seed=0),), {}

    merged, median_s = timed_pedantic(benchmark, models.merge_lora, setup=setup, rounds=max(bench.rounds, 5))
    assert merged > 0
    benchmark.extra_info.update(merge_s=median_s, merged_layers=merged, adapter="lora r=8 on query,value",
                                loadavg_1m=environment.load_average(), device=bench.device, model=bench.model_name)
