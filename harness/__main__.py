"""Command line: ``python -m harness run|sweep|report|recommend|publish|compare|sizes|serve|bench-compare`` (also
installed as ``lora-bench``).

Exit status: 0 all runs succeeded, 1 a run failed (it is recorded), 2 bad input (nothing written).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

from harness import files, jobfile, results, runner, tuning
from harness.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_RUN_FAILED, build_parser, one_line, warnings_as_lines
from harness.report import tradeoffs
from harness.spec import SpecError, build_specs


class InputError(Exception):
    """Bad user input found before anything runs."""


def _check_margin(args) -> None:
    import math
    if args.margin is not None and not (math.isfinite(args.margin) and 0 <= args.margin < 1):
        raise InputError(f"--margin {args.margin}: expected a difference in Spearman in [0, 1), e.g. 0.02")


def _plan(specs, out: Path) -> int:
    """--dry-run: the runs the command would start or keep, one line each; nothing written."""
    from harness import results as store
    for spec in specs:
        existing = store.find_existing(out, spec.run_id) if out.is_dir() else None
        state = "keep (finished)" if existing is not None and existing.get("status") == "success" else "run"
        rate = f"lr {spec.learning_rate:g}" if spec.method.trains else "untrained"
        print(f"{state}: {spec.label} seed {spec.seed} {rate} ({spec.run_id})")
    print(f"dry run: {len(specs)} run(s) into {out}; nothing was written", flush=True)
    return EXIT_OK


def _check_save_models(args) -> None:
    if args.save_models and args.executor != "local":
        raise InputError("--save-models keeps the models on this machine, and a Ray task may run on another "
                         "node: use the local executor")


def make_executor(args):
    if args.executor == "local":
        return None
    from harness.ray_executor import RayExecutor, RayUnavailable
    try:
        return RayExecutor(address=args.ray_address, max_retries=args.ray_max_retries)
    except RayUnavailable as exc:
        raise InputError(str(exc)) from None


def cmd_run(args) -> int:
    import dataclasses

    from harness import sweep
    _check_margin(args)
    _check_save_models(args)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    specs = build_specs(arms=arms, dataset=args.dataset, profile=args.profile, config_path=args.config,
                        overrides=args.overrides)
    if args.per_category is not None:
        specs = _per_category(specs, args.per_category)
    if args.seeds is not None:  # seed-major, so that a stopped run leaves whole seeds behind
        seeds = sweep.parse_ints(args.seeds, name="seeds", minimum=0)
        specs = [dataclasses.replace(spec, seed=seed) for seed in seeds for spec in specs]
    specs = _follow_model_targets(specs)
    fingerprints = preflight(specs)
    out = Path(args.out or f"out/{specs[0].dataset_name}-{args.profile}")
    _warn_other_machines(out, specs)
    if args.dry_run:
        return _plan(specs, out)
    with claim(out, kind="run", argv=args.argv, margin=args.margin):
        records = runner.run_all(specs, out=out, force=args.force, retry_failed=not args.no_retry_failed,
                                 log=lambda m: print(m, flush=True), executor=make_executor(args),
                                 fingerprints=fingerprints, save_models=args.save_models)
        return _report(out, records)


def _per_category(specs, text: str):
    """Each adapter arm once per category (``all``, or the comma-separated names given), trained on
    that category's pairs only; the other arms (baseline, standard) once, on every pair: ADR-001's
    "separate adapters per category" against one model trained on all."""
    import dataclasses

    from harness import data
    adapters = [s for s in specs if s.method.adapter]
    if not adapters:
        raise InputError("--per-category: no adapter arm in --arms to train per category (e.g. --arms "
                         "baseline,standard,lora)")
    try:
        there = data.load_splits(specs[0].dataset, seed=specs[0].dataset_seed,
                                 score_range=specs[0].score_range).categories()
    except data.DataError as exc:
        raise InputError(str(exc)) from None
    wanted = there if text.strip() == "all" else [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in there]
    if not wanted or unknown:
        raise InputError(f"--per-category {text!r}: " + (f"no category {', '.join(map(repr, unknown))} in "
                         if unknown else "no category given for ") + f"{specs[0].dataset_name}'s training "
                         f"pairs; its categories: {', '.join(there) or 'none (its pairs carry no category)'}")
    return [variant for s in specs for variant in (
        [dataclasses.replace(s, train_category=c) for c in wanted] if s.method.adapter else [s])]


@contextlib.contextmanager
def claim(out: Path, *, kind: str, argv: list[str], lr_grids: dict[str, list[float]] | None = None,
          lr_selection: tuning.Selection | None = None, margin: float | None = None, options: dict | None = None):
    """The output folder, checked writable and locked for this process, before any worker starts;
    its manifest (OUT/job.json) gains this command (and a sweep's learning-rate grids, rule and options)."""
    try:
        lock = runner.check_out(out)
        lock.__enter__()
    except ValueError as exc:
        raise InputError(str(exc)) from None
    try:
        jobfile.write(out, kind=kind, argv=argv, lr_grids=lr_grids, lr_selection=lr_selection, margin=margin,
                      options=options)
        yield
    finally:
        lock.__exit__(None, None, None)


SWEEP_DEFAULTS = {"methods": "lora", "ranks": "1,2,4,8,16,32,64", "precisions": None, "seeds": "0",
                  "alpha_policy": "2r", "targets": "query,value", "lr_grid": None, "lr_extend": 0,
                  "lr_select": tuning.DEFAULT_RULE, "lr_screen": tuning.DEFAULT_SCREEN, "eval_every_steps": 50}


def _ints(v) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and all(type(x) is int for x in v))


