"""The learning-rate tuning protocol: choosing a variant's rate from its runs (the rule), what makes a rate
unstable, the screening plan and what the rate search cost. Pure functions over run records.

The rules (``RULES``):

* ``mean`` (the default): the rate with the best **mean validation Spearman over every seed the variant
  reports**, among the rates that ran on all of those seeds and are stable. A screening design keeps the
  cost down: the first seed runs the whole grid (and its extensions), then the best ``k`` stable rates of
  the first seed (``--lr-screen`` k, at least 2) run on the other seeds; where one of them proves unstable
  on another seed, the next best rate of the first seed takes its place (``screening_runs``).
* ``first-seed``: the rate with the best validation Spearman on the first seed alone, then the other
  seeds at that rate: quick, for exploration, and how studies were tuned before (their folders have no
  rule in their manifest and keep it). Its tables say "rate chosen on seed N only".

A rate is **unstable** (``unstable``) when on any seed (1) training diverged (a non-finite loss, recorded
as a failed run with reason ``diverged``), (2) validation Spearman ended below the untrained model's
(the baseline of the same job), or (3) training collapsed: validation Spearman fell below half of the best
seed's at the same rate, or, at a rate above the variant's best rate, below half of the variant's best
(quality falls off a cliff past the optimum), and in either case more than 0.1 below it (a seed at 0.004
against 0.011 is noise near zero, not a collapse). An unstable rate is never chosen by ``mean``; its runs stay
in ``runs/`` and in the sensitivity plot, marked.

**Headroom** (``headroom``): ``mean`` never chooses a rate at the edge of divergence. Where a rate above the
candidate proved unstable, the candidate is chosen only if a rate at least ``HEADROOM`` (1.5) times it, below
the unstable one, ran on every seed and is stable there; the sweep runs that probe (1.5 times the candidate,
or a tried rate in between that lacks seeds) on every seed it lacks. Where the unstable rate lies within 1.5
times the candidate, or the probe proves unstable, the candidate is passed over (``Choice.edge``) and the
next-best rate by the mean is taken. On a 2.5x grid a rate one step below a collapse needs one probe (at most
two rounds: a stable probe may itself win, and needs its own); a rate with nothing unstable above it needs none.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from harness import methods

RULES = ("mean", "first-seed")
HEADROOM = 1.5  # the mean rule's chosen rate: this multiple of it is stable on every seed, where anything above failed
RULE_TEXT = ("A rate is unstable when on any seed training diverged (a non-finite loss), validation Spearman "
             "ended below the untrained model's, or it collapsed: below half of the best seed's at that rate, "
             "or, at a rate above the variant's best, below half of the variant's best (and in either case more "
             "than 0.1 below it). An unstable rate is never chosen by the mean rule, nor one at the edge of "
             f"divergence: where a rate above it proved unstable, {HEADROOM:g} times it must have run on every "
             "seed and be stable there.")
DEFAULT_RULE = "mean"
DEFAULT_SCREEN = 2
COLLAPSE_SHARE = 0.5  # a seed below this share of the best seed's validation Spearman collapsed ...
COLLAPSE_DROP = 0.1  # ... when it also lies this far below it (0.004 against 0.011 is noise near zero)


def point_of(spec: dict) -> str:
    """The variant a run belongs to (method, rank, precision): methods.variant_label."""
    return methods.variant_label(spec)


def _diverged(record: dict) -> bool:
    return record["status"] == "failed" and (record.get("error") or {}).get("reason") == "diverged"


def _validation(record: dict) -> float | None:
    value = (record.get("quality") or {}).get("validation_spearman")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9)


@dataclass
class Point:
    """Every tried (rate, seed) of one variant: the validation Spearman, or None where it diverged."""
    name: str
    runs: dict[float, dict[int, float | None]] = field(default_factory=lambda: defaultdict(dict))
    records: list[dict] = field(default_factory=list)

    @property
    def seeds(self) -> list[int]:
        return sorted({s for by_seed in self.runs.values() for s in by_seed})

    @property
    def first_seed(self) -> int:
        return self.seeds[0]

    def rates(self) -> list[float]:
        return sorted(self.runs)

    def mean(self, rate: float) -> float | None:
        vals = list(self.runs[rate].values())
        return None if not vals or any(v is None for v in vals) else sum(vals) / len(vals)


def points(records: list[dict]) -> dict[str, Point]:
    """The trained variants of a job with their tried rates: successful runs and diverged ones (a rate
    at which training diverged was tried). Other failures (a crash, a kill, a timeout) say nothing about
    the rate; the sweep retries them."""
    out: dict[str, Point] = {}
    for r in records:
        if not methods.trains(r["method"]) or not (r["status"] == "success" or _diverged(r)):
            continue
        name = point_of(r["spec"])
        point = out.setdefault(name, Point(name))
        rate = next((t for t in point.runs if _close(t, r["spec"]["learning_rate"])), r["spec"]["learning_rate"])
        point.runs[rate][r["spec"]["seed"]] = None if _diverged(r) else _validation(r)
        point.records.append(r)
    return out


def baseline_validation(records: list[dict]) -> float | None:
    """The untrained model's validation Spearman (mean over the job's baseline runs), or None."""
    vals = [v for r in records if not methods.trains(r["method"]) and r["status"] == "success"
            if (v := _validation(r)) is not None]
    return sum(vals) / len(vals) if vals else None


def unstable(point: Point, baseline: float | None) -> dict[float, str]:
    """The unstable rates of a variant, each with the reason (the module's rule), e.g.
    ``{3.13e-3: "collapsed on seed 1 (-0.051 against 0.400 on seed 0)"}``."""
    found = [v for by_seed in point.runs.values() for v in by_seed.values() if v is not None]
    best = max(found, default=None)
    best_rate = max((rate for rate, by_seed in point.runs.items() for v in by_seed.values() if v == best),
                    default=None)
    out = {}
    for rate, by_seed in point.runs.items():
        seeds = sorted(by_seed)
        if any(by_seed[s] is None for s in seeds):
            out[rate] = "diverged on seed " + ", ".join(str(s) for s in seeds if by_seed[s] is None)
            continue
        low = [s for s in seeds if baseline is not None and by_seed[s] < baseline]
        if low:
            out[rate] = f"below the untrained model ({baseline:.3f}) on seed {low[0]} ({by_seed[low[0]]:.3f})"
            continue
        top = max(seeds, key=lambda s: by_seed[s])
        fell = [s for s in seeds if by_seed[top] > 0 and by_seed[s] < COLLAPSE_SHARE * by_seed[top]
                and by_seed[top] - by_seed[s] > COLLAPSE_DROP]
        if fell:
            s = fell[0]
            out[rate] = f"collapsed on seed {s} ({by_seed[s]:.3f} against {by_seed[top]:.3f} on seed {top})"
            continue
        if best is not None and best > 0 and rate > best_rate and not _close(rate, best_rate):
            past = [s for s in seeds if by_seed[s] < COLLAPSE_SHARE * best and best - by_seed[s] > COLLAPSE_DROP]
            if past:
                s = past[0]
                out[rate] = (f"collapsed past the best rate on seed {s} ({by_seed[s]:.3f} against the best "
                             f"{best:.3f} at {best_rate:g})")
    return out


@dataclass(frozen=True)
class Choice:
    """A variant's chosen rate and how it was chosen, or why there is none yet."""
    rate: float | None
    rule: str  # the sentence the tables show, e.g. "mean validation over seeds 0, 1, 2"
    seeds: tuple[int, ...]
    stable: tuple[float, ...]  # the stable rates tried, sorted
    unstable: dict  # rate -> reason
    pending: str = ""  # why no rate (or not the final one) is chosen yet: "1.25e-3 needs seeds 1, 2"
    edge: dict = field(default_factory=dict)  # rate -> why it was passed over at the edge of divergence

    def _span(self) -> tuple[list[float], int, int] | None:
        """The rates tried, sorted, and the indices of the contiguous stable run around the chosen rate
        (none where the chosen rate is itself unstable: only the first-seed rule can choose one)."""
        if self.rate is None or self.rate in self.unstable:
            return None
        tried = sorted([*self.stable, *self.unstable])
        lo = hi = next(i for i, t in enumerate(tried) if _close(t, self.rate))
        while lo > 0 and tried[lo - 1] in self.stable:
            lo -= 1
        while hi < len(tried) - 1 and tried[hi + 1] in self.stable:
            hi += 1
        return tried, lo, hi

    @property
    def stable_steps(self) -> int | None:
        """Width of the contiguous stable range around the chosen rate, in grid steps (rates tried)."""
        span = self._span()
        return None if span is None else span[2] - span[1]

    def stable_range(self) -> tuple[float, float] | None:
        """The lowest and highest rate of that range."""
        span = self._span()
        return None if span is None else (span[0][span[1]], span[0][span[2]])


def _seed_list(seeds) -> str:
    return ", ".join(map(str, seeds))


def choose(records: list[dict], rule: str = DEFAULT_RULE, *, seeds: list[int] | None = None,
           screen: int = DEFAULT_SCREEN) -> dict[str, Choice]:
    """Per variant, its Choice under ``rule``. ``seeds``: the seeds the study reports (the manifest's;
    default: every seed the variant has run), so that a rate counts as run on all of them only once it is."""
    if rule not in RULES:
        raise ValueError(f"unknown learning-rate rule {rule!r}; one of {', '.join(RULES)}")
    base = baseline_validation(records)
    out = {}
    for name, point in points(records).items():
        bad = unstable(point, base)
        stable = tuple(sorted(r for r in point.runs if r not in bad))
        first = point.first_seed
        if rule == "first-seed":
            on_first = [r for r in point.rates() if point.runs[r].get(first) is not None]
            rate = max(on_first, key=lambda r: point.runs[r][first], default=None)
            out[name] = Choice(rate, f"validation on seed {first} only", (first,), stable, bad)
            continue
        wanted = sorted(set(seeds or point.seeds) | set(point.seeds))
        rate, edge, probe = _clear_of_the_edge(point, bad, wanted)
        todo = _screen_todo(point, bad, wanted, screen)
        needs = [_needs(r, m) for r, m in todo]
        if probe:
            t, missing, of = probe
            needs.append(f"{_needs(t, missing)} (the headroom of {of:g})")
        pending = "; ".join(needs)
        if rate is None and not pending:
            pending = "every rate tried is unstable" + (" or at the edge of divergence" if edge else "")
        out[name] = Choice(rate, f"mean validation over seeds {_seed_list(wanted)}", tuple(wanted), stable, bad,
                           pending, edge)
    return out


def _needs(rate: float, seeds: list[int]) -> str:
    """"1.25e-3 needs seeds 1, 2": a run the rule still waits for, as Choice.pending says it."""
    return f"{rate:g} needs seed{'s' if len(seeds) > 1 else ''} {_seed_list(seeds)}"


def _above_by(rate: float, other: float, factor: float) -> bool:
    """Whether ``other`` is at least ``factor`` times ``rate`` (up to the rounding of a rate written as text)."""
    return other >= rate * factor * (1 - 1e-6)


def probe_rate(rate: float) -> float:
    """HEADROOM times ``rate``, rounded up to three significant digits (3.125e-3 gives 4.69e-3): at least
    the headroom it tests, and a rate that reads the same in a file name, a table and a command."""
    target = rate * HEADROOM
    unit = 10 ** (math.floor(math.log10(target)) - 2)
    return float(f"{math.ceil(target / unit * (1 - 1e-12)) * unit:.3g}")


def headroom(point: Point, rate: float, bad: dict, seeds: list[int]) -> tuple[str, object]:
    """Whether a stable ``rate`` keeps clear of the edge of divergence (the module's rule), as
    ``("clear", None)``, ``("edge", reason)`` or ``("probe", (probe rate, seeds it lacks))``."""
    unstable_above = [t for t in bad if t > rate and not _close(t, rate)]
    if not unstable_above:
        return "clear", None
    limit = min(unstable_above)
    evidence = [t for t in sorted(point.runs) if t < limit and _above_by(rate, t, HEADROOM)]
    if any(set(seeds) <= set(point.runs[t]) for t in evidence):
        return "clear", None
    if evidence:  # a stable rate tried in the headroom: complete it rather than run a new one
        return "probe", (evidence[0], [s for s in seeds if s not in point.runs[evidence[0]]])
    probe = probe_rate(rate)
    if limit <= probe or _close(limit, probe):
        return "edge", f"{limit:g}, within {HEADROOM:g} times it, is unstable ({bad[limit]})"
    return "probe", (probe, list(seeds))


def _clear_of_the_edge(point: Point, bad: dict, seeds: list[int]):
    """The mean rule's choice: of the stable rates run on every seed of ``seeds``, the one with the best mean
    validation whose headroom holds. Returns the rate (None where there is none yet), the rates passed over
    at the edge of divergence (rate -> reason) and the first probe still to run (probe rate, its missing
    seeds, the candidate it tests) or None: while it runs, the next clear rate stands in."""
    complete = [r for r in point.runs if r not in bad and set(seeds) <= set(point.runs[r])]
    edge, probe = {}, None
    for rate in sorted(complete, key=lambda r: -point.mean(r)):
        verdict, detail = headroom(point, rate, bad, seeds)
        if verdict == "clear":
            return rate, edge, probe
        if verdict == "edge":
            edge[rate] = detail
        elif probe is None:
            probe = (*detail, rate)
    return None, edge, probe


def _screen_todo(point: Point, bad: dict, seeds: list[int], screen: int) -> list[tuple[float, list[int]]]:
    """The screening runs a variant still needs: the best ``screen`` rates of its first seed that are not
    known to be unstable, each with the seeds it has not run yet."""
    first = point.first_seed
    ranked = sorted((r for r in point.runs if r not in bad and point.runs[r].get(first) is not None),
                    key=lambda r: -point.runs[r][first])
    todo = []
    for rate in ranked[:screen]:
        missing = [s for s in seeds if s not in point.runs[rate]]
        if missing:
            todo.append((rate, missing))
    return todo


def screening_runs(specs, records: list[dict], seeds: list[int], screen: int = DEFAULT_SCREEN):
    """The specs to run next under the ``mean`` rule: for each variant of ``specs`` (the sweep's first-seed
    specs), its best ``screen`` stable first-seed rates on every seed of ``seeds`` they lack, and once those
    have run, the headroom probe its best candidate needs (the module's rule) on the seeds it lacks. Call
    again after running them: a candidate that proved unstable or at the edge is replaced by the next rate
    (deterministic from the records, so a resumed sweep proposes the same runs)."""
    import dataclasses
    by_point = points(records)
    base = baseline_validation(records)
    out, seen = [], set()
    for spec in specs:
        if not methods.trains(spec.arm):
            continue
        name = point_of(spec.to_dict())
        if name in seen or name not in by_point:
            continue
        seen.add(name)
        point = by_point[name]
        bad = unstable(point, base)
        todo = _screen_todo(point, bad, seeds, screen)
        if not todo:
            wanted = sorted(set(seeds) | set(point.seeds))
            _, _, probe = _clear_of_the_edge(point, bad, wanted)
            todo = [probe[:2]] if probe else []
        for rate, missing in todo:
            out += [dataclasses.replace(spec, seed=s, learning_rate=rate) for s in missing]
    return out


def run_hours(record: dict) -> float | None:
    """A run's wall time from its worker's start to its record, in hours (what the run cost this machine)."""
    from datetime import datetime
    try:
        start = datetime.fromisoformat(record["started_at"])
        end = datetime.fromisoformat(record["finished_at"])
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.0, (end - start).total_seconds() / 3600)


