"""The published benchmark run, as text: ``results/benchmarks/README.md`` and the README's figures.

``python -m harness publish`` regenerates both from the saved pytest-benchmark runs under
``results/benchmarks/`` (saved with ``--benchmark-save-data``), so that no benchmark figure in prose is
typed by hand; ``tests/test_publish.py`` diffs them against a fresh regeneration. Each section comes from
the newest run that measured it (``SECTIONS``), and names that run: the side-by-side ratios and the
training steps from the newest run of the whole suite (the one with ratio CIs), MFU and serving from the
newest run that has them, so that a short quiet run of one part (``bench/test_serving.py``, say) can
publish that part without the whole suite's 100 minutes.

- Side-by-side ratios (trackers on/off, harness/plain trainer, LoRA/standard and bf16/fp32 step
  time) come from interleaved rounds: the median of the per-round ratios with a 95% bootstrap CI over
  rounds (``benchcompare.paired_ratio``), and a verdict against the target where there is one.
- Per variant: the median step time over rounds (every round in one of several fresh processes,
  bench/isolated.py), the coefficients of variation over rounds and over processes, and the largest
  process's peak memory.
- MFU: achieved model FLOP/s over the session's matmul peak (best of several, measured once).
- The regression check's measured power: every ``power.json`` that ``python -m bench.power`` wrote
  under ``results/benchmarks/``, with Wilson 95% intervals on its detection and false-alarm rates.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness import hardware
from harness.report import cells

BEGIN, END = "<!-- bench-figures:begin (python -m harness publish) -->", "<!-- bench-figures:end -->"

# benchmark name prefix -> (extra_info key of the ratio, label, what the ratio is)
RATIOS = {
    "test_measurement_overhead": ("overhead", "trackers on / off", "throughput ratio; below 1: trackers slow training"),
    "test_harness_vs_plain_trainer": ("harness_vs_plain", "harness / plain trainer",
                                      "throughput ratio; below 1: the harness trains slower"),
    "test_step_ratio": ("step_time", None, "step time ratio; below 1: the first is faster"),
}


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _load(path: Path) -> dict | None:
    data = _load_json(path)
    return data if isinstance(data, dict) and isinstance(data.get("benchmarks"), list) else None


def _has_ratio_cis(data: dict) -> bool:
    return any((b.get("extra_info") or {}).get("overhead_ratio_ci95") for b in data["benchmarks"])


def _measured(names: tuple[str, ...]):
    """A section's test: the run holds a benchmark of one of these test functions."""
    return lambda data: any(b.get("name", "").split("[")[0] in names for b in data["benchmarks"])


# section -> which saved runs can supply it; publish takes the newest such run. ratios: the side-by-side
# ratios and the training steps (the whole suite's run); serving: swapping, K tasks, merging, encoding
SECTIONS = {
    "ratios": _has_ratio_cis,
    "mfu": _measured(("test_mfu",)),
    "serving": _measured(("test_swap_latency", "test_task_memory", "test_merge", "test_encode")),
}


def section_runs(results_root: Path) -> dict[str, Path]:
    """Each section's source: the newest saved run under results/benchmarks/ that measured it (by the
    run's own datetime); a section that no run measured is absent."""
    newest: dict[str, tuple[str, Path]] = {}
    for path in sorted((results_root / "benchmarks").glob("*/*.json")):
        data = _load(path)
        if data is None:
            continue
        for name, supplies in SECTIONS.items():
            stamp = (str(data.get("datetime", "")), path)
            if supplies(data) and (name not in newest or stamp > newest[name]):
                newest[name] = stamp
    return {name: newest[name][1] for name in SECTIONS if name in newest}


def published_run(results_root: Path) -> Path | None:
    """The newest saved run under results/benchmarks/ whose side-by-side ratios carry CIs (the whole
    suite's run: the ratios and training-step sections, and bench-compare's committed baseline)."""
    return section_runs(results_root).get("ratios")


