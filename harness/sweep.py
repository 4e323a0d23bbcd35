"""Sweeps over methods, ranks and precisions: the plan and its phases, and which runs a job reports.

A sweep always holds the baseline and the standard arm, under the same matched conditions as the
adapter methods (``--methods``, LoRA by default) at each rank, in each precision (``--precisions``).
Methods without a rank (IA3) run once per seed and precision. With a learning-rate grid, every grid
point runs on the first seed, ends that win are extended, and the other seeds run the rates the rule
needs (run_phases; the rule itself is harness/tuning.py). ``selected`` / ``reported`` say which runs
a job's tables show: each variant at its chosen rate. The rows are harness/report/variants.py, the table
harness/report/sweep_table.py. Everything is recomputed from the run files, so a resumed sweep and
``report`` agree.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

from harness import jobfile, methods, tuning
from harness.spec import RunSpec, SpecError, build_specs


def parse_ints(text: str, *, name: str, minimum: int) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SpecError([f"{name} = {text!r}: expected comma-separated integers, e.g. 1,4,16"]) from None
    bad = [v for v in values if v < minimum or v > 2**32 - 1]
    if not values or bad:
        raise SpecError([f"{name} = {text!r}: each value must be an integer in [{minimum}, {2**32 - 1}]"])
    twice = [v for v in dict.fromkeys(values) if values.count(v) > 1]
    if twice:
        raise SpecError([f"{name} = {text!r}: {', '.join(map(str, twice))} given more than once; give each once"])
    return values


def alpha_for(rank: int, policy: str) -> float:
    if policy == "2r":
        return 2.0 * rank
    kind, _, value = policy.partition(":")
    try:
        if kind == "fixed" and math.isfinite(float(value)) and float(value) > 0:
            return float(value)
    except ValueError:
        pass
    raise SpecError([f"alpha-policy = {policy!r}: expected 2r or fixed:NUMBER (e.g. fixed:16)"])


def parse_methods(text: str) -> list[str]:
    """``lora,dora`` or ``all`` (every adapter method of the registry) -> registry names, in order given."""
    adapter_methods = [n for n, m in methods.METHODS.items() if m.adapter]
    names = [methods.ALIASES.get(v.strip(), v.strip()) for v in text.split(",") if v.strip()]
    if names == ["all"]:
        return adapter_methods
    bad = [n for n in names if n not in adapter_methods]
    if not names or bad:
        raise SpecError([f"methods = {text!r}: {', '.join(bad) or 'none given'}: not an adapter method; choose "
                         f"from {', '.join(adapter_methods)}, or all (baseline and standard are always included)"])
    twice = [n for n in dict.fromkeys(names) if names.count(n) > 1]
    if twice:
        raise SpecError([f"methods = {text!r}: {', '.join(twice)} given more than once; give each once"])
    return names


def parse_precisions(text: str) -> list[str]:
    from harness.spec import PRECISIONS
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in PRECISIONS]
    if not values or bad:
        raise SpecError([f"precisions = {text!r}: each must be one of {', '.join(PRECISIONS)}"])
    if len(set(values)) < len(values):
        raise SpecError([f"precisions = {text!r}: give each precision once"])
    return values


def parse_lr_grid(text: str | None, method_names=("lora",)) -> dict[str, list[float]]:
    """``standard=1e-5,2e-5;lora=1e-4,2e-4`` -> {"standard": [...], "lora": [...]}; ``registry``: each
    swept method's own grid from the method registry (harness/methods.py), standard's included."""
    if not text:
        return {}
    if text.strip() == "registry":
        return {m: list(methods.METHODS[m].lr_grid) for m in ("standard", *method_names)}
    trained = [n for n, m in methods.METHODS.items() if m.trains]
    grid = {}
    for part in text.split(";"):
        arm, _, values = part.partition("=")
        arm = methods.ALIASES.get(arm.strip(), arm.strip())
        if arm not in trained:
            raise SpecError([f"lr-grid: {arm!r} is not a method with a learning rate ({', '.join(trained)}); "
                             "or give lr-grid = registry for every method's own grid"])
        try:
            rates = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise SpecError([f"lr-grid: {part!r}: expected ARM=RATE,RATE,..."]) from None
        if not rates or any(not math.isfinite(r) or r <= 0 for r in rates):
            raise SpecError([f"lr-grid: {part!r}: rates must be finite numbers > 0"])
        grid[arm] = rates
    return grid


def sweep_specs(*, dataset: str, ranks: list[int], seeds: list[int], method_names=("lora",),
                precisions: list[str] | None = None, alpha_policy: str = "2r",
                targets: tuple[str, ...] | str = ("query", "value"), lr_grid: dict[str, list[float]] | None = None,
                profile: str = "adr", config_path=None, overrides=()) -> list[RunSpec]:
    """Every spec of the sweep's first phase (all of it without an lr grid). ``precisions`` None keeps
    the precision the spec already has (its default, or --set precision=...)."""
    lr_grid = lr_grid or {}
    base, standard, *adapters = build_specs(arms=["baseline", "standard", *method_names], dataset=dataset,
                                            profile=profile, config_path=config_path, overrides=overrides)
    specs = [dataclasses.replace(base, seed=seed) for seed in seeds]
    # With a grid, only the first seed runs now (every rate); second_phase() adds the other seeds
    # at the chosen rate once the first seed has finished.
    for seed in seeds[:1] if lr_grid else seeds:
        for precision in precisions or [standard.precision]:
            specs += [dataclasses.replace(standard, seed=seed, precision=precision, learning_rate=rate)
                      for rate in lr_grid.get("standard", [standard.learning_rate])]
            for spec in adapters:
                for r in ranks if spec.method.ranked else [spec.lora.r]:
                    adapter = dataclasses.replace(spec.lora, r=r, target_modules=tuple(targets),
                                                  alpha=alpha_for(r, alpha_policy) if spec.method.ranked
                                                  else spec.lora.alpha)
                    specs += [dataclasses.replace(spec, seed=seed, precision=precision, learning_rate=rate,
                                                  lora=adapter)
                              for rate in lr_grid.get(spec.arm, [spec.learning_rate])]
    return specs


def group_key(spec: dict) -> str:
    """The sweep point a run belongs to: its variant (method, rank, precision; methods.variant_label)."""
    return methods.variant_label(spec)


def chosen_rates(records: list[dict], selection: tuning.Selection | None = None) -> dict[str, float]:
    """Per sweep point, its chosen learning rate under the job's rule (harness/rates.py; without one,
    the rule of folders made before rules were recorded: the best validation Spearman on the first
    seed). A point whose rule has not chosen yet (its screening is unfinished) is left out."""
    choices = (selection or tuning.Selection()).choose(records)
    return {point: c.rate for point, c in choices.items() if c.rate is not None}


def _first_seed_rates(records: list[dict]) -> dict[str, list[float]]:
    """Per sweep point, the sorted rates run on its first seed, diverged runs included (a rate at which
    training diverged was tried: the grid does not extend past it again). Other failures (a crash, a
    kill, a timeout) say nothing about the rate; the sweep retries them. The runs counted are those of
    tuning.points, which the rate rule reads."""
    return {name: sorted(rate for rate, by_seed in point.runs.items() if point.first_seed in by_seed)
            for name, point in tuning.points(records).items()}


def _first_seed_specs(specs: list[RunSpec]) -> list[RunSpec]:
    """The trained specs of the sweep's first seed: the ones that carry the learning-rate grid."""
    trained = [s for s in specs if methods.trains(s.arm)]
    first_seed = min((s.seed for s in trained), default=None)
    return [s for s in trained if s.seed == first_seed]


