"""Published results: ``results/<hardware-id>/<dataset>/<job>/`` and a generated index.

``publish --add OUT --job NAME`` copies a finished output folder into place (run files, tables,
plots) under the hardware id derived from its records; ``publish`` alone regenerates from the run
files found there: ``results/README.md`` (the index, with each job's reproduce command and generated
recommendation), ``results/ADR-001-comparison.md`` (with the deployment rows from the published bench
run), ``results/benchmarks/README.md`` and the README's bench-figures block (harness/report/benchreport.py),
and the results site (harness/report/site.py).
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

from harness import figures, files, jobfile, methods, results
from harness.catalog import IN_PROGRESS, Job, hardware_id, published_jobs, safe_destination, studies_in_progress
from harness.files import slug
from harness.report import cells, tradeoffs

ADR_001 = {  # ADR-001's own figures (shared/reference/ADR-001-lora-vs-standard.md)
    "baseline_spearman": -0.219, "standard_spearman": 0.853, "lora_spearman": 0.827,
    "lora_trainable_params": 294_000, "standard_trainable_params": 22_700_000,
    "standard_minutes": 45, "lora_minutes": 38,
}


def add(out: Path, *, results_root: Path, job: str) -> Path:
    """Copy a run/sweep output folder into results/<hardware-id>/<dataset>/<job>/."""
    records = results.load_runs(out)
    ok = [r for r in records if r["status"] == "success"]
    if not ok:
        raise ValueError(f"publish --add {str(out)!r}: no successful run records in {results.runs_dir(out)}")
    ids = {hardware_id(r["environment"]) for r in ok}
    datasets = {slug(results.data_version(r)) for r in ok}
    if len(ids) != 1 or len(datasets) != 1:
        raise ValueError(f"publish --add {str(out)!r}: mixes hardware {sorted(ids)} or datasets {sorted(datasets)}")
    dest = safe_destination(results_root, ids.pop(), datasets.pop(), slug(job), what=f"publish --add {str(out)!r}")
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; remove it first to republish (results are never "
                              "overwritten silently)")
    files.copy_tree_new(out, dest, ignore=shutil.ignore_patterns("superseded", ".cache", ".lock"))
    return dest


def _pct(a, b):
    return None if a is None or b in (None, 0) else 100.0 * a / b


def _gain_pct(h: dict):
    """LoRA's share of standard's Spearman gain over the baseline, in %, from a headline; None where
    standard gained nothing to share (tradeoffs.GAIN_FLOOR)."""
    lora, std, base = h.get("lora_spearman"), h.get("standard_spearman"), h.get("baseline_spearman")
    if None in (lora, std, base) or not std - base > tradeoffs.GAIN_FLOOR:
        return None
    return 100 * (lora - base) / (std - base)


def headline(records: list[dict]) -> dict:
    """The figures of the index for one job: arms' Spearman and LoRA's costs relative to standard."""
    frame = tradeoffs.runs_frame(records)
    table = tradeoffs.tradeoff_table(frame)

    def cell(key, column):
        metric = figures.FIGURES[key].label  # the table's rows are the figures' labels
        if column not in table.columns or metric not in table.index:  # no record measured it
            return None
        value = table.loc[metric, column]
        return None if value != value else float(value)  # NaN -> None

    ok = [r for r in records if r["status"] == "success"]
    std = tradeoffs.reference_label(ok)
    # the LoRA columns: the first lora variant in table order (the lowest rank, fp32 first)
    lora = next((label for label in tradeoffs.label_order(ok)
                 if any(r["method"] == "lora" and tradeoffs.label_of(r) == label for r in ok)), None)
    return {
        "baseline_spearman": cell("spearman", "baseline"),
        "standard_spearman": cell("spearman", std),
        "lora_label": lora, "lora_spearman": cell("spearman", lora) if lora else None,
        "lora_time_pct": _pct(cell("train_wall_s", lora), cell("train_wall_s", std)),
        "lora_memory_pct": _pct(cell("peak_memory_mib", lora), cell("peak_memory_mib", std)),
        "lora_energy_pct": _pct(cell("energy_wh", lora), cell("energy_wh", std)),
        "lora_trainable_params": cell("trainable_params", lora) if lora else None,
        "standard_trainable_params": cell("trainable_params", std),
    }


def _manifest_options(manifest: dict | None) -> str:
    """jobfile.SWEEP_OPTIONS as the latest sweep command in the job manifest (job.json) gave them
    (jobfile.sweep_options), as command-line options."""
    given = jobfile.sweep_options(manifest)
    if given is None:
        return ""
    if given.get("lr_grid") is not None and given.get("lr_select") is None:  # a folder keeps its rule (job.json)
        from harness import tuning
        rule = tuning.Selection.from_manifest(manifest).rule
        given["lr_select"] = None if rule == tuning.DEFAULT_RULE else rule
    return "".join(f" --{option.replace('_', '-')} {shlex.quote(str(given[option]))}"
                   for option in jobfile.SWEEP_OPTIONS if given.get(option) is not None)


def reproduce_command(records: list[dict], job: str, manifest: dict | None = None) -> str:
    """The command that reproduces a job, from the specs its records carry, and for a sweep, the
    learning-rate tuning options of its manifest's latest sweep command (``manifest``: its job.json)."""
    first = records[0]
    # the --dataset value: a schema-1 record's "dating" is today's dating-v1
    dataset = results.data_version(first) if first.get("schema_version") == 1 else first["spec"]["dataset"]
    seeds = ",".join(map(str, sorted({r["spec"]["seed"] for r in records})))
    # a sweep: its manifest says so (as sweep.is_sweep reads it), or (folders made before manifests) its
    # records evaluate during training, which only the sweep asks for
    if jobfile.says(manifest, "sweep") or any(r["spec"].get("eval_every_steps") for r in records):
        options = _manifest_options(manifest)
        return " && ".join(
            f"python -m harness sweep --dataset {dataset}{_sweep_options(swept, ranks, precisions)}{options} "
            f"--seeds {seeds} --out out/{dataset}-{job}" for (swept, ranks), precisions in _sweeps(records))
    arms = ",".join(dict.fromkeys(r["method"] for r in sorted(records, key=lambda r: methods.sort_key(r["spec"]))))
    return (f"python -m harness run --dataset {dataset} --arms {arms} --profile adr --seeds {seeds}"
            f"{_set_options(records, dataset)} --out out/{dataset}-{job}")


