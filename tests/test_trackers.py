"""Trackers on this machine's CPU for real; MPS and CUDA through labelled mocks (no such device here)."""

import subprocess
import sys
import threading
import time
import types

import numpy as np
import psutil
import pytest
import torch

from harness import cpu_share, devices, trackers


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


# --- what else used the CPUs (harness/cpu_share.py) ----------------------------------------------

STAT_BEFORE = """cpu  10000 50 3000 90000 400 0 100 20 0 0
cpu0 5000 25 1500 45000 200 0 50 10 0 0
cpu1 5000 25 1500 45000 200 0 50 10 0 0
intr 123
"""
STAT_AFTER = """cpu  12150 50 3250 90400 400 0 100 120 0 0
cpu0 6075 25 1625 45200 200 0 50 60 0 0
"""


def test_the_cpu_share_is_read_from_the_kernel_counters():
    """Recorded /proc/stat lines, 10 s apart, 100 ticks a second: 24 s busy on all CPUs (2,150 user +
    250 system ticks), of which this process used 20 s; 1 s stolen by the hypervisor."""
    before, after = cpu_share.proc_stat_cpu(STAT_BEFORE), cpu_share.proc_stat_cpu(STAT_AFTER)
    assert before == {"busy": 13150, "steal": 20} and after == {"busy": 15550, "steal": 120}
    share = cpu_share.cpu_share(before, after, own_s=20.0, wall_s=10.0, tick_s=0.01)
    assert (share["own_cores"], share["other_cores"], share["steal_cores"]) == (2.0, 0.4, 0.1)
    env = cpu_share.environment_fields(share)
    assert env["training_cpu_other_cores"] == 0.4 and env["training_cpu_source"].startswith("/proc/stat")
    assert cpu_share.shared_cores(env) == pytest.approx(0.5) and 0.5 > cpu_share.SHARED_CORES
    # a quiet region: the kernel's busy time is our own, give or take a tick; never shown below zero
    quiet = cpu_share.cpu_share(before, {"busy": 15150, "steal": 20}, own_s=20.02, wall_s=10.0, tick_s=0.01)
    assert cpu_share.shared_cores(cpu_share.environment_fields(quiet)) == 0.0
    # what cannot be read says nothing rather than something wrong
    assert cpu_share.proc_stat_cpu("intr 1\n") is None and cpu_share.proc_stat_cpu("cpu  1 x 3\n") is None
    assert cpu_share.cpu_share(None, after, own_s=1.0, wall_s=1.0, tick_s=0.01) is None
    assert cpu_share.environment_fields(None) == {}
    assert cpu_share.shared_cores({"training_cpu_other_cores": float("nan"), "training_cpu_steal_cores": 0.0}) is None
    assert cpu_share.shared_cores({"training_cpu_other_cores": "0.3"}) is None and cpu_share.shared_cores(None) is None
    assert cpu_share.shared_cores({"training_cpu_other_cores": 1e308, "training_cpu_steal_cores": 1e308}) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's counters are Linux's /proc/stat")
def test_another_process_busy_beside_the_region_is_counted_as_other_work():
    """A process of the test's own spins beside the region; the region waits until that process has used
    half a second of CPU. Whatever else the machine runs only adds to "other", so the figure is at least
    the spinner's own CPU time in the region, however busy the machine is."""
    spinner = subprocess.Popen([sys.executable, "-c", "import sys\nprint('spinning', flush=True)\nwhile True: pass"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert spinner.stdout.readline().strip() == "spinning"
        watched = psutil.Process(spinner.pid)
        done = threading.Event()
        began = time.perf_counter()
        with trackers.track_cpu_share() as share:
            start = used = sum(watched.cpu_times()[:2])
            while not done.wait(0.01):
                used = sum(watched.cpu_times()[:2])
                done.set() if used - start >= 0.5 else None
        wall_s = time.perf_counter() - began  # at least the region's own wall time
        assert share["own_cores"] < 0.5, share  # the region itself only polls
        # the spinner's CPU time, read inside the region, is part of what the kernel counted as other work
        # (tolerance: a clock tick of rounding on each of two CPUs at each end, and the spinner's own)
        assert share["other_cores"] * wall_s >= (used - start) - 0.08, (share, used - start, wall_s)
    finally:
        spinner.kill()
        spinner.wait()
