"""The results site: ``results/site/``, static pages generated from the run files under ``results/``.

``python -m harness publish`` writes it next to ``results/README.md``. It opens from ``file://`` or
any static host: links are relative, data is written into the pages, and the only JavaScript is our
explorer (site/assets/explorer.js) and plotly.js, copied from the installed ``plotly`` package into
site/assets/ (plotly writes its whole library as one file, so nothing loads from a CDN; matplotlib
keeps drawing the PNG and SVG files of each job).

Pages: ``index.html`` (every hardware x dataset x job, with the index's headline figures and how
each was measured), one page per job (its tables, plots and a Pareto explorer of its runs),
``explorer.html`` (every job's runs, filterable by hardware), ``hardware.html`` (``compare`` for
every set of machines that ran the same specs) and ``benchmarks.html`` (each benchmark's median step
time against commit and date, from pytest-benchmark's saved runs in ``results/benchmarks/``).

The output is deterministic (no timestamps, stable order), so a test regenerates it and diffs it.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

from harness import catalog, figures, files, methods, results, stats
from harness.report import cells, publish, tradeoffs

SITE = "site"


def _axes_keys() -> list[str]:
    """The explorer's figures: its y axes (quality) then its x axes (costs), from the figure registry."""
    return [f.key for f in figures.shown_in("y") + figures.shown_in("x")]


# pytest-benchmark's compare-fail threshold the README documents: a run this much slower is marked
THRESHOLD = 0.15

CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.25em .5em}
th{background:#f3f3f3}td{text-align:right}td:first-child{text-align:left}nav a{margin-right:1em}
.plots img{max-width:100%;border:1px solid #ddd;margin:.5em 0}.controls label{margin-right:1em}
.note{color:#555;font-size:.9em}code{background:#f5f5f5;padding:0 .2em}.wide{overflow-x:auto}
"""


def _page(title: str, body: str, *, depth: int = 0, scripts: tuple[str, ...] = ()) -> str:
    up = "../" * depth
    nav = (f'<nav><a href="{up}index.html">Jobs</a><a href="{up}explorer.html">Pareto explorer</a>'
           f'<a href="{up}hardware.html">Hardware</a><a href="{up}benchmarks.html">Benchmark history</a></nav>')
    tags = "".join(f'<script src="{up}assets/{s}"></script>' for s in scripts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<link rel="stylesheet" href="{up}assets/site.css">{tags}</head>\n<body>{nav}\n{body}\n</body></html>\n')


def _markdown(text: str) -> str:
    import markdown
    return markdown.markdown(text, extensions=["tables"])


def _json_script(name: str, value) -> str:
    """Data for the page's scripts, inline (file:// pages cannot fetch JSON files)."""
    text = json.dumps(value, sort_keys=True, allow_nan=False).replace("</", "<\\/")
    return f'<script>window.{name} = {text};</script>'


def _slug(folder: Path, root: Path) -> str:
    return "--".join(folder.relative_to(root).parts)


def _finite(value):
    import math
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def variant_points(folder: Path, root: Path, records: list[dict]) -> list[dict]:
    """One explorer point per variant of a job at its chosen rate (the runs the job's tables report on):
    each figure the mean over its seeds with a 95% CI (Spearman's the cluster bootstrap of the tables,
    the others Student-t over seeds; none with one seed)."""
    import numpy as np
    evalset = results.evaluation_set(records) if records else None
    hw, dataset, job = folder.relative_to(root).parts
    groups: dict[str, list[dict]] = {}
    for r in sorted(records, key=lambda r: (methods.sort_key(r["spec"]), r["spec"]["seed"])):
        groups.setdefault(methods.variant_label(r["spec"]), []).append(r)
    points = []
    for variant, runs in groups.items():
        spec = runs[0]["spec"]
        point = {"id": f"{hw}/{dataset}/{job}/{variant}", "job": f"{hw}/{dataset}/{job}", "hardware": hw,
                 "dataset": dataset, "variant": variant, "method": runs[0]["method"],
                 "precision": spec.get("precision", "fp32"),
                 "rank": (spec.get("lora") or {}).get("r") if methods.get(runs[0]["method"]).ranked else None,
                 "seeds": [r["spec"]["seed"] for r in runs], "learning_rate": spec.get("learning_rate"),
                 "file": f"{hw}/{dataset}/{job}/runs/{runs[0]['run_id']}.json",  # relative to results/
                 "spec": ", ".join(f"{k}={v}" for k, v in sorted(spec.items()) if k not in ("dataset", "seed"))}
        for key in _axes_keys():
            interval = stats.t_interval([_finite(figures.FIGURES[key].value(r)) for r in runs])
            point[key] = _finite(interval["mean"])
            point[f"{key}_ci"] = [_finite(interval["lo"]), _finite(interval["hi"])]
        cos = [np.asarray(r["quality"]["test_cos"]) for r in runs if (r.get("quality") or {}).get("test_cos")]
        if evalset and len(cos) == len(runs):  # the tables' interval: the same cluster bootstrap (variants.point_rows)
            ci = stats.bootstrap_spearman(cos, evalset[0], groups=evalset[1])
            point["spearman_ci"] = [_finite(ci["lo"]), _finite(ci["hi"])]
        points.append(point)
    return points


def tuning_runs(entry: catalog.Job, root: Path) -> list[dict]:
    """Every successful run of a job, one explorer point each, the runs at rates that were not chosen
    included (``chosen`` says which is which): the explorer shows them only on request. The runs are
    the ones catalog.read_job read (``entry.loaded``), not read again."""
    hw, dataset, job = entry.folder.relative_to(root).parts
    chosen = {r["run_id"] for r in entry.records}
    every = [r for r in entry.loaded if r["status"] == "success"]
    runs = []
    for r in sorted(every, key=lambda r: (methods.sort_key(r["spec"]), r["spec"]["learning_rate"], r["spec"]["seed"])):
        run = {"id": f"{hw}/{dataset}/{job}/{r['run_id']}", "job": f"{hw}/{dataset}/{job}", "hardware": hw,
               "dataset": dataset, "variant": methods.variant_label(r["spec"]), "method": r["method"],
               "seed": r["spec"]["seed"], "learning_rate": r["spec"].get("learning_rate"),
               "chosen": r["run_id"] in chosen, "file": f"{hw}/{dataset}/{job}/runs/{r['run_id']}.json"}
        for key in _axes_keys():
            run[key] = _finite(figures.FIGURES[key].value(r))
        runs.append(run)
    return runs


def axes() -> dict:
    def entry(key):
        f = figures.FIGURES[key]
        return {"key": key, "label": f.short, "better": f.better or "lower"}
    return {"costs": [entry(f.key) for f in figures.shown_in("x")],
            "quality": [entry(f.key) for f in figures.shown_in("y")]}


def _explorer(points: list[dict], runs: list[dict], *, depth: int, hardware_filter: bool) -> str:
    base = "../" * (depth + 1)  # from this page up to results/, where the run files are
    return (_json_script("EXPLORER", {"points": points, "runs": runs, "axes": axes(),
                                      "hardwareFilter": hardware_filter, "base": base})
            + '<div class="controls" id="controls"></div><div id="explorer" style="height:520px"></div>'
            + '<p class="note">Each point is one variant of a job at its chosen learning rate: the mean over '
              'its seeds, with the 95% CI as error bars (a baseline has no training cost, so it shows only on '
              'the trainable-parameters axis). The line joins the non-dominated variants (Pareto front: no '
              'other shown variant has a lower or equal cost and a better or equal quality, one of them '
              'strictly); forgetting counts as better when lower. "Show the tuning runs" adds every single run, '
              'those at rates that were not chosen included, in grey: they are not on the front. Hover for the '
              'spec, the seeds and the run file. <button id="download">Download the shown variants (CSV)</button>'
              '</p>')


def job_page(entry: catalog.Job, root: Path, site: Path, runs: list[dict] | None = None) -> tuple[str, list[Path]]:
    """The page of one job. ``runs``: its tuning_runs, where the caller has made them already."""
    folder, records = entry.folder, entry.records
    slug = _slug(folder, root)
    hw, dataset, job = folder.relative_to(root).parts
    images = []
    img_dir = site / "img" / slug
    for png in sorted((folder / "plots").glob("*.png")) if (folder / "plots").is_dir() else []:
        images.append(png)
    command = publish.reproduce_command(records, job, entry.manifest)
    parts = [f"<h1>{html.escape(hw)} / {html.escape(dataset)} / {html.escape(job)}</h1>",
             f"<p>Reproduce: <code>{html.escape(command)}</code></p>"]
    for name in ("recommendation.md", "methods.md", "sweep.md", "tradeoffs.md"):
        if (folder / name).is_file():
            parts += [f'<h2>{name}</h2><div class="wide">', _markdown((folder / name).read_text()), "</div>"]
    parts += ["<h2>Pareto explorer</h2>", _explorer(variant_points(folder, root, records),
                                                      tuning_runs(entry, root) if runs is None
                                                      else runs, depth=1,
                                                      hardware_filter=False)]
    if images:
        parts += ['<h2>Plots</h2><div class="plots">'] + [
            f'<p>{html.escape(p.stem)}<br><img src="../img/{slug}/{p.name}" alt="{html.escape(p.stem)}"></p>'
            for p in images] + ["</div>"]
    written = []
    for png in images:
        img_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, img_dir / png.name)
        written.append(img_dir / png.name)
    return _page(f"{hw} / {dataset} / {job}", "\n".join(parts), depth=1,
                 scripts=("plotly.min.js", "explorer.js")), written


def index_page(jobs: list[catalog.Job], root: Path) -> str:
    rows = []
    for entry in jobs:
        folder, records = entry.folder, entry.records
        hw, dataset, job = folder.relative_to(root).parts
        h = publish.headline(records)
        row = [f'<a href="jobs/{_slug(folder, root)}.html">{html.escape(f"{hw} / {dataset} / {job}")}</a>',
               cells.num(h["baseline_spearman"], ".3f"), cells.num(h["standard_spearman"], ".3f"),
               cells.num(h["lora_spearman"], ".3f"), html.escape(h["lora_label"] or "—"),
               cells.pct(h["lora_time_pct"]), cells.pct(h["lora_memory_pct"]),
               cells.pct(h["lora_energy_pct"]), str(len(records))]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    head = ["job", "Spearman baseline", "standard", "LoRA", "LoRA variant", "LoRA time % of std",
            "LoRA memory % of std", "LoRA energy % of std", "runs"]
    notes = []
    for entry in jobs:
        folder, records = entry.folder, entry.records
        hw, dataset, job = folder.relative_to(root).parts
        notes.append(f"<h3>{html.escape(f'{hw} / {dataset} / {job}')}</h3><ul>"
                     + "".join(f"<li>{html.escape(n)}</li>" for n in tradeoffs.method_notes(records)) + "</ul>")
    body = ("<h1>Published results</h1><p>Generated by <code>python -m harness publish</code> from the run files "
            "under <code>results/</code>; nothing here is typed by hand. When a job holds several LoRA ranks, the "
            "LoRA columns show the lowest rank.</p><table><tr>" + "".join(f"<th>{h}</th>" for h in head)
            + "</tr>" + "".join(rows) + "</table><h2>How each job was measured</h2>" + "".join(notes))
    return _page("Published results", body)


def hardware_page(jobs: list[catalog.Job], root: Path) -> str:
    """compare's tables for every (dataset, job) that more than one machine ran with the same specs."""
    from harness.report import compare
    by_job: dict[tuple[str, str], list[tuple[str, catalog.Job]]] = {}
    for j in jobs:  # the runs each job reports on, as the index shows them (sweep.reported)
        hw, dataset, job = j.folder.relative_to(root).parts
        by_job.setdefault((dataset, job), []).append((hw, j))
    parts = ["<h1>Hardware comparisons</h1><p>For every job that several machines ran with the same specs "
             "(only the hardware differs), the tables of <code>python -m harness compare</code>.</p>"]
    found = 0
    for (dataset, job), same in sorted(by_job.items()):
        if len(same) < 2:
            continue
        # each machine named by its folder (publish --add named it by the hardware id of its runs)
        machines = [(hw, str(j.folder), compare.by_arm(j.records)) for hw, j in same]
        left_out = sum(j.left_out for _, j in same)
        try:
            compare.check_same_specs(machines)
        except compare.CompareError as exc:
            parts.append(f"<h2>{html.escape(f'{dataset} / {job}')}</h2><p class='note'>Not comparable: "
                         f"{html.escape(str(exc).splitlines()[1] if len(str(exc).splitlines()) > 1 else str(exc))}</p>")
            continue
        found += 1
        t = compare.tables(machines)
        parts.append(f"<h2>{html.escape(f'{dataset} / {job}')}: " + " vs ".join(html.escape(m[0]) for m in machines)
                     + "</h2>")
        if left_out:
            parts.append(f"<p class='note'>{html.escape(compare.TUNED_NOTE)}{left_out} in all.</p>")
        for name, title in (("per_arm", "Per arm"), ("ratios", "LoRA against standard, per machine"),
                            ("quality", "Quality (test Spearman)")):
            parts += [f"<h3>{title}</h3>", t[name].to_html(index=False, na_rep="—", float_format=lambda v: f"{v:.4g}")]
    if not found:
        parts.append("<p>No job has been run with the same specs on more than one machine yet.</p>")
    return _page("Hardware comparisons", "\n".join(parts))


def benchmark_history(root: Path) -> list[dict]:
    """Per benchmark, one point per saved pytest-benchmark run: median, quartiles, commit and date."""
    history: dict[str, list[dict]] = {}
    for path in sorted((root / "benchmarks").rglob("*.json")) if (root / "benchmarks").is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        commit = (data.get("commit_info") or {}).get("id") or ""
        when = data.get("datetime") or ""
        for b in data.get("benchmarks", []):
            s = b.get("stats") or {}
            history.setdefault(b["fullname"], []).append(
                {"run": path.name, "commit": commit[:10], "date": when[:19], "median": s.get("median"),
                 "q1": s.get("q1"), "q3": s.get("q3"), "rounds": s.get("rounds")})
    out = []
    for name, runs in sorted(history.items()):
        runs.sort(key=lambda r: (r["date"], r["run"]))
        first = runs[0]["median"]
        for r in runs:
            r["exceeds_threshold"] = bool(first and r["median"] and r["median"] > first * (1 + THRESHOLD))
        out.append({"benchmark": name, "runs": runs, "threshold": first * (1 + THRESHOLD) if first else None})
    return out


def benchmarks_page(root: Path) -> str:
    history = benchmark_history(root)
    body = ("<h1>Benchmark history</h1><p>For each benchmark of <code>pytest bench --benchmark-only</code> saved "
            "under <code>results/benchmarks/</code>: the median round time of each saved run against its commit and "
            f"date, with the quartiles as the spread. The dashed line is the first run's median plus {THRESHOLD:.0%}, "
            "the threshold of <code>--benchmark-compare-fail=mean:15%</code>; runs above it are marked. "
            "<code>python -m harness bench-compare</code> judges two runs from their rounds instead.</p>"
            + _json_script("HISTORY", history) + '<div id="history"></div>')
    return _page("Benchmark history", body, scripts=("plotly.min.js", "explorer.js"))


def build(root: Path, site: Path | None = None, jobs: list[catalog.Job] | None = None) -> list[Path]:
    """Write ``root/site/`` (or ``site``) from the run files under ``root`` (``jobs``: catalog.published_jobs
    of it, where the caller has read them already); returns the files written.

    The new site is built in a folder beside the old one and swapped in when complete, so that a build
    that fails part way leaves the previous site whole (and no half-built folder)."""
    site = site or root / SITE
    building, old = site.with_name(f".{site.name}.building"), site.with_name(f".{site.name}.old")
    for leftover in (building, old):  # from a build killed before it could clean up
        if leftover.exists():
            shutil.rmtree(leftover)
    try:
        written = _build_into(building, root, jobs)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if site.exists():
        site.rename(old)
    building.rename(site)
    shutil.rmtree(old, ignore_errors=True)
    return [site / p.relative_to(building) for p in written]


def _build_into(site: Path, root: Path, jobs: list[catalog.Job] | None) -> list[Path]:
    (site / "assets").mkdir(parents=True)
    (site / "jobs").mkdir()
    written = []

    def write(path: Path, text: str):
        files.write_text_atomic(path, text)
        written.append(path)

    from plotly.offline import get_plotlyjs
    write(site / "assets" / "plotly.min.js", get_plotlyjs())
    write(site / "assets" / "explorer.js", (Path(__file__).parent / "site_explorer.js").read_text())
    write(site / "assets" / "site.css", CSS)
    jobs = catalog.published_jobs(root) if jobs is None else jobs
    all_points, all_runs = [], []
    for entry in jobs:
        folder, records = entry.folder, entry.records
        runs = tuning_runs(entry, root)  # every run file of the job, made once for both explorers
        text, images = job_page(entry, root, site, runs)
        write(site / "jobs" / f"{_slug(folder, root)}.html", text)
        written += images
        all_points += variant_points(folder, root, records)
        all_runs += runs
    write(site / "index.html", index_page(jobs, root))
    body = ("<h1>Pareto explorer: every published variant</h1>"
            + _explorer(all_points, all_runs, depth=0, hardware_filter=True))
    write(site / "explorer.html", _page("Pareto explorer", body, scripts=("plotly.min.js", "explorer.js")))
    write(site / "hardware.html", hardware_page(jobs, root))
    write(site / "benchmarks.html", benchmarks_page(root))
    return written


def front_of(points: list[dict], x: str, y: str) -> list[str]:
    """The point ids (job/run id) on the Pareto front for axes x (a cost) and y (a quality figure), by
    stats.pareto_front; the explorer's JavaScript must draw the same set."""
    shown = [p for p in points if p.get(x) is not None and p.get(y) is not None]
    sign = -1 if figures.FIGURES[y].better == "lower" else 1
    flags = stats.pareto_front([p[x] for p in shown], [sign * p[y] for p in shown])
    return [p["id"] for p, f in zip(shown, flags, strict=True) if f]