def _sweeps(records: list[dict]) -> list[tuple[tuple[tuple[str, ...], tuple[int, ...]], list[str]]]:
    """The sweeps a job's records came from: precisions that swept the same methods at the same ranks
    share one sweep (``--precisions fp32,bf16``); a precision that swept fewer (bf16 on LoRA only,
    beside every method in fp32) gets its own. A precision holding only the reference arm (no method
    swept yet: a study stopped early) goes with the first sweep. Each: ((methods, ranks), precisions)."""
    ordered = sorted(records, key=lambda r: methods.sort_key(r["spec"]))
    by_precision: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {}
    for precision in dict.fromkeys(r["spec"].get("precision", "fp32") for r in ordered if methods.trains(r["method"])):
        mine = [r for r in ordered if r["spec"].get("precision", "fp32") == precision]
        swept = tuple(m for m in dict.fromkeys(r["method"] for r in mine) if m not in ("baseline", "standard"))
        ranks = tuple(sorted({r["spec"]["lora"]["r"] for r in mine
                              if r["spec"].get("lora") and methods.get(r["method"]).ranked}))
        by_precision[precision] = (swept, ranks)
    groups: dict[tuple, list[str]] = {}
    for precision, key in by_precision.items():
        if key[0]:
            groups.setdefault(key, []).append(precision)
    if not groups:
        return [(((), ()), list(by_precision) or ["fp32"])]
    first = next(iter(groups))
    groups[first] += [p for p, key in by_precision.items() if not key[0]]
    return list(groups.items())