def _among(rate: float, rates: list[float]) -> bool:
    """Whether a learning rate is one of ``rates`` (up to float rounding: 1.25e-3 written back as text)."""
    return any(math.isclose(rate, t, rel_tol=1e-9) for t in rates)


def planned_grids(specs: list[RunSpec]) -> dict[str, list[float]]:
    """Per sweep point, the learning rates its first seed is to run: the grid the command asked for.
    The sweep records it in the job manifest (jobfile.write), so that a table made while the
    grid is still running (or after it was stopped) can say so (grid_edges)."""
    grids = defaultdict(set)
    for spec in _first_seed_specs(specs):
        grids[group_key(spec.to_dict())].add(spec.learning_rate)
    return {point: sorted(rates) for point, rates in grids.items()}


def grid_edges(records: list[dict], planned: dict[str, list[float]] | None = None,
               selection: tuning.Selection | None = None, extend: int | None = None) -> dict[str, str]:
    """Sweep points whose chosen rate cannot be taken as the best of a finished grid: "K of N rates run"
    where ``planned`` (the manifest's grids) names rates that its first seed has not run yet, "screening
    unfinished: ..." where the rule's screening has runs to come, "extension unfinished: R to run" where
    the sweep (``--lr-extend`` ``extend``, from the manifest) would still try a rate R past a winning end
    of the grid (pending_extensions), else "top of grid" or "bottom of grid" where the chosen rate is an
    end of the rates tried.

    The validation choice cannot see past the grid, so a rate beyond that end might do better; the
    tables say so instead of presenting the end of the grid as the method's best rate."""
    tried = _first_seed_rates(records)
    choices = (selection or tuning.Selection()).choose(records)
    pending = pending_extensions(records, planned, selection, extend) if extend and planned else {}
    edges = {}
    for point, choice in choices.items():
        chosen, grid = choice.rate, tried.get(point, [])
        asked = (planned or {}).get(point, [])
        run = [r for r in asked if _among(r, grid)]
        if len(run) < len(asked):
            edges[point] = f"{len(run)} of {len(asked)} rates run"
        elif choice.pending:
            edges[point] = f"{SCREENING}: {choice.pending}"
        elif point in pending:
            edges[point] = f"{EXTENDING}: {pending[point]:g} to run"
        elif len(grid) >= 2 and chosen == grid[-1]:
            edges[point] = "top of grid"
        elif len(grid) >= 2 and chosen == grid[0]:
            edges[point] = "bottom of grid"
    return edges


