"""The CUDA paths on a real GPU: memory peaks, synchronised step timing, NVML energy, a whole run.

This repository's CI has no GPU, so these tests skip there (the CUDA tracker is covered by a labelled
mock in test_trackers.py). On a machine with an NVIDIA GPU: `pytest tests/test_cuda.py`.
"""

import json

import pytest
import torch

from harness import devices, flops, trackers
from tests.conftest import TINY_ARGS, run_cli

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device here: these tests need a real NVIDIA GPU")


def test_memory_tracker_reads_the_cuda_peak_of_its_region():
    before = torch.empty(8 * 2**20, dtype=torch.uint8, device="cuda")  # in use before the region
    with trackers.track_memory("cuda") as rec:
        block = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")
        del block
    assert rec["source"].startswith("cuda: torch.cuda.max_memory_allocated")
    assert rec["baseline_memory_bytes"] >= before.numel()
    # the freed 64 MiB block is still the region's peak; the earlier 8 MiB is its baseline, not its increment
    assert rec["peak_increment_bytes"] >= 64 * 2**20
    assert rec["peak_reserved_bytes"] >= rec["peak_memory_bytes"]
    del before


def test_step_timer_waits_for_the_kernels_it_times():
    a = torch.randn(4096, 4096, device="cuda") / 64
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    timer = trackers.StepTimer("cuda")
    torch.cuda.synchronize()
    timer.on_step_begin(None, None, None)
    start.record()
    for _ in range(20):
        a = a @ a.T / 64
    end.record()
    timer.on_step_end(None, None, None)
    kernels_s = start.elapsed_time(end) / 1000
    # Without a sync at the step's end the timer would see only the launches (microseconds).
    assert timer.step_s[0] >= 0.9 * kernels_s > 0


def test_matmul_peak_runs_on_the_gpu():
    peak = flops.matmul_peak_flops(size=2048, repeats=5, device="cuda")
    cpu_1t = flops.matmul_peak_flops(size=256, repeats=3, device="cpu")
    assert peak > cpu_1t > 0


def test_a_tiny_job_runs_on_cuda_with_its_sources_named(tmp_path, harness_cache):
    out = tmp_path / "out"
    proc = run_cli("run", "--out", str(out), "--arms", "standard,lora", *TINY_ARGS,
                   "--set", "device=cuda", "--set", "measure_energy=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {}
    for f in sorted((out / "runs").glob("*.json")):
        record = json.loads(f.read_text())
        records[record["method"]] = record
    assert set(records) == {"standard", "lora"}
    name = torch.cuda.get_device_properties(0).name
    for record in records.values():
        env = record["environment"]
        assert record["status"] == "success"
        assert env["device_type"] == "cuda" and env["device_name"] == name and env["torch_cuda"]
        assert record["memory"]["source"].startswith("cuda:")
        assert record["memory"]["peak_memory_bytes"] > record["memory"]["baseline_memory_bytes"] > 0
        assert record["timings"]["steps"] == 4
        energy = record["energy"]
        # codecarbon reads the GPU through NVML; a missing reading must say why, never be 0
        if energy["energy_kwh"] is None:
            assert energy["energy_unavailable_reason"]
        else:
            assert "gpu=NVML" in energy["energy_method"] and energy["gpu_kwh"] > 0
    assert records["lora"]["params"]["trainable_params"] < records["standard"]["params"]["trainable_params"]


def test_synchronize_and_describe_name_the_gpu():
    devices.synchronize("cuda")
    info = devices.describe("cuda")
    assert info["device_type"] == "cuda" and info["device_memory_bytes"] > 2**30


@pytest.mark.parametrize("method", ["adalora", "vera", "dora"])
def test_adapters_attached_on_the_gpu_count_exactly(tmp_path, method):
    """On a model already on the GPU, peft re-wraps each new adapter tensor as a Parameter when it
    moves it to the base layer's device; AdaLoRA's constant rank counter then required grad (found by
    the worker's parameter check on an H200). The live count must match the formula there too."""
    from harness import methods, models
    from harness.data import load_splits
    from harness.spec import LoraSpec
    path = models.build_tiny_model(tmp_path / "tiny")
    model = models.load_model(path, device="cuda")
    train = load_splits("dating").train
    active = models.forward_path_linears(model, train, batch_size=4)
    adapter = LoraSpec(r=8, alpha=16.0, target_modules=("query", "value"))
    methods.METHODS[method].attach(model, adapter, total_steps=10)
    live = models.count_params(model, receiving_grad=models.gradient_probe(model, train, batch_size=4))
    assert live["trainable_params"] == methods.METHODS[method].expected_params(model, adapter, active)
