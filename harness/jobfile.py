"""OUT/job.json, the job's manifest: which kinds of command wrote into a folder, each exact command
line and the harness version, the learning-rate grids a sweep asked for, the rule that chooses the rates
and the smallest difference that counts. Written by run and sweep, read by report, publish and the site."""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import io
import json
import math
import shlex
import warnings
from pathlib import Path

from harness import files


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


NAME = "job.json"


class _NotGiven(enum.Enum):
    NOT_GIVEN = "not given"


# The default of every reader's ``manifest``: read OUT/job.json now. None is an answer, not a default:
# the caller read it and the folder has none (or it is unreadable), so that nothing reads it again.
NOT_GIVEN = _NotGiven.NOT_GIVEN
Manifest = dict | None | _NotGiven


def resolved(out, manifest: Manifest) -> dict | None:
    """``manifest`` where the caller gave one (None included: it read OUT/job.json and found none), else
    OUT/job.json read now (None where ``out`` is None too)."""
    if manifest is not NOT_GIVEN:
        return manifest
    return read(out) if out is not None else None


# The shape every reader relies on: each top-level entry's type, and for the lists, their items' type.
SHAPE = {"kinds": (list, str), "commands": (list, dict), "created_at": (str, None), "lr_grids": (dict, None),
         "lr_selection": (dict, None), "spearman_margin": ((int, float), None)}