def tuning_cost(point: Point, rate: float | None) -> dict:
    """Runs and machine-hours a variant spent on its rate search (runs at other rates) and on its final
    runs (at the chosen rate)."""
    tuning = [r for r in point.records if rate is None or not _close(r["spec"]["learning_rate"], rate)]
    final = [r for r in point.records if rate is not None and _close(r["spec"]["learning_rate"], rate)]
    hours = lambda rs: sum(h for r in rs if (h := run_hours(r)) is not None)  # noqa: E731
    return {"tuning_runs": len(tuning), "tuning_hours": hours(tuning), "final_runs": len(final),
            "final_hours": hours(final)}


@dataclass(frozen=True)
class Selection:
    """How a job chooses its rates: the rule, the seeds its study reports and the screening width. A job
    folder records it in its manifest (``lr_selection``); a folder without one (made before this rule
    existed) keeps the rule it was tuned by, ``first-seed``."""
    rule: str = "first-seed"
    seeds: tuple[int, ...] = ()
    screen: int = DEFAULT_SCREEN

    def to_manifest(self) -> dict:
        return {"rule": self.rule, "seeds": list(self.seeds), "screen": self.screen}

    @classmethod
    def from_manifest(cls, manifest: dict | None) -> Selection:
        """The manifest's ``lr_selection``; the legacy rule where there is none or it is malformed."""
        raw = (manifest or {}).get("lr_selection")
        if not isinstance(raw, dict) or raw.get("rule") not in RULES:
            return cls()
        seeds = raw.get("seeds") if isinstance(raw.get("seeds"), list) else []
        screen = raw.get("screen")
        return cls(raw["rule"], tuple(sorted({s for s in seeds if type(s) is int and s >= 0})),
                   screen if type(screen) is int and screen >= 2 else DEFAULT_SCREEN)

    def merged(self, other: Selection) -> Selection:
        """This selection with another command's seeds added (a study that grows keeps every seed)."""
        return Selection(self.rule, tuple(sorted({*self.seeds, *other.seeds})), self.screen)

    def choose(self, records: list[dict]) -> dict[str, Choice]:
        return choose(records, self.rule, seeds=list(self.seeds) or None, screen=self.screen)