SCREENING = "screening unfinished"
EXTENDING = "extension unfinished"


def grid_unfinished(edge: str | None) -> bool:
    """Whether a grid_edges mark says the point's grid, its screening on the other seeds or its extension
    past a winning end has runs still to run (its rate is not tuned yet)."""
    return bool(edge) and (edge.endswith(" rates run") or edge.startswith((SCREENING, EXTENDING)))


def unfinished_grids(edges: dict[str, str | None], points) -> str:
    """Which of ``points`` have an unfinished grid (grid_edges' marks in ``edges``), as the tables say
    it: "point: K of N rates run", joined by "; "; "" where every grid is finished."""
    return "; ".join(f"{p}: {edges[p]}" for p in dict.fromkeys(points) if grid_unfinished(edges.get(p)))


ENDS = ("top of grid", "bottom of grid")


def _steps_past(tried: list[float], planned: list[float]) -> int:
    """How many steps past the planned grid the rates tried have gone, both ends together (the extensions
    so far): the chain of rates pending_extensions proposes from each end (5e-4 after 2e-4, 5e-4, then
    1.25e-3, ...), as far as it was tried. A headroom probe beyond the grid (tuning.headroom: 1.5 times a
    candidate, between two steps) is not a step."""
    planned = sorted(planned)
    if not planned:
        return 0
    if len(planned) < 2:
        return sum(1 for r in tried if not _among(r, planned))
    steps = 0
    for prev, cur in ((planned[-2], planned[-1]), (planned[1], planned[0])):
        while _among(nxt := float(f"{cur * cur / prev:.3g}"), tried):
            steps, prev, cur = steps + 1, cur, nxt
    return steps