def read(out) -> dict | None:
    """OUT/job.json, or None where there is none (folders made before manifests) or it is unreadable.
    An entry of the wrong type (SHAPE) is left out with a warning, and so is a list item of the wrong
    type, so that every reader can rely on the types; lr_grids, lr_selection and spearman_margin are
    checked further where they are read (grids, tuning.Selection.from_manifest, margin)."""
    path = Path(out) / NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        warnings.warn(f"{path}: unreadable job manifest, ignored ({exc})", stacklevel=2)
        return None
    if not isinstance(data, dict):
        warnings.warn(f"{path}: not a job manifest (a JSON object), ignored", stacklevel=2)
        return None
    for key, (kind, item) in SHAPE.items():
        if key not in data:
            continue
        value = data[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            warnings.warn(f"{path}: {key} = {str(value)[:60]!r} is not of the type a manifest holds; ignored",
                          stacklevel=2)
            del data[key]
        elif item is not None and not all(isinstance(v, item) for v in value):
            warnings.warn(f"{path}: {key} holds entries of the wrong type; those are ignored", stacklevel=2)
            data[key] = [v for v in value if isinstance(v, item)]
    return data


def says(manifest: dict | None, kind: str) -> bool:
    """Whether a job's manifest (its job.json, or None) records a command of ``kind`` (run, sweep)."""
    kinds = (manifest or {}).get("kinds")
    return isinstance(kinds, list) and kind in kinds


# How job.json records a command line: this prefix, then the arguments.
CLI = "python -m harness"
# Sweep options that shape the specs but that the records cannot tell apart from the defaults: how the
# learning rate was tuned and the LoRA alpha and targets. A sweep stores them as the command gave them
# (``options`` of its command entry), and publish copies them into the reproduce command from there.
SWEEP_OPTIONS = ("alpha_policy", "targets", "lr_grid", "lr_extend", "lr_select", "lr_screen")


def write(out, *, kind: str, argv: list[str], lr_grids: dict[str, list[float]] | None = None,
          lr_selection=None, margin: float | None = None, options: dict | None = None) -> Path:
    """Add this command to OUT/job.json: which kinds of job wrote here, each exact command line, and
    the harness version, so that report and publish need not guess what a folder holds. ``lr_grids``
    (a sweep with a learning-rate grid): per sweep point, the rates its first seed is to run; the
    manifest keeps the union over every command, so the tables can tell a grid still running from one
    that is done (see grids). ``lr_selection`` (a tuning.Selection): the rule that chooses
    the rates and the seeds the study reports, the union over every command. ``margin``: the smallest
    difference in Spearman that counts (stats.verdict), where the command set one; the latest wins.
    ``options``: the command's SWEEP_OPTIONS that it gave (strings and numbers), kept with its entry."""
    from harness import __version__
    old = read(out) or {}
    commands = old.get("commands") if isinstance(old.get("commands"), list) else []
    kinds = old.get("kinds") if isinstance(old.get("kinds"), list) else []
    entry = {"kind": kind, "command": f"{CLI} {shlex.join(argv)}", "harness_version": __version__, "at": _now()}
    if options:
        entry["options"] = {k: v for k, v in options.items() if v is not None}
    manifest = {"kinds": sorted({*kinds, kind}), "created_at": old.get("created_at", _now()),
                "commands": [*commands, entry]}
    asked = grids(out, old)
    for point, rates in (lr_grids or {}).items():
        asked[point] = sorted({*asked.get(point, []), *map(float, rates)})
    if asked:
        manifest["lr_grids"] = asked
    if lr_selection is not None:
        from harness import tuning
        old_selection = old.get("lr_selection")
        if isinstance(old_selection, dict):
            lr_selection = tuning.Selection.from_manifest(old).merged(lr_selection)
        manifest["lr_selection"] = lr_selection.to_manifest()
    elif "lr_selection" in old:
        manifest["lr_selection"] = old["lr_selection"]
    if margin is not None or "spearman_margin" in old:
        manifest["spearman_margin"] = margin if margin is not None else old["spearman_margin"]
    path = Path(out) / NAME
    files.write_text_atomic(path, json.dumps(manifest, indent=2) + "\n")
    return path


def margin(out, manifest: Manifest = NOT_GIVEN) -> float:
    """The job's smallest difference of interest in Spearman (job.json's spearman_margin, set by --margin),
    else the documented default (stats.SPEARMAN_MARGIN); a malformed one is ignored with a warning."""
    from harness import stats
    manifest = resolved(out, manifest)
    value = (manifest or {}).get("spearman_margin")
    if value is None:
        return stats.SPEARMAN_MARGIN
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value < 1:
        return float(value)
    warnings.warn(f"{Path(out) / NAME}: spearman_margin = {value!r} is not a number in [0, 1); the default "
                  f"{stats.SPEARMAN_MARGIN} is used", stacklevel=2)
    return stats.SPEARMAN_MARGIN


def grids(out, manifest: Manifest = NOT_GIVEN) -> dict[str, list[float]]:
    """The learning rates the sweeps in OUT were asked to run on each point's first seed (the manifest's
    lr_grids), or {} where no sweep with a grid recorded them (folders made before they were recorded).
    An entry that is not a list of positive numbers is left out, with a warning."""
    manifest = resolved(out, manifest)
    raw = (manifest or {}).get("lr_grids")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        warnings.warn(f"{Path(out) / NAME}: lr_grids is not a table of point: rates; ignored", stacklevel=2)
        return {}
    good = {}
    for point, rates in raw.items():
        if isinstance(rates, list) and rates and all(
                isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0 for r in rates):
            good[str(point)] = sorted(float(r) for r in rates)
        else:
            warnings.warn(f"{Path(out) / NAME}: lr_grids[{point!r}] = {rates!r} is not a list of rates; "
                          "ignored", stacklevel=2)
    return good


def sweep_options(manifest: dict | None) -> dict | None:
    """SWEEP_OPTIONS as the latest sweep command in a job manifest gave them: from its ``options`` table,
    or, in a manifest written before sweeps stored one, from its command line read with the command
    line's own parser (so ``--lr-grid=registry`` and abbreviations read as they ran); None where no sweep
    ran there or its command cannot be read (with a warning)."""
    commands = [c for c in (manifest or {}).get("commands", []) if isinstance(c, dict) and c.get("kind") == "sweep"]
    if not commands:
        return None
    stored = commands[-1].get("options")
    return _stored_options(stored) if isinstance(stored, dict) else _parsed_options(commands[-1].get("command", ""))


def _stored_options(stored: dict) -> dict:
    good = {o: stored[o] for o in SWEEP_OPTIONS
            if isinstance(stored.get(o), (str, int, float)) and not isinstance(stored.get(o), bool)}
    bad = sorted(o for o in stored if o in SWEEP_OPTIONS and o not in good)
    if bad:
        warnings.warn(f"job manifest: the sweep's stored option(s) {', '.join(bad)} are not strings or numbers; "
                      "left out of the reproduce command", stacklevel=4)
    return good


def _parsed_options(command) -> dict | None:
    from harness.cli import build_parser
    prefix = shlex.split(CLI)  # how write records a command line
    try:
        words = shlex.split(str(command))
        if words[:len(prefix)] != prefix:
            raise ValueError(f"it does not start with {CLI!r}")
        # argparse's own message goes in the warning; a stored --help or --version prints nothing
        with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()):
            args, _ = build_parser().parse_known_args(words[len(prefix):])
    except (ValueError, SystemExit) as exc:
        why = (err.getvalue().strip() or "the parser stopped at it") if isinstance(exc, SystemExit) else str(exc)
        warnings.warn(f"job manifest: cannot read the sweep command {command!r} ({why}); its learning-rate "
                      "options are left out of the reproduce command", stacklevel=4)
        return None
    return {option: getattr(args, option, None) for option in SWEEP_OPTIONS}


def extend_limit(out, manifest: Manifest = NOT_GIVEN) -> int | None:
    """How many steps past a winning end of its grid the job's latest sweep extends each point
    (``--lr-extend``), so that a table can tell a grid whose extension is still to run from a finished
    one (sweep.grid_edges); None where no sweep with a grid ran there or it cannot be read."""
    manifest = resolved(out, manifest)
    with warnings.catch_warnings():  # publish's reproduce command gives the warning once
        warnings.simplefilter("ignore")
        given = sweep_options(manifest)
    value = (given or {}).get("lr_extend")
    return value if type(value) is int and value >= 0 and (given or {}).get("lr_grid") else None