def summary(path: Path) -> dict:
    data = _load(path)
    if data is None:
        raise ValueError(f"{path}: not a pytest-benchmark file")
    machine, commit = data.get("machine_info") or {}, data.get("commit_info") or {}
    ratios, variants, mfu, serving = [], [], [], {}
    for b in data["benchmarks"]:
        name, info = b["name"], b.get("extra_info") or {}
        base = name.split("[")[0]
        if base in RATIOS and info.get(f"{RATIOS[base][0]}_ratio_ci95"):
            key, label, meaning = RATIOS[base]
            lo, hi = info[f"{key}_ratio_ci95"]
            ratios.append({"benchmark": name, "label": label or info.get("pair", name), "meaning": meaning,
                           "ratio": info[f"{key}_ratio"], "lo": lo, "hi": hi, "half_width": (hi - lo) / 2,
                           "rounds": info.get("rounds"), "target": info.get("target"),
                           "verdict": info.get("verdict"), "loadavg_1m": info.get("loadavg_1m")})
        elif base == "test_train_step":
            per_round = info.get("step_s_per_round_medians") or []
            variants.append({"variant": info.get("arm", name), "step_ms": 1e3 * info["step_s_median"],
                             "cv": info.get("step_cv_over_rounds"), "rounds": len(per_round) or b["stats"]["rounds"],
                             "processes": info.get("processes"), "cv_processes": info.get("step_cv_over_processes"),
                             "samples_per_s": info.get("samples_per_s"),
                             "peak_mib": info["peak_memory_bytes"] / 2**20 if info.get("peak_memory_bytes") else None,
                             "loadavg_1m": info.get("loadavg_1m")})
        elif base == "test_mfu":
            precision = info.get("precision", "fp32")
            mfu.append({"variant": info.get("arm", name) + ("" if precision == "fp32" else f"-{precision}"),
                        "precision": precision, "mfu": info["mfu"],
                        "achieved_gflops": info["achieved_flops_per_s"] / 1e9,
                        "peak_gflops": info["matmul_peak_flops_per_s"] / 1e9,
                        "peak_scope": info.get("matmul_peak_scope")})
        elif base == "test_swap_latency":
            serving["swap"] = {op: {"median_ms": 1e3 * info[f"swap_{op}_s"],
                                    "lo_ms": 1e3 * info[f"swap_{op}_s_ci95"][0],
                                    "hi_ms": 1e3 * info[f"swap_{op}_s_ci95"][1],
                                    "rounds": len(info.get(f"swap_{op}_s_rounds") or [])}
                               for op in info["swap_ops"]}
            serving["reload_ratios"] = {op: (info[f"full_reload_over_{op}"], *info[f"full_reload_over_{op}_ci95"])
                                        for op in ("activate", "load-adapter") if f"full_reload_over_{op}" in info}
        elif base == "test_task_memory":
            serving.setdefault("memory", {})[info["kind"]] = {
                "tasks": info["tasks"], "increment_mib": [v / 2**20 for v in info["rss_increment_bytes"]],
                "per_task_mib": info["rss_per_task_bytes"] / 2**20, "fixed_mib": info["rss_fixed_bytes"] / 2**20}
        elif base == "test_merge":
            serving["merge_ms"] = 1e3 * info["merge_s"]
        elif base == "test_encode":
            serving.setdefault("encode", {})[info.get("variant", name)] = info.get("sentences_per_s")
    rounds = []
    for b in data["benchmarks"]:
        st = b["stats"]
        rounds.append({"benchmark": b["name"], "rounds": st["rounds"], "median_s": st["median"],
                       "cv": st["stddev"] / st["mean"] if st["rounds"] > 1 and st["mean"] else None})
    loads = [load for b in data["benchmarks"]
             if isinstance(load := (b.get("extra_info") or {}).get("loadavg_1m"), (int, float))]
    return {"path": path, "datetime": data.get("datetime"), "commit": (commit.get("id") or "")[:7],
            "dirty": commit.get("dirty"), "cpu": hardware.cpu_label(machine),
            "gpu_model": machine.get("gpu_model"), "torch_threads": machine.get("torch_threads"),
            "torch": machine.get("torch_version"), "ratios": ratios, "variants": variants, "mfu": mfu,
            "serving": serving, "rounds": rounds,
            "load_range": (min(loads), max(loads)) if loads else None}