def pending_extensions(records: list[dict], planned: dict[str, list[float]],
                       selection: tuning.Selection | None = None, limit: int | None = None) -> dict[str, float]:
    """Per point of ``planned`` (its first seed's grid), the rate one step past the end of the rates tried
    where that end wins, as extend_grid proposes it: the first seed's best, and with ``selection`` (a rule
    over several seeds) also that rule's choice; the step is the ratio of the grid's two rates at that end
    (5e-4 after 2e-4, 5e-4 gives 1.25e-3). ``limit`` (``--lr-extend N``): at most N steps past the point's
    planned grid, both ends together. What the sweep would run next, so that a table made before it ran can
    say the point's grid is unfinished (grid_edges)."""
    tried = _first_seed_rates(records)
    edges = {p: e for p, e in grid_edges(records).items() if e in ENDS}
    if selection is not None and selection.rule != "first-seed":
        ruled = grid_edges(records, selection=tuning.Selection(selection.rule, (), selection.screen))
        edges.update({p: e for p, e in ruled.items() if e in ENDS})
    out = {}
    for point, edge in edges.items():
        grid = tried.get(point, [])
        if point not in planned or (limit is not None and _steps_past(grid, planned[point]) >= limit):
            continue
        rate = grid[-1] * grid[-1] / grid[-2] if edge == "top of grid" else grid[0] * grid[0] / grid[1]
        rate = float(f"{rate:.3g}")
        if not _among(rate, grid):
            out[point] = rate
    return out


def extend_grid(specs: list[RunSpec], records: list[dict], selection: tuning.Selection | None = None,
                limit: int | None = None) -> list[RunSpec]:
    """One more first-seed run per point whose chosen rate is an end of the rates tried: one step past
    that end (pending_extensions). Run them, then call again to go on while the new end keeps winning.

    The choice is the first seed's best; with ``selection`` (a rule over several seeds, called once its
    screening is done), also that rule's choice: an end that wins on the mean over the seeds is extended
    like one that wins on the first seed, and the new rate then goes through the screening like any
    other (it runs on the other seeds where it is among the first seed's best). ``limit`` (``--lr-extend
    N``): at most N steps past the point's planned grid, both ends together (as many rounds as the
    first-seed phase ran before the mean rule's step existed, so a study resumed across that change plans
    the same runs). Deterministic from the records, so a resumed sweep proposes the same runs."""
    pending = pending_extensions(records, planned_grids(specs), selection, limit)
    out, seen = [], set()
    for spec in _first_seed_specs(specs):
        point = group_key(spec.to_dict())
        if point in pending and point not in seen:
            seen.add(point)
            out.append(dataclasses.replace(spec, learning_rate=pending[point]))
    return out


def second_phase(specs: list[RunSpec], records: list[dict], seeds: list[int]) -> list[RunSpec]:
    """After tuning: the remaining seeds of each point at its chosen rate."""
    chosen = chosen_rates(records)
    out = []
    first = [s for s in specs if s.seed == seeds[0] and methods.trains(s.arm)]
    seen = set()
    for spec in first:
        point = group_key(spec.to_dict())
        if point in seen or point not in chosen:
            continue
        seen.add(point)
        out += [dataclasses.replace(spec, seed=s, learning_rate=chosen[point]) for s in seeds[1:]]
    return out


def _extend(specs: list[RunSpec], records: list[dict], run, log, *, limit: int,
            selection: tuning.Selection | None = None) -> list[dict]:
    """Extend the grids (extend_grid) until no chosen rate is an end of its grid or each has gone
    ``limit`` steps past it; a round whose runs all failed for another reason than their rate (a crash:
    they are proposed again) ends it."""
    proposed = None
    while limit and (more := extend_grid(specs, records, selection, limit)) and more != proposed:
        proposed = more
        by = "on the first seed" if selection is None else f"on the first seed or by the {selection.rule} rule"
        log(f"best validation rate {by} at an end of the grid; one step past it: "
            + ", ".join(f"{s.label} at {s.learning_rate:g}" for s in more))
        records = records + run(more)
    return records