def _names(v) -> bool:
    return isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))


SWEEP_TYPES = {  # what a [sweep] table in --config may hold: (check, description)
    "methods": (_names, "a list of method names or a string such as \"lora,dora\" or \"all\""),
    "precisions": (_names, "a list or a string such as \"fp32,bf16\""),
    "ranks": (_ints, "a list of integers or a string such as \"1,4,16\""),
    "seeds": (_ints, "a list of integers or a string such as \"0,1,2\""),
    "alpha_policy": (lambda v: isinstance(v, str), "a string: 2r or fixed:N"),
    "targets": (lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v)),
                "a string or a list of module names"),
    "lr_grid": (lambda v: isinstance(v, str), "a string such as \"standard=1e-5,2e-5;lora=1e-4,2e-4\""),
    "lr_extend": (lambda v: type(v) is int and v >= 0, "an integer >= 0"),
    "lr_select": (lambda v: v in tuning.RULES, " or ".join(tuning.RULES)),
    "lr_screen": (lambda v: type(v) is int and v >= 2, "an integer >= 2"),
    "eval_every_steps": (lambda v: type(v) is int and v >= 0, "an integer >= 0"),
}


def _sweep_options(args) -> dict:
    """The sweep's options: SWEEP_DEFAULTS, then a [sweep] table of --config (checked against
    SWEEP_TYPES), then the command line's flags."""
    from harness.spec import load_toml
    table = dict(load_toml(args.config).get("sweep", {})) if args.config else {}
    unknown = [k for k in table if k not in SWEEP_DEFAULTS]
    if unknown:
        raise SpecError([f"[sweep] {k}: unknown key; allowed: {', '.join(SWEEP_DEFAULTS)}" for k in unknown])
    bad = [f"[sweep] {k} = {v!r}: expected {SWEEP_TYPES[k][1]}" for k, v in table.items()
           if not SWEEP_TYPES[k][0](v)]
    if bad:
        raise SpecError(bad)
    opts = {**SWEEP_DEFAULTS, **{k: (",".join(map(str, v)) if isinstance(v, list) else v) for k, v in table.items()}}
    for key in ("methods", "ranks", "precisions", "seeds", "alpha_policy", "targets", "lr_grid",
                "lr_extend", "lr_select", "lr_screen"):
        if getattr(args, key) is not None:
            opts[key] = getattr(args, key)
    if args.eval_every is not None:
        opts["eval_every_steps"] = args.eval_every
    return opts