def power_studies(results_root: Path) -> list[dict]:
    """Each bench.power study under results/benchmarks/: how often a run slowed by the injected fault was
    flagged regressed, how often an unchanged run was (false alarm) or was called improved, each rate with
    its Wilson 95% interval (scipy's binomtest)."""
    from scipy.stats import binomtest

    from harness import benchcompare
    studies = []
    for path in sorted((results_root / "benchmarks").glob("*/power.json")):
        data = _load_json(path)
        verdicts = data.get("verdicts") if isinstance(data, dict) else None
        if not verdicts:
            continue
        n = len(verdicts)
        counts = benchcompare.power_counts(verdicts)
        study = {"path": path, "trials": n, "model": data.get("model"), "rounds": data.get("rounds"),
                 "processes": data.get("processes"), "slowdown": data.get("slowdown"), **counts}
        for key, k in counts.items():
            ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
            study[f"{key}_ci"] = (ci.low, ci.high)
        studies.append(study)
    return studies


def _power_text(p: dict) -> str:
    def rate(key: str) -> str:
        lo, hi = p[f"{key}_ci"]
        return f"{p[key]} of {p['trials']} ({100 * p[key] / p['trials']:.0f}%, 95% CI {100 * lo:.0f}-{100 * hi:.0f}%)"
    model = {"minilm": "all-MiniLM-L6-v2", "tiny": "the tiny random BERT"}.get(p["model"], p["model"])
    return (f"regression check (`python -m bench.power`, {model}, {p['rounds']} rounds in {p['processes']} "
            f"fresh processes a side, {p['trials']} trials): a {100 * p['slowdown']:.0f}% slowdown flagged in "
            f"{rate('detected')}; an unchanged run flagged regressed in {rate('false_alarms')} and called "
            f"improved in {p['false_improved']}")


def _ratio_text(r: dict) -> str:
    text = f"{r['ratio']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]"
    if r.get("target") is not None:
        text += f", target >= {r['target']}: **{r['verdict']}**"
    return text


def _where(s: dict) -> str:
    machine = s["gpu_model"] or s["cpu"]
    load = f"; load average {s['load_range'][0]:.2f}-{s['load_range'][1]:.2f} over the run" if s["load_range"] else ""
    return (f"{machine}, torch {s['torch']} with {s['torch_threads']} threads, commit {s['commit']}"
            f"{' (dirty)' if s['dirty'] else ''}, {s['datetime'][:10]}{load}")


def _sources(results_root: Path) -> list[tuple[Path, dict, list[str]]]:
    """The published runs, each once, in the order of SECTIONS: (path, its summary, its sections)."""
    by_path: dict[Path, list[str]] = {}
    for name, path in section_runs(results_root).items():
        by_path.setdefault(path, []).append(name)
    return [(path, summary(path), names) for path, names in by_path.items()]


def _mfu_lines(mfu: list[dict]) -> list[str]:
    lines = []
    for precision in dict.fromkeys(m["precision"] for m in mfu):
        these = [m for m in mfu if m["precision"] == precision]
        lines.append(f"MFU against the session's {precision} matmul peak of {these[0]['peak_gflops']:.0f} GFLOP/s: "
                     + ", ".join(f"{m['variant']} {m['mfu']:.2f}" for m in these))
    return lines