def _sweep_options(swept: tuple[str, ...], ranks: tuple[int, ...], precisions: list[str]) -> str:
    extra = "" if swept in (("lora",), ()) else f" --methods {','.join(swept)}"
    extra += f" --ranks {','.join(map(str, ranks))}" if ranks else ""
    return extra + ("" if precisions == ["fp32"] else f" --precisions {','.join(precisions)}")


# Fields the command line carries by other means (--arms, --seeds, --dataset, --ranks) or per arm.
_NOT_SET = {"arm", "seed", "dataset", "lora", "learning_rate"}


def _set_options(records: list[dict], dataset: str) -> str:
    """``--set KEY=VALUE`` for every spec field on which the records differ from what the command
    would build by itself (precision=bf16, say), so the reproduce command reproduces them."""
    from harness.spec import SpecError, build_specs
    sets: dict[str, object] = {}
    built_for: dict[str, dict | None] = {}  # what the command builds, once per method
    for r in records:
        if r["method"] not in built_for:
            try:
                (default,) = build_specs(arms=[r["method"]], dataset=dataset, profile="adr")
                built_for[r["method"]] = json.loads(json.dumps(default.to_dict()))  # tuples as records hold them
            except SpecError:
                built_for[r["method"]] = None
        built = built_for[r["method"]]
        if built is None:
            continue
        sets.update({k: v for k, v in r["spec"].items() if k not in _NOT_SET and k in built and built[k] != v})
    return "".join(f" --set {k}={_toml(v)}" for k, v in sorted(sets.items()))


def _toml(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _recommendation(folder: Path) -> str | None:
    """The recommendation sentence of a job (its recommendation.md, which report writes)."""
    path = folder / "recommendation.md"
    if not path.is_file():
        return None
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("**")]
    return lines[0].strip("*") if lines else None