def cmd_sweep(args) -> int:
    from harness import sweep
    _check_margin(args)
    _check_save_models(args)
    opts = _sweep_options(args)
    method_names = sweep.parse_methods(str(opts["methods"]))
    ranks = sweep.parse_ints(str(opts["ranks"]), name="ranks", minimum=1)
    precisions = sweep.parse_precisions(str(opts["precisions"])) if opts["precisions"] else None
    seeds = sweep.parse_ints(str(opts["seeds"]), name="seeds", minimum=0)
    grid = sweep.parse_lr_grid(opts["lr_grid"], method_names)
    extend = int(opts["lr_extend"])
    if extend < 0 or (extend and not grid):
        raise SpecError([f"lr-extend = {extend}: " + ("must be >= 0" if extend < 0 else
                                                      "extends a learning-rate grid; give --lr-grid too")])
    if int(opts["lr_screen"]) < 2:
        raise SpecError([f"lr-screen = {opts['lr_screen']}: must be at least 2 (a choice between one rate is none)"])
    selection = tuning.Selection(str(opts["lr_select"]), tuple(seeds), int(opts["lr_screen"])) if grid else None
    overrides = [*args.overrides, f"eval_every_steps={int(opts['eval_every_steps'])}"]
    targets = _targets(str(opts["targets"]), args, overrides)
    specs = sweep.sweep_specs(dataset=args.dataset, ranks=ranks, seeds=seeds, method_names=method_names,
                              precisions=precisions, alpha_policy=str(opts["alpha_policy"]),
                              targets=targets, lr_grid=grid, profile=args.profile, config_path=args.config,
                              overrides=overrides)
    specs = _follow_model_targets(specs)
    fingerprints = preflight(specs)
    out = Path(args.out or f"out/{specs[0].dataset_name}-sweep")
    _warn_other_machines(out, specs)
    log = lambda m: print(m, flush=True)  # noqa: E731
    if selection is not None:
        _same_rule(out, selection)
    if args.dry_run:  # the first phase: the later phases depend on its results
        return _plan(specs, out)
    with claim(out, kind="sweep", argv=args.argv, lr_grids=sweep.planned_grids(specs) if grid else None,
               lr_selection=selection, margin=args.margin,
               options={o: getattr(args, o, None) for o in jobfile.SWEEP_OPTIONS}):
        options = {"out": out, "force": args.force, "retry_failed": not args.no_retry_failed, "log": log,
                   "executor": make_executor(args), "fingerprints": fingerprints, "save_models": args.save_models}
        records = sweep.run_phases(specs, lambda more: runner.run_all(more, **options), seeds=seeds,
                                   grid=grid, extend=extend, selection=selection, log=log)
        return _report(out, list({r["run_id"]: r for r in records}.values()))


def _warn_other_machines(out: Path, specs) -> None:
    """A job resumed on another machine (a session's CPU model changes; one CPU name can stand for
    several): one line before the first run, since its tables will mix that machine's timings with these."""
    import warnings as _warnings
    from collections import Counter

    from harness import devices, environment, hardware
    if not results.runs_dir(out).is_dir():
        return
    with _warnings.catch_warnings():  # an unreadable file is named once, by the runner
        _warnings.simplefilter("ignore")
        records = [r for r in results.load_runs(out) if r.get("status") == "success"]
    device = devices.resolve(specs[0].device)
    here = hardware.machine_label({**environment.collect_cpu(), **environment.collect_torch(device)})
    others = Counter(label for r in records if (label := hardware.machine_label(r.get("environment") or {})) != here)
    if others:
        theirs = "; ".join(f"{label}: {n}" for label, n in others.most_common())
        print(f"warning: {out} holds {sum(others.values())} run(s) that their records do not place on this machine "
              f"({theirs}); this is {here}. Time, memory and energy figures compare only between runs of one "
              "machine; the tables will name each machine beside them", file=sys.stderr)