def readme_block(results_root: Path) -> str:
    """The README's measured benchmark figures, between the BEGIN and END markers: each section's
    figures under the saved run they come from."""
    power = [f"- {_power_text(p)} (`{p['path'].relative_to(results_root.parent).as_posix()}`)"
             for p in power_studies(results_root)]
    sources = _sources(results_root)
    if not any("ratios" in names for *_, names in sources):
        return "\n".join([BEGIN, "No saved benchmark run with ratio CIs under `results/benchmarks/` yet.", *power, END])
    lines = [BEGIN]
    for path, s, names in sources:
        rel = path.relative_to(results_root.parent).as_posix()
        lines.append(f"Measured here ({_where(s)}; `{rel}`, all figures below it generated from it, 95% CIs):")
        if "ratios" in names:
            lines += [f"- {r['label']}: {_ratio_text(r)} ({r['rounds']} interleaved rounds)" for r in s["ratios"]]
        if "mfu" in names:
            lines += [f"- {line}" for line in _mfu_lines(s["mfu"])]
        if "serving" in names:
            lines += [f"- {line}" for line in serving_lines(s["serving"])]
        cvs = [v for v in s["variants"] if v["cv"] is not None] if "ratios" in names else []
        if cvs:
            lines.append("- step-time CV over rounds (over fresh processes): " + ", ".join(
                f"{v['variant']} {_pct(v['cv'])} ({_pct(v['cv_processes'])})" for v in cvs))
    lines += power
    lines.append("Every figure of those runs: [results/benchmarks/README.md](results/benchmarks/README.md).")
    lines.append(END)
    return "\n".join(lines)


SWAP_LABELS = {"activate": "activate a resident adapter", "load-adapter": "load an adapter onto the loaded base",
               "load-full": "load a full fine-tuned model"}


def serving_lines(serving: dict) -> list[str]:
    """ADR-001's deployment claims as measured (bench/test_serving.py, bench/test_inference.py)."""
    lines = []
    swap = serving.get("swap")
    if swap:
        lines.append("swap to another task's model, until its first embedding (median [95% CI]): " + "; ".join(
            f"{SWAP_LABELS.get(op, op)} {v['median_ms']:.3g} ms [{v['lo_ms']:.3g}, {v['hi_ms']:.3g}]"
            for op, v in swap.items()))
        ratios = serving.get("reload_ratios") or {}
        if ratios:
            lines.append("a full reload takes " + " and ".join(
                f"{r:.3g} [{lo:.3g}, {hi:.3g}] times as long as to {SWAP_LABELS[op].split(' ', 1)[0]} "
                f"{SWAP_LABELS[op].split(' ', 1)[1]}" for op, (r, lo, hi) in ratios.items())
                + " (paired by round)")
    memory = serving.get("memory") or {}
    if memory:
        lines.append("memory of K tasks in one process (RSS increment, K = " + ", ".join(
            str(k) for k in next(iter(memory.values()))["tasks"]) + "): " + "; ".join(
            f"{'one base with K adapters' if kind == 'adapters' else 'K full models'} "
            f"{', '.join(f'{v:.0f}' for v in m['increment_mib'])} MiB ({m['per_task_mib']:.3g} MiB per task)"
            for kind, m in memory.items()))
    if serving.get("merge_ms") is not None:
        lines.append(f"merging a LoRA r=8 adapter into the base: {serving['merge_ms']:.3g} ms")
    encode = serving.get("encode") or {}
    if encode:
        lines.append("encoding throughput (sentences/s): " + ", ".join(
            f"{variant} {_fmt(rate, '.0f')}" for variant, rate in encode.items()))
    return lines


_fmt = cells.num  # a number, or "—"


def _pct(v) -> str:
    """A fraction as a percentage: 0.032 -> "3.2%" (cells.pct), or "—"."""
    return cells.pct(None if v is None else 100 * v, ".1f")


def markdown(results_root: Path) -> str:
    head = ["# The published benchmark runs", "",
            "Generated by `python -m harness publish` from the saved pytest-benchmark runs under this folder; do not "
            "edit. Each section comes from the newest run that measured it, and names that run: the side-by-side "
            "ratios and training steps from the newest run of the whole suite (the one that carries the ratios with "
            "CIs), MFU and serving from the newest run that has them.", ""]
    power = power_studies(results_root)
    power_lines = ["## The regression check's power", "",
                   "Each trial saves three runs in shuffled order (a baseline, an unchanged run, a run with every "
                   "training step slowed by `HARNESS_INJECT_FAULT=slow@...`) and asks `bench-compare` about both "
                   "against the baseline. Rates with Wilson 95% intervals.", ""] if power else []
    power_lines += [f"- {_power_text(p)}: `{p['path'].relative_to(results_root / 'benchmarks').as_posix()}`"
                    for p in power]
    sources = _sources(results_root)
    lines = head + (_runs_markdown(sources, results_root) if any("ratios" in names for *_, names in sources)
                    else ["No such run yet."])
    if power_lines:
        lines += ["", *power_lines]
    return "\n".join(lines) + "\n"