def run_phases(specs: list[RunSpec], run, *, seeds: list[int], grid, extend: int,
               selection: tuning.Selection | None, log) -> list[dict]:
    """A sweep's phases in order, each from the records of the ones before: every spec (with a rate
    grid: the grid on the first seed); up to ``extend`` steps past a grid's end where its end won; then
    the other seeds: the first seed's chosen rate (rule first-seed), or its best stable rates until
    every variant's candidates have run on every seed, and the headroom probes of candidates below an
    unstable rate (rule mean, screening: tuning.screening_runs). Where the mean rule then
    chooses an end of the rates tried, that end is extended too (within the same ``extend`` steps) and
    the screening goes on. ``run`` runs a list of specs and returns their records (runner.run_all with
    the job's options)."""
    records = run(specs)
    limit = extend if grid else 0
    records = _extend(specs, records, run, log, limit=limit)
    if grid and len(seeds) > 1 and selection.rule == "first-seed":
        later = second_phase(specs, records, seeds)
        log(f"learning rates chosen on validation of seed {seeds[0]}: {chosen_rates(records)}; {len(later)} more runs")
        records += run(later)
    proposed = None
    while grid and len(seeds) > 1 and selection.rule == "mean":
        # screening: the first seed's best stable rates on the other seeds, until every variant's
        # candidates have run everywhere (one that proves unstable gives its place to the next)
        later = tuning.screening_runs(specs, records, seeds, selection.screen)
        if later and later != proposed:
            proposed = later
            log(f"screening: the best {selection.screen} stable rates of seed {seeds[0]} on the other seeds, then "
                f"the headroom probe of a best rate below an unstable one; {len(later)} more runs: "
                + ", ".join(f"{s.label} at {s.learning_rate:g} seed {s.seed}" for s in later))
            records += run(later)
            continue
        if later:  # the same runs failed again (not for their rate)
            break
        grown = _extend(specs, records, run, log, limit=limit, selection=selection)
        if len(grown) == len(records):
            break
        records = grown
    if selection is not None and len(seeds) > 1:
        log(f"learning rates chosen ({selection.rule}): {chosen_rates(records, selection)}")
    return records


def selected(records: list[dict], selection: tuning.Selection | None = None) -> list[dict]:
    """The successful runs a sweep reports on: each point at its chosen learning rate (the job's rule)."""
    chosen = chosen_rates(records, selection)
    return [r for r in records if r["status"] == "success" and
            (not methods.trains(r["method"]) or chosen.get(group_key(r["spec"])) == r["spec"]["learning_rate"])]


def is_sweep(records: list[dict], out=None, *, manifest: jobfile.Manifest = jobfile.NOT_GIVEN) -> bool:
    """Whether a folder gets the sweep's files: its manifest (``manifest``, else read from ``out``)
    says a sweep ran there, or its records hold several ranks or seeds (folders made before manifests),
    or one arm at several learning rates (a rate grid, whatever ran it: a mean over it means nothing)."""
    if jobfile.says(jobfile.resolved(out, manifest), "sweep"):
        return True
    ranks = {r["spec"]["lora"]["r"] for r in records if r["spec"].get("lora")}
    seeds = {r["spec"]["seed"] for r in records}
    rates = defaultdict(set)
    for r in records:
        if r["status"] == "success" and methods.trains(r["method"]):
            rates[group_key(r["spec"])].add(r["spec"]["learning_rate"])
    return len(ranks) > 1 or len(seeds) > 1 or any(len(v) > 1 for v in rates.values())


def job_selection(out=None, manifest: jobfile.Manifest = jobfile.NOT_GIVEN) -> tuning.Selection:
    """The rule that chooses a job folder's rates, from its manifest (``manifest``, else read from ``out``)."""
    return tuning.Selection.from_manifest(jobfile.resolved(out, manifest))


def reported(records: list[dict], out=None, *, manifest: jobfile.Manifest = jobfile.NOT_GIVEN) -> list[dict]:
    """The successful runs a folder's tables report on, the one rule that publish, compare and the site
    share (report applies it too, keeping the failed runs beside them): in a sweep (is_sweep) each point
    at its chosen learning rate only (the job's rule: job_selection), else all of them. ``records`` may
    hold failed runs: a diverged one makes its rate unstable."""
    ok = [r for r in records if r["status"] == "success"]
    manifest = jobfile.resolved(out, manifest)
    return selected(records, job_selection(manifest=manifest)) if is_sweep(records, out, manifest=manifest) else ok