def _same_rule(out: Path, selection: tuning.Selection) -> None:
    """A folder's rates are chosen by one rule: resuming it under another would change every chosen rate."""
    manifest = jobfile.read(out)
    if manifest is None or not manifest.get("lr_grids"):
        return
    theirs = tuning.Selection.from_manifest(manifest)
    if theirs.rule != selection.rule:
        raise InputError(f"{out}: its learning rates are chosen by the {theirs.rule} rule (job.json); resume it "
                         f"with --lr-select {theirs.rule}, or give another --out for the {selection.rule} rule")


def _targets(text: str, args, overrides) -> tuple[str, ...]:
    from harness import models
    if text != "all-linear":
        return tuple(t.strip() for t in text.split(",") if t.strip())
    (spec,) = build_specs(arms=["baseline"], dataset=args.dataset, profile=args.profile, config_path=args.config,
                          overrides=overrides)
    names = models.linear_module_names_at(models.resolve_model_path(spec.model))
    if not names:
        raise InputError(f"targets = all-linear: cannot read the Linear modules of model {spec.model!r}")
    return tuple(names)


def cmd_publish(args) -> int:
    from harness import catalog
    from harness.report import publish
    _not_a_file(args.results, "publish --results")
    root = Path(args.results)
    if args.add:
        if not args.job:
            raise InputError("publish --add needs --job NAME (e.g. adr or sweep)")
        try:
            dest = publish.add(Path(args.add), results_root=root, job=args.job)
        except (ValueError, FileExistsError) as exc:
            raise InputError(str(exc)) from None
        print(f"published {args.add} -> {dest}")
    root.mkdir(parents=True, exist_ok=True)
    jobs = catalog.published_jobs(root)  # each job folder read once, for the index and the site
    for path in publish.write_index(root, jobs):
        print(f"wrote {path}")
    from harness.report import site
    written = site.build(root, jobs=jobs)
    print(f"wrote {root / site.SITE}/ ({len(written)} files; open {root / site.SITE / 'index.html'})")
    return EXIT_OK


def _not_a_file(path: str, option: str) -> None:
    if Path(path).exists() and not Path(path).is_dir():
        raise InputError(f"{option} {path!r}: exists and is not a folder")


def cmd_compare(args) -> int:
    import math

    from harness.report import compare
    if not (math.isfinite(args.quality_tolerance) and args.quality_tolerance >= 0):
        raise InputError(f"--quality-tolerance {args.quality_tolerance}: expected a Spearman gap >= 0, e.g. 0.02")
    _not_a_file(args.out, "compare --out")
    for folder in args.folders:
        if not results.runs_dir(Path(folder)).is_dir():
            raise InputError(f"compare {folder!r}: no runs/ folder in it")
    try:
        paths = compare.run([Path(f) for f in args.folders], out=Path(args.out), tolerance=args.quality_tolerance)
    except compare.CompareError as exc:
        raise InputError(str(exc)) from None
    print(paths["md"].read_text())
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return EXIT_OK


def cmd_serve(args) -> int:
    from harness import serving
    from harness.report import tasks
    out = Path(args.out)
    if not results.runs_dir(out).is_dir():
        raise InputError(f"serve {str(out)!r}: no runs/ folder in it (expected a folder written by run --per-category)")
    records = results.load_runs(out)
    try:
        record = serving.serve(out, records)
    except (serving.ServingError, results.ResultError) as exc:
        raise InputError(str(exc)) from None
    tasks.write_tasks(out, records)
    print("\n".join(tasks.serving_markdown(record)))
    return EXIT_OK if all(a["within_tolerance"] for a in record["adapters"]) else EXIT_RUN_FAILED


def cmd_sizes(args) -> int:
    from harness.report import sizes
    _not_a_file(args.out, "sizes --out")
    for folder in args.folders:
        if not results.runs_dir(Path(folder)).is_dir():
            raise InputError(f"sizes {folder!r}: no runs/ folder in it (expected a job folder written by run or sweep)")
    try:
        paths = sizes.run([Path(f) for f in args.folders], out=Path(args.out))
    except (sizes.SizesError, results.ResultError) as exc:
        raise InputError(str(exc)) from None
    print(paths["md"].read_text())
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return EXIT_OK