def _runs_markdown(sources: list[tuple[Path, dict, list[str]]], results_root: Path) -> list[str]:
    """The lines of results/benchmarks/README.md that describe the published runs (``_sources``), section by
    section."""

    def run_line(name: str) -> tuple[dict, list[str]]:
        path, s, _ = next(src for src in sources if name in src[2])
        return s, [f"Run: `{path.relative_to(results_root / 'benchmarks').as_posix()}` ({_where(s)}).", ""]

    s, lines = run_line("ratios")
    lines = ["## Side-by-side ratios (interleaved rounds, median of per-round ratios, 95% bootstrap CI)", "", *lines,
             "| ratio | median [95% CI] | CI half-width | rounds | target | verdict | what it is |",
             "|---|---|---|---|---|---|---|"]
    for r in s["ratios"]:
        lines.append(f"| {r['label']} | {r['ratio']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}] | {r['half_width']:.3f} | "
                     f"{r['rounds']} | {_fmt(r['target'], '')} | {r['verdict'] or '—'} | {r['meaning']} |")
    lines += ["", "Verdicts: met when the whole CI is at or above the target, missed when it is entirely below, "
              "else undecided.", "", "## Training step per variant", "", "From the same run.", "",
              "| variant | median step (ms) | CV over rounds | CV over processes | rounds in processes | samples/s | "
              "peak memory of a process (MiB) | load average at end |",
              "|---|---|---|---|---|---|---|---|"]
    for v in s["variants"]:
        lines.append(f"| {v['variant']} | {v['step_ms']:.1f} | {_pct(v['cv'])} | {_pct(v['cv_processes'])} | "
                     f"{v['rounds']} in {_fmt(v['processes'], '')} | {_fmt(v['samples_per_s'], '.1f')} | "
                     f"{_fmt(v['peak_mib'], '.0f')} | {_fmt(v['loadavg_1m'], '.2f')} |")
    if any("mfu" in names for *_, names in sources):
        s, run = run_line("mfu")
        lines += ["", "## MFU", "", *run,
                  "| variant | precision | achieved GFLOP/s | matmul peak GFLOP/s (same precision) | MFU |",
                  "|---|---|---|---|---|"]
        lines += [f"| {m['variant']} | {m['precision']} | {m['achieved_gflops']:.1f} | {m['peak_gflops']:.1f} | "
                  f"{m['mfu']:.3f} |" for m in s["mfu"]]
        lines += ["", f"Peak: {s['mfu'][0]['peak_scope']} (a matmul in the step's precision)."]
    if any("serving" in names for *_, names in sources):
        s, run = run_line("serving")
        lines += ["", "## Serving: swapping, K tasks, merging (bench/test_serving.py), encoding "
                  "(bench/test_inference.py)", "", *run, *[f"- {line}" for line in serving_lines(s["serving"])]]
    lines += ["", "## Every benchmark of those runs: pytest-benchmark's round times", "",
              "A round is one call of the benchmarked function: for test_train_step one whole worker process (its "
              "start and model load included; the step times above come from inside it), for the side-by-side "
              "ratios the whole interleaved series."]
    for path, s, _ in sources:
        lines += ["", f"`{path.relative_to(results_root / 'benchmarks').as_posix()}`:", "",
                  "| benchmark | rounds | median round (s) | CV over rounds |", "|---|---|---|---|"]
        lines += [f"| {r['benchmark']} | {r['rounds']} | {r['median_s']:.4g} | {_pct(r['cv'])} |" for r in s["rounds"]]
    return lines


def replace_block(text: str, block: str, *, begin: str = BEGIN, end: str = END) -> str:
    """text with the part from ``begin`` to ``end`` replaced by block (which carries both markers)."""
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"no '{begin}' ... '{end}' block to replace")
    return text[:start] + block + text[stop + len(end):]
