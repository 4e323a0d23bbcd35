"""What else used the CPUs while a region was measured (pure; Linux's /proc/stat).

A timing is a quiet machine's only where nothing else ran beside it. The load average says that late
and smoothed (a one-minute average, read before or after the region). The kernel's own counters say it
exactly: the CPU time that all CPUs spent busy over the region, less this process's own, is what other
work took; the hypervisor's steal is what other guests took. ``trackers.track_cpu_share`` reads them
around ``trainer.train()`` and the worker records the figures in the record's flat environment
(``training_cpu_own_cores``, ``training_cpu_other_cores``, ``training_cpu_steal_cores``); the tables
name every run whose timings were shared (``shared_cores`` above ``SHARED_CORES``).
"""

from __future__ import annotations

import math
import resource

from harness import figures

SHARED_CORES = 0.25  # other work above this many cores, on average over the region, shares the timings
SHARE_FIELDS = ("own_cores", "other_cores", "steal_cores", "source")  # what ``cpu_share`` answers
ENVIRONMENT_KEYS = tuple(f"training_cpu_{k}" for k in SHARE_FIELDS)  # the record's flat environment keys
CPU_SHARE_SOURCE = ("/proc/stat (all CPUs: busy = user+nice+system+irq+softirq; steal) minus this process's "
                    "own CPU time (getrusage, self and children), over trainer.train()")


def proc_stat_cpu(text: str) -> dict | None:
    """The kernel's summed CPU counters from the text of /proc/stat, in clock ticks: busy and steal."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            try:
                ticks = [int(v) for v in fields[1:9]] + [0] * max(0, 8 - len(fields[1:9]))
            except ValueError:
                return None
            user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
            return {"busy": user + nice + system + irq + softirq, "steal": steal}
    return None


def read_proc_stat() -> dict | None:
    """This machine's counters now; None where there is no /proc/stat (not Linux)."""
    try:
        with open("/proc/stat") as f:
            return proc_stat_cpu(f.read())
    except OSError:
        return None


def own_cpu_s() -> float:
    """The CPU time this process has used so far, all its threads and its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cpu_share(before: dict, after: dict, *, own_s: float, wall_s: float, tick_s: float) -> dict | None:
    """Average cores busy over a region of ``wall_s`` seconds: this process's own (``own_s`` of CPU
    time), everything else's (the kernel's busy time less our own) and the hypervisor's steal."""
    if not before or not after or wall_s <= 0:
        return None
    busy_s = (after["busy"] - before["busy"]) * tick_s
    return {"own_cores": round(own_s / wall_s, 3),
            "other_cores": round((busy_s - own_s) / wall_s, 3),
            "steal_cores": round((after["steal"] - before["steal"]) * tick_s / wall_s, 3),
            "source": CPU_SHARE_SOURCE}


def environment_fields(share: dict | None) -> dict:
    """``cpu_share``'s figures as the record's flat environment keys (none where nothing was read)."""
    if not share:
        return {}
    return {key: share[k] for key, k in zip(ENVIRONMENT_KEYS, SHARE_FIELDS, strict=True)}


def shared_cores(environment: dict | None) -> float | None:
    """The cores that other work and the hypervisor took, on average, while a run trained (from its
    record's environment); None where the record does not say."""
    if not isinstance(environment, dict):
        return None
    parts = [figures.number(environment, key) for key in ("training_cpu_other_cores", "training_cpu_steal_cores")]
    if None in parts:
        return None
    total = float(parts[0]) + float(parts[1])  # NaN or infinite when a part is, or when two huge parts overflow
    return max(0.0, total) if math.isfinite(total) else None