def _follow_model_targets(specs):
    from harness import models
    return models.follow_model_targets(specs)


def preflight(specs) -> dict[str, str]:
    """Cheap checks of every spec's device, data, model and LoRA targets before any worker starts.

    Returns the data fingerprint of each spec's data (by spec.data_key, which every later seed and rate
    of a sweep shares), so that a finished record made on other data (an older data version with the
    same spec) is never kept as if it were current."""
    from harness import data, devices, models
    seen: dict = {}
    checked_models: set = set()
    loaded: dict = {}  # local model folder -> the model, loaded once as a worker would load it
    fitted: set = set()
    warnings: set = set()
    try:
        for spec in specs:
            device = devices.resolve(spec.device)
            if spec.method.trains:
                warning = devices.check_precision(device, spec.precision)
                if warning and warning not in warnings:
                    warnings.add(warning)
                    print(f"warning: {warning}", file=sys.stderr)
            key = spec.data_key
            if key not in seen:
                seen[key] = data.load_splits(spec.dataset, seed=spec.dataset_seed, score_range=spec.score_range)
            seen[key].for_category(spec.train_category)  # a category the data lacks fails here, not in a worker
            path = models.resolve_model_path(spec.model)
            if spec.model not in checked_models:
                models.check_loadable(spec.model, path)
                checked_models.add(spec.model)
            if (spec.model, key, spec.max_seq_length) not in fitted:
                models.check_inputs_fit(spec.model, path, max_seq_length=spec.max_seq_length, texts=seen[key].texts())
                fitted.add((spec.model, key, spec.max_seq_length))
            if spec.lora is not None:
                have = models.linear_module_names_at(path)
                if have:
                    models.check_targets(spec.lora, have)
            if Path(path).is_dir() and path not in loaded:
                loaded[path] = _load_for_checks(spec.model, path, spec.max_seq_length)
        _check_inert_targets(specs, splits=seen, loaded=loaded)
    except (data.DataError, devices.DeviceError, models.ModelError) as exc:
        raise InputError(str(exc)) from None
    for key, splits in seen.items():
        overlap = splits.overlap("train", "test")
        if overlap:
            print(f"warning: {overlap} pair(s) of the test split also appear in the train split "
                  f"of {key[0]!r}; test quality may be inflated", file=sys.stderr)
    return {key: splits.fingerprint for key, splits in seen.items()}


def _load_for_checks(name: str, path: str, max_seq_length: int):
    """A local model folder loaded as its workers will load it, once, before any of them starts: a folder
    whose weights do not match its config, or that cannot be loaded at all, is one ModelError line here
    instead of a failed record from every worker."""
    from transformers.utils import logging as hf_logging

    from harness import callbacks, models
    models.quiet_progress_bars()  # the parent's output is the user's: one line per problem
    before = hf_logging.get_verbosity()
    if not callbacks.verbose():  # transformers' load report only with --verbose, as in the workers
        hf_logging.set_verbosity_error()
    try:
        try:
            model = models.load_model(path, device="cpu", max_seq_length=max_seq_length)
        except MemoryError:
            raise models.ModelError(f"model {name!r}: does not fit in this machine's memory (its config.json asks "
                                    "for more than there is)") from None
        except Exception as exc:  # noqa: BLE001 - whatever the loaders raise, the folder cannot be used
            detail = models.describe_exception(exc)
            if "ignore_mismatched_sizes" in str(exc):  # transformers' words point at a report it printed above
                detail = (f"{type(exc).__name__}: its weights do not have the shapes its config.json gives "
                          "(--verbose shows transformers' report)")
            raise models.ModelError(f"model {name!r}: cannot be loaded from {path} ({detail})") from None
        try:
            model.encode(["a"], batch_size=1, show_progress_bar=False)  # a folder that loads but cannot encode
        except Exception as exc:  # noqa: BLE001 - whatever encoding raises, the folder cannot be used to train
            raise models.ModelError(f"model {name!r}: loads from {path} but cannot encode a sentence "
                                    f"({models.describe_exception(exc)})") from None
        return model
    finally:
        hf_logging.set_verbosity(before)