def index_markdown(results_root: Path, jobs: list[Job] | None = None) -> str:
    lines = ["# Published results", "",
             "Generated by `python -m harness publish` from the run files below; do not edit by hand.", "",
             "| hardware | dataset | job | Spearman baseline | standard | LoRA | LoRA arm | LoRA time % of std | "
             "LoRA memory % of std | LoRA energy % of std | trainable params (LoRA / std) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    details = []
    for entry in published_jobs(results_root) if jobs is None else jobs:
        folder, records, manifest = entry.folder, entry.records, entry.manifest
        hw, dataset, job = folder.relative_to(results_root).parts
        h = headline(records)
        lines.append(f"| {hw} | {dataset} | [{job}]({hw}/{dataset}/{job}/tradeoffs.md) | "
                     f"{cells.num(h['baseline_spearman'], '.3f')} | {cells.num(h['standard_spearman'], '.3f')} | "
                     f"{cells.num(h['lora_spearman'], '.3f')} | "
                     f"{h['lora_label'] or '—'} | {cells.pct(h['lora_time_pct'])} | "
                     f"{cells.pct(h['lora_memory_pct'])} | {cells.pct(h['lora_energy_pct'])} | "
                     f"{cells.num(h['lora_trainable_params'], ',.0f')} / "
                     f"{cells.num(h['standard_trainable_params'], ',.0f')} |")
        command = reproduce_command(records, job, manifest)
        details += [f"### {hw} / {dataset} / {job}", "", f"Reproduce: `{command}`", ""]
        advice = _recommendation(folder)
        if advice:
            details += [f"Recommendation ([generated]({hw}/{dataset}/{job}/recommendation.md), no constraints): "
                        f"{advice}", ""]
        tables = [name for name in ("methods.md", "sweep.md") if (folder / name).is_file()]
        if h["lora_label"]:
            where = f"; every variant is in {' and '.join(tables)}" if tables else ""
            details += [f"The LoRA columns above show **{h['lora_label']}**: the lowest-rank LoRA variant of this "
                        f"job, fp32 first, at the rate its tables report{where}.", ""]
        details += [f"- {n}" for n in tradeoffs.method_notes(records)] + [""]
    lines += ["", "When a job holds several LoRA ranks, the LoRA columns show the lowest rank; see its sweep.md.",
              "Energy is labelled an estimate wherever codecarbon had no hardware counters.", "",
              "## How each job was measured", ""] + details
    running = studies_in_progress(results_root)
    if running:
        lines += ["## Studies in progress (not published yet)", "",
                  "Their run files are committed as they land; their tables come when the last run is in.", ""]
        lines += [f"- [{folder.relative_to(results_root).as_posix()}]({folder.relative_to(results_root).as_posix()}/"
                  f"{IN_PROGRESS}): {n} run files so far" for folder, n in running] + [""]
    lines += ["See also [ADR-001-comparison.md](ADR-001-comparison.md).", ""]
    return "\n".join(lines)


def adr_comparison_markdown(results_root: Path, jobs: list[Job] | None = None) -> str:
    """ADR-001's figures next to ours, row by row, for every published dating/adr job."""
    lines = ["# ADR-001 against our measurements", "",
             "Generated by `python -m harness publish`. ADR-001's figures come from its own table; ours from the "
             "run files of each `dating/adr` job. Our dating data is our own generator (held-out phrasings), not the "
             "ADR team's dating set, so quality compares in kind, not in value.", ""]
    for entry in published_jobs(results_root) if jobs is None else jobs:
        folder, records = entry.folder, entry.records
        hw, dataset, job = folder.relative_to(results_root).parts
        if not dataset.startswith("dating") or job != "adr":
            continue
        h = headline(records)
        lora = next((r for r in records if r["method"] == "lora"), None)
        standard = next((r for r in records if r["method"] == "standard"), None)
        inert = sum((figures.lookup(standard, "params.inert_params") or {}).values()) if standard else 0
        requires = cells.num(figures.lookup(standard, "params.requires_grad_params"), ",.0f")
        modules = ", ".join(figures.lookup(standard, "params.inert_params") or {})
        standard_note = ("agrees (this record counts requires_grad)" if not inert else
                         f"ADR counts requires_grad ({requires}); {cells.num(inert, ',.0f')} of them ({modules}) never "
                         "receive a gradient under mean pooling")
        expected = figures.lookup(lora, "params.lora_params_expected") if lora else None
        speed = _pct(h["lora_time_pct"], 100)
        adr_speed = 100 * ADR_001["lora_minutes"] / ADR_001["standard_minutes"]
        lines += [f"## {hw}, {dataset}", "", "| figure | ADR-001 | measured here | note |", "|---|---|---|---|",
                  f"| LoRA trainable parameters (r=8 on query, value) | 294K (1.3%) | "
                  f"{cells.num(h['lora_trainable_params'], ',.0f')} | ADR's figure cannot be right for its stated "
                  "config: "
                  f"6 layers x 2 modules x r (384 + 384) = {cells.num(expected, ',.0f')}; 294,912 would be r=32 on "
                  "query/value or r=16 on query/key/value/output |",
                  f"| standard trainable parameters | 22.7M | {cells.num(h['standard_trainable_params'], ',.0f')} | "
                  f"{standard_note} |",
                  f"| LoRA train time, % of standard | {adr_speed:.0f}% (38 vs 45 min, M2 Mac) | "
                  f"{cells.pct(speed)} | ours: train_wall_s on this machine, same step budget |",
                  f"| baseline Spearman | {ADR_001['baseline_spearman']} | "
                  f"{cells.num(h['baseline_spearman'], '.3f')} | "
                  "both inverted (negative) |",
                  f"| standard Spearman | {ADR_001['standard_spearman']} | "
                  f"{cells.num(h['standard_spearman'], '.3f')} | "
                  "ours on held-out phrasings of our generator |",
                  f"| LoRA Spearman | {ADR_001['lora_spearman']} (training metric) | "
                  f"{cells.num(h['lora_spearman'], '.3f')} (test) | "
                  "ADR compared a training figure with a test figure; ours are both test |",
                  f"| LoRA against standard (Spearman) | 96.9% of standard's Spearman | "
                  f"{cells.pct(_gain_pct(h))} of standard's gain over the baseline | the ADR divided one "
                  "Spearman by another; Spearman is signed (both baselines are negative), so ours is the share "
                  "of the gain, (LoRA - baseline) / (standard - baseline) |", ""]
    return "\n".join(lines + deployment_rows(results_root))


def deployment_rows(results_root: Path) -> list[str]:
    """ADR-001's deployment claims against the published benchmark run's serving figures
    (bench/test_serving.py, bench/test_inference.py; harness/report/benchreport.py reads them)."""
    from harness.report import benchreport
    path = benchreport.section_runs(results_root).get("serving")
    s = benchreport.summary(path) if path else {}
    serving = s.get("serving") or {}
    lines = ["## Deployment claims", ""]
    if not serving.get("swap"):
        return lines + ["Not measured in the published benchmark run yet: `pytest bench --benchmark-only "
                        "bench/test_serving.py bench/test_inference.py --benchmark-save-data` measures them, "
                        "`python -m harness publish` fills this table.", ""]
    swap, memory, encode = serving["swap"], serving.get("memory") or {}, serving.get("encode") or {}

    def ms(op):
        v = swap.get(op)
        return "—" if v is None else f"{v['median_ms']:.3g} ms [{v['lo_ms']:.3g}, {v['hi_ms']:.3g}]"

    ratio = (serving.get("reload_ratios") or {}).get("activate")
    adapters, full = memory.get("adapters"), memory.get("full")
    lines += [f"From the benchmark run `{path.relative_to(results_root.parent).as_posix()}` "
              f"({benchreport._where(s)}; bench/test_serving.py: LoRA r=8 adapters of the bench's model, "
              "median [95% CI]).",
              "", "| claim in ADR-001 | measured here | how |", "|---|---|---|",
              f"| \"swap adapters at inference without reloading the base model\" | activate a resident adapter: "
              f"{ms('activate')}; load one from disk onto the loaded base: {ms('load-adapter')}; reload a full model: "
              f"{ms('load-full')}" + (f" ({ratio[0]:.3g} [{ratio[1]:.3g}, {ratio[2]:.3g}] times the activation)"
                                      if ratio else "") + " | until the new model's first embedding, rounds "
              "interleaved |",
              "| \"separate LoRA adapters per category\" (multi-task memory) | " + (
                  f"one base with K adapters: {adapters['per_task_mib']:.3g} MiB per adapter; K full models: "
                  f"{full['per_task_mib']:.3g} MiB per model" if adapters and full else "—") +
              " | RSS of one fresh process per K (K = 1, 2, 4, 8), slope over K |",
              "| \"merge post-training (no runtime overhead)\" | " + (
                  ", ".join(f"{k} {cells.num(v, '.0f')} sentences/s" for k, v in encode.items()) or "—") +
              (f"; the merge itself {serving['merge_ms']:.3g} ms" if serving.get("merge_ms") is not None else "") +
              " | encoding the dating test texts, single process |", ""]
    return lines


def write_index(results_root: Path, jobs: list[Job] | None = None) -> list[Path]:
    """results/README.md, the ADR page, the run log of every study's PROVENANCE.md that has run_log's
    markers (published or in progress) and, where results/benchmarks/ exists, its README and the
    figures block of the repository README (between benchreport's markers, where it has them).
    ``jobs``: published_jobs(results_root), where the caller has read them already."""
    from harness.report import benchreport, run_log
    jobs = published_jobs(results_root) if jobs is None else jobs
    paths = [results_root / "README.md", results_root / "ADR-001-comparison.md"]
    files.write_text_atomic(paths[0], index_markdown(results_root, jobs))
    files.write_text_atomic(paths[1], adr_comparison_markdown(results_root, jobs))
    paths += [run_log.update(folder) for folder in run_log.folders(results_root)]  # studies' logs, pilots' curves
    if (results_root / "benchmarks").is_dir():
        paths.append(results_root / "benchmarks" / "README.md")
        files.write_text_atomic(paths[-1], benchreport.markdown(results_root))
        readme = results_root.parent / "README.md"
        if readme.is_file() and benchreport.BEGIN in (text := readme.read_text(encoding="utf-8")):
            files.write_text_atomic(readme, benchreport.replace_block(text, benchreport.readme_block(results_root)))
            paths.append(readme)
    return paths
