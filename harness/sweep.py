"""Sweeps over methods, ranks and precisions: the specs, learning-rate choice on validation, the table.

A sweep always holds the baseline and the standard arm, under the same matched conditions as the
adapter methods (``--methods``, LoRA by default) at each rank, in each precision (``--precisions``).
Methods without a rank (IA3) run once per seed and precision. With a learning-rate grid, every grid
point runs on the first seed; the rate with the best *validation* Spearman is chosen per variant
(method, rank, precision), and the other seeds run at that rate only.
Everything is recomputed from the run files, so a resumed sweep and ``report`` agree.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

import numpy as np

from harness import cells, convergence, figures, methods, report, results, stats, tuning
from harness.figures import lookup
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
    trained = [s for s in specs if s.arm != "baseline"]
    first_seed = min((s.seed for s in trained), default=None)
    return [s for s in trained if s.seed == first_seed]


def _among(rate: float, rates: list[float]) -> bool:
    """Whether a learning rate is one of ``rates`` (up to float rounding: 1.25e-3 written back as text)."""
    return any(math.isclose(rate, t, rel_tol=1e-9) for t in rates)


def planned_grids(specs: list[RunSpec]) -> dict[str, list[float]]:
    """Per sweep point, the learning rates its first seed is to run: the grid the command asked for.
    The sweep records it in the job manifest (results.write_manifest), so that a table made while the
    grid is still running (or after it was stopped) can say so (grid_edges)."""
    grids = defaultdict(set)
    for spec in _first_seed_specs(specs):
        grids[group_key(spec.to_dict())].add(spec.learning_rate)
    return {point: sorted(rates) for point, rates in grids.items()}


def grid_edges(records: list[dict], planned: dict[str, list[float]] | None = None,
               selection: tuning.Selection | None = None) -> dict[str, str]:
    """Sweep points whose chosen rate cannot be taken as the best of a finished grid: "K of N rates run"
    where ``planned`` (the manifest's grids) names rates that its first seed has not run yet, else "top
    of grid" or "bottom of grid" where the chosen rate is an end of the rates tried.

    The validation choice cannot see past the grid, so a rate beyond that end might do better; the
    tables say so instead of presenting the end of the grid as the method's best rate."""
    tried = _first_seed_rates(records)
    choices = (selection or tuning.Selection()).choose(records)
    edges = {}
    for point, choice in choices.items():
        chosen, grid = choice.rate, tried.get(point, [])
        asked = (planned or {}).get(point, [])
        run = [r for r in asked if _among(r, grid)]
        if len(run) < len(asked):
            edges[point] = f"{len(run)} of {len(asked)} rates run"
        elif choice.pending:
            edges[point] = f"{SCREENING}: {choice.pending}"
        elif len(grid) >= 2 and chosen == grid[-1]:
            edges[point] = "top of grid"
        elif len(grid) >= 2 and chosen == grid[0]:
            edges[point] = "bottom of grid"
    return edges


SCREENING = "screening unfinished"


def grid_unfinished(edge: str | None) -> bool:
    """Whether a grid_edges mark says the point's grid, or its screening on the other seeds, has runs
    still to run (its rate is not tuned yet)."""
    return bool(edge) and (edge.endswith(" rates run") or edge.startswith(SCREENING))


def unfinished_grids(edges: dict[str, str | None], points) -> str:
    """Which of ``points`` have an unfinished grid (grid_edges' marks in ``edges``), as the tables say
    it: "point: K of N rates run", joined by "; "; "" where every grid is finished."""
    return "; ".join(f"{p}: {edges[p]}" for p in dict.fromkeys(points) if grid_unfinished(edges.get(p)))


def extend_grid(specs: list[RunSpec], records: list[dict]) -> list[RunSpec]:
    """One more first-seed run per point whose chosen rate is an end of its grid: one step past that
    end, the step being the ratio of the grid's two rates at that end (5e-4 after 2e-4, 5e-4 gives
    1.25e-3). Run them, then call again to go on while the new end keeps winning (``--lr-extend N``
    rounds at most). Deterministic from the records, so a resumed sweep proposes the same runs."""
    tried = _first_seed_rates(records)
    edges = grid_edges(records)
    out, seen = [], set()
    for spec in _first_seed_specs(specs):
        point = group_key(spec.to_dict())
        edge = edges.get(point)
        grid = tried.get(point, [])
        if point in seen or edge is None:
            continue
        seen.add(point)
        rate = grid[-1] * grid[-1] / grid[-2] if edge == "top of grid" else grid[0] * grid[0] / grid[1]
        rate = float(f"{rate:.3g}")
        if not _among(rate, grid):
            out.append(dataclasses.replace(spec, learning_rate=rate))
    return out


def second_phase(specs: list[RunSpec], records: list[dict], seeds: list[int]) -> list[RunSpec]:
    """After tuning: the remaining seeds of each point at its chosen rate."""
    chosen = chosen_rates(records)
    out = []
    first = [s for s in specs if s.seed == seeds[0] and s.arm != "baseline"]
    seen = set()
    for spec in first:
        point = group_key(spec.to_dict())
        if point in seen or point not in chosen:
            continue
        seen.add(point)
        out += [dataclasses.replace(spec, seed=s, learning_rate=chosen[point]) for s in seeds[1:]]
    return out


def selected(records: list[dict], selection: tuning.Selection | None = None) -> list[dict]:
    """The successful runs a sweep reports on: each point at its chosen learning rate (the job's rule)."""
    chosen = chosen_rates(records, selection)
    return [r for r in records if r["status"] == "success" and
            (r["method"] == "baseline" or chosen.get(group_key(r["spec"])) == r["spec"]["learning_rate"])]


# --- the sweep table -----------------------------------------------------------------------------

def point_rows(records: list[dict], *, ttq_fraction: float = 0.95,
               planned: dict[str, list[float]] | None = None,
               selection: tuning.Selection | None = None, margin: float = stats.SPEARMAN_MARGIN) -> list[dict]:
    """One row per sweep point with mean and 95% CI of every figure, vs standard: the difference, its
    four-way verdict at ``margin`` (stats.verdict) and the share of standard's gain over the baseline;
    how its rate was chosen, its stable range and what tuning cost; whether its runs converged.
    ``planned``: the grids the job's sweeps asked for (results.manifest_grids), for the lr mark;
    ``selection``: the job's rate rule (job_selection)."""
    selection = selection or tuning.Selection()
    choices = selection.choose(records)
    tried = tuning.points(records)
    runs = selected(records, selection)
    points = defaultdict(list)
    for r in runs:
        points[group_key(r["spec"])].append(r)
    evalset = results.evaluation_set(runs)
    gold, groups = evalset if evalset else (None, None)
    ref = methods.reference_label([r["spec"] for r in runs])
    std_cos = _cos_by_seed(points.get(ref, []))
    base_cos = _cos_by_seed(points.get("baseline", []))
    std_wall = stats.t_interval([lookup(r, "timings.train_wall_s") for r in points.get(ref, [])])["mean"]
    std_final_val = stats.t_interval([lookup(r, "quality.validation_spearman")
                                      for r in points.get(ref, [])])["mean"]
    base_val = tuning.baseline_validation(runs)
    edges = grid_edges(records, planned, selection)
    rows = []
    for point in sorted(points, key=lambda p: methods.sort_key(points[p][0]["spec"])):
        group = sorted(points[point], key=lambda r: r["spec"]["seed"])
        row = {"point": point, "method": group[0]["method"], "series": methods.series_label(group[0]["spec"]),
               "is_reference": point == ref,
               "rank": group[0]["spec"]["lora"]["r"] if group[0]["spec"].get("lora") else None,
               "learning_rate": None if group[0]["method"] == "baseline" else group[0]["spec"]["learning_rate"],
               "lr_grid_edge": edges.get(point),
               "seeds": len(group),
               "trainable_params": lookup(group[0], "params.trainable_params")}
        if point in choices:
            row.update(_tuning_columns(choices[point], tried[point], choices, group[0]["spec"]))
        row.update({f"convergence_{k}": v for k, v in convergence.summary(group).items()})
        cos = _cos_by_seed(group)
        if gold is not None and cos:
            ci = stats.bootstrap_spearman(cos, gold, groups=groups)
            row.update(ci_columns("spearman", ci), test_pairs=ci["n_pairs"], test_groups=ci["n_groups"])
        for figure in figures.row_figures():
            row.update(ci_columns(figure.key, stats.t_interval([figure.value(r) for r in group])))
        # a point (or standard) whose grid is unfinished trains at a rate not yet tuned: its difference
        # would measure the rate, not the method, so the tables withhold it (as the precision table does)
        unfinished = unfinished_grids(edges, (point, ref))
        if point != ref and unfinished:
            row["vs_standard_withheld"] = f"grid unfinished: {unfinished}"
        elif point != ref and std_cos and gold is not None and cos:
            test = stats.paired_spearman_test(cos, std_cos, gold, groups=groups)
            row.update(vs_standard_spearman_diff=test["diff"], vs_standard_diff_lo=test["lo"],
                       vs_standard_diff_hi=test["hi"], vs_standard_p=test["p_value"],
                       vs_standard_seeds_agree=test["seeds_agree"], vs_standard_significant=test["significant"],
                       vs_standard_verdict=stats.verdict(test, margin), vs_standard_margin=margin)
            if base_cos and group[0]["method"] != "baseline":
                share = stats.gain_share(cos, std_cos, base_cos, gold, groups=groups)
                row.update(ci_columns("gain_share", share), gain_share_withheld=share.get("why"))
        if std_wall and row.get("train_wall_s_mean") is not None:
            row["train_wall_pct_of_standard"] = 100 * row["train_wall_s_mean"] / std_wall
        target = quality_target(std_final_val, base_val, ttq_fraction)
        if target is not None:
            row["time_to_95pct_standard_s"] = _time_to_quality(group, target)
        merge = [lookup(r, "merge") for r in group if lookup(r, "merge")]
        if merge:
            row.update(merge_max_abs_diff=max(m["max_abs_diff"] for m in merge),
                       merge_within_tolerance=all(m.get("within_tolerance", True) for m in merge),
                       merge_tolerance=max(m.get("tolerance") or 0 for m in merge) or None,
                       unmerged_sentences_per_s=float(np.mean([m["unmerged_sentences_per_s"] for m in merge])),
                       merged_sentences_per_s=float(np.mean([m["merged_sentences_per_s"] for m in merge])),
                       base_sentences_per_s=float(np.mean([m["base_sentences_per_s"] for m in merge])))
        row.update(reload_columns([lookup(r, "artifact_check") for r in group]))
        rows.append(row)
    return rows


def reload_columns(checks: list[dict | None]) -> dict:
    """The artifact round trip over a variant's seeds (harness/artifacts.py): the worst difference,
    whether every seed was within tolerance, and whether sentence-transformers' one-liner
    ``SentenceTransformer(folder)`` loaded every seed's adapter correctly (None where not tried)."""
    checks = [c for c in checks if c]
    if not checks:
        return {}
    one_liner = [c["sentence_transformers_load"] for c in checks if c.get("sentence_transformers_load")]
    return {"reload_max_abs_diff": max(c["max_abs_diff"] for c in checks),
            "reload_within_tolerance": all(c["within_tolerance"] for c in checks),
            "reload_tolerance": max(c["tolerance"] for c in checks), "reload_loader": checks[0]["loader"],
            "reload_one_liner": None if not one_liner else
            "error" if any("error" in o for o in one_liner) else all(o.get("within_tolerance") is True
                                                                      for o in one_liner)}


def quality_target(standard: float | None, baseline: float | None, fraction: float = 0.95) -> float | None:
    """The validation Spearman that recovers ``fraction`` of standard's gain over the untrained model (a
    share of a gain, never of a signed figure); None without both."""
    if standard is None or baseline is None or not standard > baseline:
        return None
    return baseline + fraction * (standard - baseline)


def _tuning_columns(choice: tuning.Choice, point: tuning.Point, choices: dict, spec: dict) -> dict:
    """How a point's rate was chosen and what the search cost: the rule, the stable range (and its width
    in grid steps), the unstable rates, the rate as a multiple of standard's in the same precision, and
    the runs and hours of tuning beside those of the final runs."""
    stable = choice.stable_range()
    standard = methods.variant_label({**spec, "arm": "standard", "lora": None})
    theirs = choices.get(standard)
    if len(point.runs) == 1:  # one rate tried: nothing was chosen, and there is no range to speak of
        return {"lr_rule": "one rate, no grid", "lr_pending": choice.pending or None,
                "lr_chosen_unstable": choice.unstable.get(choice.rate), **tuning.tuning_cost(point, choice.rate)}
    return {"lr_rule": choice.rule, "lr_pending": choice.pending or None,
            "lr_chosen_unstable": choice.unstable.get(choice.rate),  # only the first-seed rule can
            "lr_stable_lo": stable[0] if stable else None, "lr_stable_hi": stable[1] if stable else None,
            "lr_stable_steps": choice.stable_steps,
            "lr_unstable": "; ".join(f"{r:g}: {why}" for r, why in sorted(choice.unstable.items())) or None,
            "lr_x_standard": (choice.rate / theirs.rate if theirs and theirs.rate and choice.rate
                              and standard != point.name else None),
            **tuning.tuning_cost(point, choice.rate)}


def ci_columns(name: str, ci: dict) -> dict:
    """A confidence interval as table columns: NAME_mean, NAME_lo, NAME_hi (read back by the tables' cells)."""
    return {f"{name}_mean": ci["mean"], f"{name}_lo": ci["lo"], f"{name}_hi": ci["hi"]}


def _cos_by_seed(group: list[dict]) -> list[np.ndarray]:
    return [np.array(r["quality"]["test_cos"]) for r in sorted(group, key=lambda r: r["spec"]["seed"])
            if r["quality"].get("test_cos")]


def _time_to_quality(group: list[dict], target: float) -> float | None:
    """Median over seeds of the first training time at which validation Spearman reached target."""
    times = []
    for r in group:
        curve = list(lookup(r, "training.validation_curve") or [])
        final_t, final_q = lookup(r, "timings.train_wall_s"), lookup(r, "quality.validation_spearman")
        if final_t is not None and final_q is not None:
            curve.append({"train_s": final_t, "val_spearman": final_q})
        hit = next((p["train_s"] for p in curve if p["val_spearman"] is not None and p["val_spearman"] >= target), None)
        if hit is not None:
            times.append(hit)
    return float(np.median(times)) if times else None


def curves_frame(records: list[dict]):
    """Validation Spearman against training time (evaluation excluded), final point included."""
    import pandas as pd
    rows = []
    for r in selected(records):
        if r["method"] == "baseline":
            continue
        point, seed = group_key(r["spec"]), r["spec"]["seed"]
        for p in lookup(r, "training.validation_curve") or []:
            rows.append({"point": point, "seed": seed, "step": p["step"], "train_s": p["train_s"],
                         "val_spearman": p["val_spearman"]})
        rows.append({"point": point, "seed": seed, "step": lookup(r, "timings.steps"),
                     "train_s": lookup(r, "timings.train_wall_s"),
                     "val_spearman": lookup(r, "quality.validation_spearman")})
    return pd.DataFrame(rows, columns=["point", "seed", "step", "train_s", "val_spearman"])


# The sweep table's own columns (key, header, position); the figure registry places its figures among
# them (figures.shown_in("sweep")).
_OWN_COLUMNS = [
    ("point", "point", 0), ("learning_rate", "lr", 1), ("lr_stable", "stable lr range", 2), ("seeds", "seeds", 3),
    ("trainable_params", "trainable params", 4), ("test_size", "test pairs / groups", 5),
    ("spearman", "Spearman (95% CI)", 6), ("vs_standard_diff", "Δ vs std (95% CI, verdict)", 7),
    ("gain_share", "share of std's gain (95% CI)", 8), ("converged", "converged", 9),
    ("train_wall_pct_of_standard", "time % of std", 15),
    ("time_to_95pct_standard_s", "time to 95% of std's gain (s)", 19),
    ("vs_standard_p", "p vs std", 20), ("reload", "reloads", 21), ("merge_max_abs_diff", "merge max abs diff", 22),
    ("unmerged_sentences_per_s", "enc/s unmerged", 23), ("merged_sentences_per_s", "enc/s merged", 24),
    ("tuning", "tuning cost", 25),
]


def sweep_columns() -> list[tuple[str, str]]:
    """(row key, header) of every column of the sweep table, in order."""
    placed = [(pos, i, key, header) for i, (key, header, pos) in enumerate(_OWN_COLUMNS)]
    placed += [(f.shows["sweep"], len(placed) + i, f.key, f.header) for i, f in enumerate(figures.shown_in("sweep"))]
    return [(key, header) for _, _, key, header in sorted(placed)]


_CELLS = {"learning_rate": cells.rate, "lr_stable": cells.stable_range, "gain_share": cells.gain_share,
          "converged": cells.converged, "tuning": cells.tuning_cost, "reload": cells.reload,
          "vs_standard_diff": lambda row: cells.versus_standard(row, with_p=False) if row.get("method") != "baseline"
          or row.get("vs_standard_spearman_diff") is not None else "—"}


def _cell(row: dict, key: str) -> str:
    if key in _CELLS:
        return _CELLS[key](row)
    if f"{key}_mean" in row:
        mean, lo, hi = row[f"{key}_mean"], row[f"{key}_lo"], row[f"{key}_hi"]
        if mean is None:
            return "—"
        return f"{mean:.3g}" + (f" [{lo:.3g}, {hi:.3g}]" if lo is not None else "")
    if key == "test_size":
        return f"{row['test_pairs']} / {row['test_groups']}" if row.get("test_pairs") else "—"
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if key == "vs_standard_p":
        return f"{value:.3f}"
    if key == "trainable_params":
        return f"{value:,}"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def title(rows: list[dict], records: list[dict]) -> str:
    """What the job is, from its rows: a method study, a rank sweep, a precision study or one method
    against standard; "at a fixed budget of N steps" unless every variant converged (the rule of
    harness/convergence.py), so that the title does not promise where the methods end up."""
    trained = [r for r in rows if r.get("method") not in (None, "baseline", "standard")]
    adapters = list(dict.fromkeys(r["method"] for r in trained))
    ranks = sorted({r["rank"] for r in trained if r.get("rank") is not None})
    precisions = {r["point"].rsplit(" ", 1)[-1] for r in rows if r["point"].endswith(("bf16", "fp16"))}
    if len(adapters) > 1:
        text = f"Method study: {len(adapters)} adapter methods against full fine-tuning (standard)"
    elif len(ranks) > 1:
        text = f"Rank sweep: {adapters[0]} at ranks {', '.join(map(str, ranks))} against full fine-tuning"
    elif precisions:
        text = "Precision study: " + ", ".join(r["point"] for r in rows if r.get("method") != "baseline")
    else:
        text = ", ".join(r["point"] for r in rows if r.get("method") != "baseline" and not r.get("is_reference"))
        text = f"{text or 'standard'} against full fine-tuning"
    trained_rows = [r for r in rows if r.get("method") != "baseline"]
    return text + report.budget(records, converged=bool(trained_rows) and all(
        r.get("convergence_converged") is True for r in trained_rows))


def protocol_notes(rows: list[dict]) -> list[str]:
    """How the sweep and methods tables chose each rate, judged each difference and convergence: the
    bullet lines both tables print."""
    rules = sorted({r["lr_rule"] for r in rows if r.get("lr_rule") and r["lr_rule"] != "one rate, no grid"})
    margin = next((r["vs_standard_margin"] for r in rows if r.get("vs_standard_margin") is not None),
                  stats.SPEARMAN_MARGIN)
    lines = [(f"Learning rate: chosen by {' / '.join(rules)}" if rules else
              "Learning rate: each variant at its spec's rate (no grid)")
             + (" (the first seed screens the grid; its best stable rates run on the other seeds; the one with "
                "the best mean validation Spearman over every seed is chosen)" if any(
                    r.startswith("mean") for r in rules) else "")
             + ". " + tuning.RULE_TEXT + " Stable lr range: the contiguous stable rates tried around the chosen "
             "one, its width in grid steps. (top of grid) or (bottom of grid): the chosen rate is an end of the "
             "rates tried, so a rate beyond it might do better. (K of N rates run) or (screening unfinished): "
             "runs are still to come, so the rate is not tuned yet and no Δ vs std is given for it (nor for any "
             "point while standard's own choice is unfinished): it would measure the rate, not the method.",
             f"Verdict against standard, at a smallest difference of interest of ±{margin:g} Spearman (set with "
             "--margin on run and sweep): equivalent where the whole 95% CI of the difference lies within "
             "±margin; else better or worse where it is significant (p < 0.05 and, with several seeds, every "
             "seed's own difference on the side of the mean); else inconclusive. \"Is it as good as standard?\" "
             "is answered by equivalent, not by the absence of significance.",
             "Share of std's gain: (S - S_baseline) / (S_standard - S_baseline) in test Spearman, with a "
             "cluster-bootstrap 95% CI over the same groups; only where standard's own gain over the untrained "
             "model is significant. Spearman is signed, so no figure is given as a % of standard's Spearman.",
             "Converged: " + convergence.RULE + "; yes (k/n) where every seed's run did. A variant that had not "
             "converged was compared at a fixed budget: its figures say how far it got in that many steps.",
             "Tuning cost: the runs at other rates (the rate search) and their wall time, beside the final runs "
             "at the chosen rate; hours of this machine from each worker's start to its record."]
    return lines


def sweep_markdown(rows: list[dict], pareto_table, records: list[dict]) -> str:
    from tabulate import tabulate

    from harness.report import method_notes
    columns = sweep_columns()
    body = [[_cell(r, key) for key, _ in columns] for r in rows]
    parts = [f"# {title(rows, records)}", "",
             tabulate(body, headers=[h for _, h in columns], tablefmt="github", disable_numparse=True), "",
             "## Method", "",
             "- Spearman: mean over seeds with a cluster-bootstrap 95% CI: each of 2000 replicates resamples the "
             "test *groups* (the independent units: profile pairs on dating, distinct sentence pairs on STS-B) and, "
             "with several seeds, the seeds. Other figures: mean over seeds with a Student-t 95% CI; no CI with "
             "one seed.",
             "- Δ vs std and p vs std: paired cluster bootstrap of the point's Spearman minus standard's over the "
             "same groups (seeds paired).",
             *[f"- {line}" for line in protocol_notes(rows)],
             "- time to 95% of std's gain: training wall time (evaluation excluded) at which validation Spearman "
             "first recovered 95% of standard's final gain over the untrained model; median over seeds.",
             "- merge: peft's LoraLayer.merge folds the adapter into the base weights; max abs diff is the largest "
             "absolute embedding difference merged vs unmerged on the test texts (float32, tolerance 1e-5). "
             "enc/s are single passes over the test texts.", f"- {cells.RELOAD_NOTE}", ""]
    parts += [f"- {n}" for n in method_notes(records)] + [""]
    pending = [f"{r['point']}: {r['lr_pending']}" for r in rows if r.get("lr_pending")]
    if pending:
        parts += ["Rates not final yet: " + "; ".join(pending) + ".", ""]
    if pareto_table is not None and not pareto_table.empty:
        parts += ["## Pareto front (quality vs cost)", "",
                  tabulate(pareto_table.values.tolist(), headers=list(pareto_table.columns), tablefmt="github"), ""]
    return "\n".join(parts)


def write_sweep(out, records: list[dict], rows: list[dict] | None = None) -> list:
    """OUT/sweep.md, OUT/sweep.csv and the plots, all from the run records (``rows``: their point_rows
    with the job's options, recommend.job_rows, where the caller has them already)."""
    from pathlib import Path

    import pandas as pd

    from harness import plots
    out = Path(out)
    selection = job_selection(out)
    if rows is None:
        rows = point_rows(records, planned=results.manifest_grids(out), selection=selection,
                          margin=results.manifest_margin(out))
    frame = pd.DataFrame(rows)
    results.frame_to_csv_atomic(frame, out / "sweep.csv", index=False)
    written = [out / "sweep.csv"]
    pareto_table = None
    if not frame.empty and "spearman_mean" in frame:
        written += plots.rank_vs_quality(frame, out / "plots")
        written += plots.rank_vs_cost(frame, out / "plots")
        paths, pareto_table = plots.pareto(frame, out / "plots")
        written += paths
        std = frame[frame["is_reference"]]
        target = None
        chosen = selected(records, selection)
        ref = methods.reference_label([r["spec"] for r in chosen])
        std_val = [lookup(r, "quality.validation_spearman") for r in chosen if group_key(r["spec"]) == ref]
        std_val = [v for v in std_val if v is not None]
        if not std.empty and std_val:
            target = quality_target(float(np.mean(std_val)), tuning.baseline_validation(chosen))
        written += plots.time_to_quality(curves_frame(chosen), out / "plots", target=target)
        if "forgetting_mean" in frame and frame["forgetting_mean"].notna().any():
            written += plots.quality_vs_forgetting(frame, out / "plots")
        sensitivity = pd.DataFrame(tuning.sensitivity_rows(records, selection))
        if not sensitivity.empty and sensitivity.groupby("point")["learning_rate"].nunique().max() > 1:
            written += plots.lr_sensitivity(sensitivity, out / "plots")  # only where some rate was tuned
    results.write_text_atomic(out / "sweep.md", sweep_markdown(rows, pareto_table, records))
    return [out / "sweep.md", *written]


def is_sweep(records: list[dict], out=None, *, manifest: dict | None = None) -> bool:
    """Whether a folder gets the sweep's files: its manifest (``manifest``, else read from ``out``)
    says a sweep ran there, or its records hold several ranks or seeds (folders made before manifests),
    or one arm at several learning rates (a rate grid, whatever ran it: a mean over it means nothing)."""
    if manifest is None and out is not None:
        manifest = results.read_manifest(out)
    if results.manifest_says(manifest, "sweep"):
        return True
    ranks = {r["spec"]["lora"]["r"] for r in records if r["spec"].get("lora")}
    seeds = {r["spec"]["seed"] for r in records}
    rates = defaultdict(set)
    for r in records:
        if r["status"] == "success" and r["method"] != "baseline":
            rates[group_key(r["spec"])].add(r["spec"]["learning_rate"])
    return len(ranks) > 1 or len(seeds) > 1 or any(len(v) > 1 for v in rates.values())


def job_selection(out=None, manifest: dict | None = None) -> tuning.Selection:
    """The rule that chooses a job folder's rates, from its manifest (``manifest``, else read from ``out``)."""
    if manifest is None and out is not None:
        manifest = results.read_manifest(out)
    return tuning.Selection.from_manifest(manifest)


def reported(records: list[dict], out=None, *, manifest: dict | None = None) -> list[dict]:
    """The successful runs a folder's tables report on, the one rule that publish, compare and the site
    share (report applies it too, keeping the failed runs beside them): in a sweep (is_sweep) each point
    at its chosen learning rate only (the job's rule: job_selection), else all of them. ``records`` may
    hold failed runs: a diverged one makes its rate unstable."""
    ok = [r for r in records if r["status"] == "success"]
    if manifest is None and out is not None:
        manifest = results.read_manifest(out)
    return selected(records, job_selection(manifest=manifest)) if is_sweep(records, out, manifest=manifest) else ok