def _check_inert_targets(specs, *, splits: dict, loaded: dict) -> None:
    """LoRA targets that match only inert modules (no gradient reaches them) are an error; some inert
    ones a warning. Needs the real model (``loaded``: the local folders, loaded by _load_for_checks; one
    probe backward pass per model), local folders only."""
    from harness import models
    probes: dict = {}
    warned: set = set()
    for spec in (s for s in specs if s.lora is not None):
        path = models.resolve_model_path(spec.model)
        if path not in loaded:
            continue  # a hub id: the worker checks it
        if path not in probes:
            model = loaded[path]
            train = splits[(spec.dataset, spec.dataset_seed, spec.score_range)].train
            try:
                probes[path] = (model, models.forward_path_linears(model, train, batch_size=2))
            except Exception as exc:  # noqa: BLE001 - a model that cannot take one training step cannot train
                raise models.ModelError(f"model {spec.model!r}: a probe training step on {path} failed "
                                        f"({models.describe_exception(exc)})") from None
        model, active = probes[path]
        inert = models.check_inert_targets(model, spec.lora, active)
        message = ", ".join(inert)
        if inert and message not in warned:
            warned.add(message)
            print(f"warning: lora.target_modules {list(spec.lora.target_modules)} also match modules that never "
                  f"receive a gradient ({message}); their adapters do not train and are not counted",
                  file=sys.stderr)


def cmd_bench_compare(args) -> int:
    import math

    from harness import benchcompare
    if not (0 < args.alpha < 1) or not math.isfinite(args.alpha):
        raise InputError(f"--alpha {args.alpha}: expected a number strictly between 0 and 1")
    if not (0 <= args.min_effect < 1) or not math.isfinite(args.min_effect):
        raise InputError(f"--min-effect {args.min_effect}: expected a fraction in [0, 1), e.g. 0.03 for 3%")
    try:
        rows = benchcompare.compare(args.base, args.new, alpha=args.alpha, min_effect=args.min_effect)
    except benchcompare.CompareError as exc:
        raise InputError(str(exc)) from None
    if differ := benchcompare.machines_differ(args.base, args.new):
        print(f"warning: {differ}", file=sys.stderr)
    print(benchcompare.format_rows(rows, alpha=args.alpha, min_effect=args.min_effect))
    regressed = [r["benchmark"] for r in rows if r["verdict"] == "regressed"]
    if regressed:
        print(f"\nREGRESSED: {', '.join(regressed)}")
    return EXIT_RUN_FAILED if regressed else EXIT_OK


def cmd_recommend(args) -> int:
    import math

    from harness.report import recommend
    for option in ("max_memory", "max_train_time", "max_artifact"):
        value = getattr(args, option)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InputError(f"--{option.replace('_', '-')} {value}: expected a finite number > 0")
    if args.min_gain_share is not None and not (math.isfinite(args.min_gain_share) and 0 < args.min_gain_share <= 1):
        raise InputError(f"--min-gain-share {args.min_gain_share}: expected a fraction in (0, 1], e.g. 0.95")
    out = Path(args.out)
    if not results.runs_dir(out).is_dir():
        raise InputError(f"recommend {str(out)!r}: no runs/ folder in it (expected a folder written by `run`)")
    try:
        rows = recommend.job_rows(out)
    except results.ResultError as exc:
        raise InputError(str(exc)) from None
    if not rows:
        raise InputError(f"recommend {str(out)!r}: no successful run records in {results.runs_dir(out)}")
    constraints = recommend.Constraints(args.max_memory, args.max_train_time, args.max_artifact, args.min_gain_share)
    print(recommend.markdown(rows, constraints), end="")
    return EXIT_OK


def cmd_report(args) -> int:
    out = Path(args.out)
    if not results.runs_dir(out).is_dir():
        raise InputError(f"report {str(out)!r}: no runs/ folder in it (expected a folder written by `run`)")
    records = results.load_runs(out)
    if not records:
        raise InputError(f"report {str(out)!r}: no readable run records in {results.runs_dir(out)}")
    return _report(out, records)