def sensitivity_rows(records: list[dict], selection: Selection | None = None) -> list[dict]:
    """One row per tried (variant, rate, seed): validation and test Spearman, whether the rate is unstable
    (and why), why it was passed over at the edge of divergence (if it was), whether it is the chosen one.
    The data of plots/lr_sensitivity (how forgiving each method is to its rate)."""
    selection = selection or Selection()
    choices = selection.choose(records)
    rows = []
    by_point = points(records)
    for name in sorted(by_point, key=lambda n: methods.sort_key(by_point[n].records[0]["spec"])):
        point, choice = by_point[name], choices[name]
        for r in sorted(point.records, key=lambda r: (r["spec"]["learning_rate"], r["spec"]["seed"])):
            rate = next(t for t in point.runs if _close(t, r["spec"]["learning_rate"]))
            quality = r.get("quality") or {}
            test = quality.get("spearman")
            rows.append({"point": name, "learning_rate": rate, "seed": r["spec"]["seed"],
                         "val_spearman": point.runs[rate].get(r["spec"]["seed"]),
                         "test_spearman": test if isinstance(test, (int, float)) else None,
                         "diverged": _diverged(r), "unstable": rate in choice.unstable,
                         "why_unstable": choice.unstable.get(rate),
                         "why_edge": choice.edge.get(rate),
                         "chosen": choice.rate is not None and _close(rate, choice.rate), "rule": choice.rule})
    return rows
