"""``harness bench-compare BASE NEW``: did a benchmark regress, given the noise of both runs?

pytest-benchmark's own ``--benchmark-compare-fail=mean:15%`` compares two single figures against a
fixed threshold: on a shared machine whose round-to-round spread is 10%, it both misses real
slowdowns and raises false alarms. Here each benchmark's per-round samples of both saved runs are
compared (pyperf's approach: decide from the distribution of runs, not one number):

- samples: the median step time of each fresh process where the benchmark ran several
  (``extra_info`` ``step_s_per_process_medians``: test_train_step, HARNESS_BENCH_PROCESSES), else
  the per-round median step time (``step_s_per_round_medians``: burn-in excluded), else the
  per-round times pytest-benchmark saved (``stats.data``, present with ``--benchmark-save-data``);
- **regressed**: a one-sided Mann-Whitney test says NEW is slower (p < alpha) *and* the ratio of
  medians NEW/BASE is at least 1 + min_effect; **improved** the mirror image; otherwise
  **unchanged**. The ratio comes with a 95% bootstrap CI (samples resampled within each run).

Exit status 1 when any benchmark regressed, 2 on bad input, else 0.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from harness import hardware

ALPHA = 0.05
MIN_EFFECT = 0.02


class CompareError(ValueError):
    """A file that is not a pytest-benchmark JSON, or nothing to compare."""


def load(path: str | Path) -> dict[str, dict]:
    return _read(path)[0]


def machine(path: str | Path) -> str:
    """The machine a saved run names in its machine_info (bench/conftest.py): GPU, or CPU with its cores
    and, where saved, its signature."""
    info = _read(path)[1]
    return info.get("gpu_model") or hardware.machine_label({**info, "device": "cpu"})


def machines_differ(base_path, new_path) -> str | None:
    """One line where the two runs name different machines (a ratio between them then measures the
    machines as well as the code), else None."""
    a, b = machine(base_path), machine(new_path)
    return None if a == b else (f"{base_path} ran on {a}, {new_path} on {b}: a ratio between them measures "
                                "the machines as well as the code")


def _read(path: str | Path) -> tuple[dict[str, dict], dict]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CompareError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompareError(f"{path}: not a readable JSON file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise CompareError(f"{path}: not a pytest-benchmark file (no 'benchmarks' list; save one with "
                           "pytest bench --benchmark-only --benchmark-save=NAME --benchmark-save-data)")
    info = data.get("machine_info") if isinstance(data.get("machine_info"), dict) else {}
    return {b["fullname"]: b for b in data["benchmarks"] if isinstance(b, dict) and "fullname" in b}, info


def samples(bench: dict) -> tuple[list[float] | None, str]:
    """(samples, what they are), or (None, why there are none). The independent units first: the
    median step time of each fresh process where a benchmark ran several (rounds within one process
    share that process's own speed, which differed by about 4% from one process to the next here)."""
    info = bench.get("extra_info") or {}
    per_process = info.get("step_s_per_process_medians")
    if per_process and len(per_process) > 1:
        return [float(v) for v in per_process], "per-process median step time"
    per_round = info.get("step_s_per_round_medians")
    if per_round:
        return [float(v) for v in per_round], "per-round median step time"
    data = (bench.get("stats") or {}).get("data")
    if data:
        return [float(v) for v in data], "per-round time"
    return None, "no per-round samples (save with --benchmark-save-data)"


def _boot_medians(values, rng, resamples: int) -> np.ndarray:
    """The medians of `resamples` bootstrap resamples of values (rounds drawn with replacement)."""
    v = np.asarray(values, dtype=float)
    return np.median(v[rng.integers(0, len(v), (resamples, len(v)))], axis=1)


def median_ci(values: list[float], *, resamples: int = 2000, seed: int = 0) -> dict:
    """The median of ``values`` (rounds) with a 95% bootstrap CI (rounds resampled)."""
    boot = _boot_medians(values, np.random.default_rng(seed), resamples)
    lo, hi = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    return {"median": float(np.median(values)), "lo": lo, "hi": hi, "rounds": len(values)}


def ratio_ci(base: list[float], new: list[float], *, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap CI of median(new) / median(base), resampling each run's rounds."""
    rng = np.random.default_rng(seed)
    rb = _boot_medians(base, rng, resamples)
    rn = _boot_medians(new, rng, resamples)
    lo, hi = np.percentile(rn / rb, [2.5, 97.5])
    return float(lo), float(hi)


def cv(values: list[float]) -> float | None:
    """Coefficient of variation (sample standard deviation over mean); None below two values."""
    return statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else None


def decide(base: list[float], new: list[float], *, alpha: float = ALPHA, min_effect: float = MIN_EFFECT) -> dict:
    """The verdict for one benchmark (lower is better: times)."""
    from scipy.stats import mannwhitneyu
    ratio = statistics.median(new) / statistics.median(base)
    p_slower = float(mannwhitneyu(new, base, alternative="greater").pvalue)
    p_faster = float(mannwhitneyu(new, base, alternative="less").pvalue)
    if p_slower < alpha and ratio >= 1 + min_effect:
        verdict = "regressed"
    elif p_faster < alpha and ratio <= 1 - min_effect:
        verdict = "improved"
    else:
        verdict = "unchanged"
    lo, hi = ratio_ci(base, new)
    return {"verdict": verdict, "ratio": ratio, "ratio_lo": lo, "ratio_hi": hi, "p_slower": p_slower,
            "p_faster": p_faster, "rounds_base": len(base), "rounds_new": len(new),
            "cv_base": cv(base), "cv_new": cv(new)}


def power_counts(verdicts: list[dict]) -> dict[str, int]:
    """bench.power's trials, counted: slowed runs flagged regressed (detected), unchanged runs flagged
    regressed (false alarms) and unchanged runs called improved."""
    return {"detected": sum(v["slowed"]["verdict"] == "regressed" for v in verdicts),
            "false_alarms": sum(v["unchanged"]["verdict"] == "regressed" for v in verdicts),
            "false_improved": sum(v["unchanged"]["verdict"] == "improved" for v in verdicts)}


def compare(base_path, new_path, *, alpha: float = ALPHA, min_effect: float = MIN_EFFECT) -> list[dict]:
    base, new = load(base_path), load(new_path)
    common = [name for name in base if name in new]
    if not common:
        raise CompareError(f"{base_path} and {new_path} share no benchmark; compare runs of the same suite")
    rows = []
    for name in common:
        a, what = samples(base[name])
        b, _ = samples(new[name])
        row = {"benchmark": name, "samples": what}
        if a is None or b is None or len(a) < 2 or len(b) < 2:
            row.update(verdict="no data", why=what if a is None or b is None else "fewer than 2 rounds")
        else:
            row.update(decide(a, b, alpha=alpha, min_effect=min_effect))
        rows.append(row)
    return rows


def format_rows(rows: list[dict], *, alpha: float, min_effect: float) -> str:
    from tabulate import tabulate
    body = []
    for r in rows:
        if r["verdict"] == "no data":
            body.append([r["benchmark"], "no data", "—", "—", "—", r["why"]])
            continue
        body.append([r["benchmark"], r["verdict"].upper() if r["verdict"] == "regressed" else r["verdict"],
                     f"{r['ratio']:.3f} [{r['ratio_lo']:.3f}, {r['ratio_hi']:.3f}]",
                     f"{r['p_slower']:.4f} / {r['p_faster']:.4f}", f"{r['rounds_base']} / {r['rounds_new']}",
                     f"CV {100 * (r['cv_base'] or 0):.1f}% / {100 * (r['cv_new'] or 0):.1f}% ({r['samples']})"])
    table = tabulate(body, headers=["benchmark", "verdict", "NEW/BASE median (95% CI)", "p slower / faster",
                                    "samples", "evidence"], tablefmt="github", disable_numparse=True)
    return (table + f"\n\nregressed: one-sided Mann-Whitney p < {alpha} and ratio >= {1 + min_effect:.2f}; "
            f"improved: the mirror image; otherwise unchanged. Lower is better (times).")


def paired_ratio(measured: list[float], reference: list[float], *, target: float | None = None,
                 resamples: int = 2000, seed: int = 0) -> dict:
    """Side-by-side rounds (A B B A ...): per round, reference time / measured time (a throughput
    ratio: below 1 means the measured variant is slower). The median over rounds with a 95% bootstrap
    CI (rounds resampled, each round's pair kept together), and against a target: "met" when the
    whole CI is at or above it, "missed" when it is entirely below, else "undecided"."""
    per_round = np.asarray(reference, dtype=float) / np.asarray(measured, dtype=float)
    boot = _boot_medians(per_round, np.random.default_rng(seed), resamples)
    lo, hi = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    out = {"ratio": float(np.median(per_round)), "ratio_lo": lo, "ratio_hi": hi, "rounds": len(per_round),
           "per_round_ratios": [float(v) for v in per_round]}
    if target is not None:
        out.update(target=target, verdict="met" if lo >= target else "missed" if hi < target else "undecided")
    return out