def _report(out: Path, records: list[dict]) -> int:
    from harness import sweep
    from harness.report import recommend, sweep_table
    every_run = records  # the sweep and methods tables choose from every rate tried (and mark a grid's end)
    manifest = jobfile.read(out)  # once: every table below takes it, so a bad job.json is one warning
    is_sweep = sweep.is_sweep(records, out, manifest=manifest)
    if is_sweep:  # tuning runs at rates that were not chosen stay out of the tables
        selection = sweep.job_selection(manifest=manifest)
        records = [*sweep.selected(records, selection), *[r for r in records if r["status"] != "success"]]
        if not any(r["status"] == "success" for r in records):
            needs = [f"{name}: {c.pending}" for name, c in selection.choose(every_run).items() if c.pending]
            print(f"warning: {out}: no variant has a chosen learning rate yet ({selection.rule} rule"
                  + (f"; {'; '.join(needs[:3])}{'; ...' if len(needs) > 3 else ''}" if needs else "")
                  + "): the tables stay empty until one has", file=sys.stderr)
    try:
        rows = recommend.job_rows(out, every_run, manifest)  # the variant rows, once for every table below
        stats_rows = tradeoffs.spearman_stats(records, margin=jobfile.margin(out, manifest), withheld={
            r["point"]: r["vs_standard_withheld"] for r in rows if r.get("vs_standard_withheld")})
    except results.ResultError as exc:
        raise InputError(str(exc)) from None
    paths = tradeoffs.write_report(out, records, stats_rows=stats_rows)
    if is_sweep:
        written = sweep_table.write_sweep(out, every_run, rows, manifest)
        print((out / "sweep.md").read_text().split("\n## Method")[0])
        print(f"wrote {len(written)} sweep files (sweep.md, sweep.csv, plots/)")
    from harness.report import methods_report
    if methods_report.wanted(records):
        written = methods_report.write_methods(out, every_run, rows, manifest)
        print((out / "methods.md").read_text().split("\n## How to read")[0])
        print(f"wrote {len(written)} methods files (methods.md, methods.csv, precision.csv with 2 precisions, plots/)")
    from harness.report import tasks
    if tasks.wanted(records) and tasks.write_tasks(out, records, manifest):
        print((out / tasks.FILE).read_text().split("\n- ")[0])
    print()
    print(tradeoffs.format_table(tradeoffs.tradeoff_table(tradeoffs.runs_frame(records))))
    print()
    print("\n".join(tradeoffs.stats_markdown(stats_rows)))
    for note in tradeoffs.method_notes(records):
        print(f"* {note}")
    fails = tradeoffs.failures(records)
    for f in fails:
        print(f"FAILED {f}")
    if rows:
        files.write_text_atomic(out / recommend.FILE, recommend.markdown(rows))
    print(f"\nwrote {paths['md']} and {paths['csv']}; run records in {results.runs_dir(out)}")
    return EXIT_RUN_FAILED if fails else EXIT_OK


def _interrupt_on_sigterm() -> None:
    """SIGTERM gets the same clean stop as Ctrl-C: the current worker is stopped, results kept."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    _interrupt_on_sigterm()
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the job manifest
    if getattr(args, "verbose", False):  # the workers inherit it (harness/callbacks.py)
        from harness import callbacks
        os.environ[callbacks.VERBOSE_ENV] = "1"
    try:
        commands = {"run": cmd_run, "sweep": cmd_sweep, "report": cmd_report, "publish": cmd_publish,
                    "compare": cmd_compare, "bench-compare": cmd_bench_compare, "recommend": cmd_recommend,
                    "sizes": cmd_sizes, "serve": cmd_serve}
        with warnings_as_lines():  # one line each, whichever command raised it
            return commands[args.command](args)
    except (SpecError, InputError) as exc:
        if args.debug:
            raise
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except results.StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    except OSError as exc:  # a path the system refuses (too long, no permission, a loop of links): one line
        if args.debug or exc.filename is None:
            raise
        print(f"error: {str(exc.filename)[:200]!r}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: finished results are kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
