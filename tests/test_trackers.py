"""Trackers on this machine's CPU for real; MPS and CUDA through labelled mocks (no such device here)."""

import time
import types

import numpy as np
import pytest
import torch

from harness import devices, trackers


def test_track_time_covers_the_region():
    with trackers.track_time("cpu") as rec:
        time.sleep(0.05)
    assert rec["wall_s"] >= 0.05


def test_cpu_peak_memory_sees_an_allocation_inside_the_region():
    with trackers.track_memory("cpu") as rec:
        block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
        del block
    assert rec["peak_increment_bytes"] >= 150 * 2**20
    assert rec["source"].startswith("cpu:")


def test_cpu_peak_is_reset_at_region_start():
    big = np.ones(300 * 2**20 // 8)
    del big
    with trackers.track_memory("cpu") as rec:
        pass
    if "VmHWM" not in rec["source"]:
        pytest.skip(f"the peak reset needs Linux's VmHWM and clear_refs; this platform's source: {rec['source']}")
    assert rec["peak_increment_bytes"] < 100 * 2**20


def test_mps_path_samples_the_allocator(monkeypatch):
    # MOCK: no Apple GPU here. A fake torch.mps whose allocation rises and falls inside the region.
    state = {"alloc": 1000, "driver": 5000}
    fake = types.SimpleNamespace(current_allocated_memory=lambda: state["alloc"],
                                 driver_allocated_memory=lambda: state["driver"], synchronize=lambda: None)
    monkeypatch.setattr(torch, "mps", fake)
    with trackers.track_memory("mps") as rec:
        state.update(alloc=9000, driver=12000)
        time.sleep(0.1)
        state.update(alloc=2000, driver=6000)
    assert rec["baseline_memory_bytes"] == 1000
    assert rec["peak_memory_bytes"] == 9000 and rec["peak_driver_bytes"] == 12000
    assert "sampled" in rec["source"]


def test_cuda_path_reads_the_peak_apis(monkeypatch):
    # MOCK: no NVIDIA GPU in this test environment. Fake counters stand in for torch.cuda's.
    calls = []
    fake = {"reset_peak_memory_stats": lambda: calls.append("reset"), "memory_allocated": lambda: 100,
            "memory_reserved": lambda: 200, "max_memory_allocated": lambda: 700,
            "max_memory_reserved": lambda: 900, "synchronize": lambda: None}
    for name, fn in fake.items():
        monkeypatch.setattr(torch.cuda, name, fn)
    with trackers.track_memory("cuda") as rec:
        pass
    assert calls == ["reset"]
    assert (rec["baseline_memory_bytes"], rec["peak_memory_bytes"], rec["peak_reserved_bytes"]) == (100, 700, 900)
    assert rec["peak_increment_bytes"] == 600


def test_energy_disabled_is_null_with_reason_never_zero():
    with trackers.track_energy(enabled=False, country_iso_code="USA", device="cpu") as rec:
        pass
    assert rec["energy_kwh"] is None and rec["co2_kg"] is None
    assert "disabled" in rec["energy_unavailable_reason"]


def test_energy_measured_and_labelled():
    with trackers.track_energy(enabled=True, country_iso_code="FRA", device="cpu") as rec:
        x = torch.randn(400, 400)
        for _ in range(200):
            x = torch.tanh(x @ x)
    if rec["energy_kwh"] is None:
        pytest.fail(f"codecarbon measured nothing: {rec.get('energy_unavailable_reason')}")
    assert rec["energy_kwh"] > 0
    assert rec["energy_method"].startswith("codecarbon")
    assert isinstance(rec["energy_is_estimate"], bool)


def test_summarize_steps_excludes_burn_in():
    steps = [5.0, 4.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 10.0]
    out = trackers.summarize_steps(steps, burn_in_steps=2)
    assert out["timed_steps"] == 10 and out["steps"] == 12
    assert out["step_s_median"] == 2.0
    assert out["step_s_p90"] == 3.0
    assert trackers.summarize_steps([1.0], burn_in_steps=5)["step_s_median"] is None


def test_unavailable_device_is_a_clear_error():
    if not torch.cuda.is_available():
        with pytest.raises(devices.DeviceError, match="'cuda': requested but not available"):
            devices.resolve("cuda")
    with pytest.raises(devices.DeviceError, match="unknown"):
        devices.resolve("tpu")
    assert devices.resolve("cpu") == "cpu"
