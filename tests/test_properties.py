"""The input promise, stated once per surface and checked on generated inputs (hypothesis).

The promise: **either the command succeeds, or it exits 2 with exactly one `error:` line; never a
traceback; on exit 2 nothing is written to --out or the working folder; the inputs are untouched.**
`run` and `sweep` are called with ``--dry-run`` (every check that can be made before training, then
stop), so that a generated input that is valid costs no training; the checks are the same ones a real
run makes before its first worker starts.

Surfaces: spec fields through --set, TOML config files (with [arms.*] and [sweep] tables), the
options of every subcommand, data files (CSV and JSONL from a grammar, in several encodings, and
special files), record files for report, compare, recommend, sizes, serve and publish, and a local model
folder given as the model (its JSON files mutated, replaced or not JSON, its config's sizes at the limits).

The CI profile (the default) runs a fixed seed and a bounded number of examples; ``tox -e fuzz``
(HYPOTHESIS_PROFILE=fuzz) runs many more. What a long run finds becomes an ``@example`` here.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import hashlib
import io
import json
import os
import stat
import tempfile
import unittest.mock
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from harness import cpu_share
from harness.__main__ import main
from harness.report import run_log
from harness.spec import RunSpec

FIXTURES = Path(__file__).parent / "fixtures"
TINY = ["--set", "model=tiny-random-bert", "--set", "train_limit=64", "--set", "eval_limit=48"]

settings.register_profile("ci", max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", 40)), derandomize=True,
                          deadline=None, print_blob=True, database=None,  # a fixed seed needs no example store
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                 HealthCheck.function_scoped_fixture])
settings.register_profile("fuzz", max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", 2000)), deadline=None,
                          print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                  HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# --- the promise ----------------------------------------------------------------------------------

@dataclass
class Outcome:
    code: int
    out: str
    err: str
    wrote: list[str] = field(default_factory=list)


def _snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (not following links) with a hash of what a plain file holds."""
    seen = {}
    for path in sorted(folder.rglob("*")):
        mode = path.lstat().st_mode
        seen[str(path.relative_to(folder))] = (hashlib.sha256(path.read_bytes()).hexdigest()
                                               if stat.S_ISREG(mode) else stat.S_IFMT(mode))
    return seen


def invoke(argv: list[str]) -> tuple[int, str, str]:
    """main(argv) in this process, its output captured. A warning that leaves main unprinted would reach
    a user's terminal as Python's two-line ``file:line: UserWarning`` (pytest would hide it): it is
    written to the captured stderr in that form, so that the promise of one ``warning:`` line sees it."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
    for w in escaped:
        if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)):  # hidden by default
            err.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno))
    return code, out.getvalue(), err.getvalue()


def keeps_the_promise(argv: list[str], files: dict[str, bytes] | None = None, *, prepare=None,
                      ok=(0,), writes_on_success: bool = False, written: str | None = None) -> Outcome:
    """Run ``argv`` (INPUT/ and OUT/ stand for a fresh input folder and output path) in a fresh working
    folder and assert the promise. ``prepare(inputs)`` may lay out more inputs (folders, records).
    ``written``: a folder under INPUT that the command writes its output into (report's job folder, a
    results root); only the run folders (``runs/`` at any depth) count as input there."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inputs, work, out = root / "inputs", root / "cwd", root / "out"
        inputs.mkdir()
        work.mkdir()
        for name, payload in (files or {}).items():
            (inputs / name).write_bytes(payload)
        if prepare is not None:
            prepare(inputs)
        def snapshot():
            seen = _snapshot(inputs)
            if written is not None:  # report writes its tables beside the records it reads
                seen = {k: v for k, v in seen.items()
                        if not (k.startswith(written + "/") or k == written) or "runs" in Path(k).parts}
            return seen
        before = snapshot()
        argv = [a.replace("INPUT", str(inputs)).replace("OUT", str(out)) for a in argv]
        cwd = os.getcwd()
        os.chdir(work)
        try:
            code, stdout, stderr = invoke(argv)
        finally:
            os.chdir(cwd)
        assert "Traceback" not in stderr and "Traceback" not in stdout, stderr[-3000:]
        assert code in (*ok, 2), f"exit {code}: {stderr[-3000:]}"
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        if code == 2:
            assert len(errors) == 1, stderr
            assert not out.exists(), f"exit 2 but {out} was written"
            assert list(work.iterdir()) == [], f"exit 2 but the working folder holds {list(work.iterdir())}"
        else:
            assert not errors, stderr
            if not writes_on_success:
                assert not out.exists() and list(work.iterdir()) == []
        assert snapshot() == before, "the inputs were changed"
        return Outcome(code, stdout, stderr)


# --- values: TOML literals and raw text -------------------------------------------------------------

def _toml_string(text: str) -> str:
    return json.dumps(text)  # a TOML basic string, escapes included (lone surrogates stay invalid TOML)


def _toml_float(x: float) -> str:
    if x != x:
        return "nan"
    if x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    return repr(x)


SCALARS = st.one_of(
    st.integers(min_value=-2**70, max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(_toml_float),
    st.sampled_from(["0", "1", "-1", "0.5", "1e-4", "1e400", "-0.0", "true", "false", "2**31", "4294967296"]),
    st.booleans().map(lambda b: str(b).lower()),
    st.text(max_size=40).map(_toml_string),
)
TOML_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
    st.dictionaries(st.sampled_from(["r", "alpha", "x", "epochs", "target_modules"]), inner, max_size=3).map(
        lambda d: "{" + ", ".join(f"{k} = {v}" for k, v in d.items()) + "}")), max_leaves=8)
RAW = st.text(max_size=60)  # not TOML: kept as a string by --set
VALUES = st.one_of(TOML_VALUES, RAW)

FIELDS = sorted({f for f in RunSpec.__dataclass_fields__ if f not in ("arm", "lora")}
                | {f"lora.{k}" for k in ("r", "alpha", "dropout", "target_modules")})
ARM_NAMES = ["baseline", "standard", "lora", "dora", "ia3", "vera", "adalora", "full", "nope"]
KEYS = st.one_of(st.sampled_from(FIELDS),
                 st.builds(lambda arm, f: f"arms.{arm}.{f}", st.sampled_from(ARM_NAMES), st.sampled_from(FIELDS)),
                 st.text(min_size=1, max_size=20).filter(lambda k: "=" not in k))


@given(sets=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=3))
@example(sets=[("max_seq_length", "100000")])  # far above the model's positions
@example(sets=[("model", ":")])  # found by the fuzz run: once a traceback from huggingface_hub's repo id check
@example(sets=[("lora.target_modules", '["query", "query"]')])
@example(sets=[("arms.lora.lora.r", "99999999999999999999")])
def test_every_spec_field_through_set(sets):
    argv = ["run", "--dry-run", *TINY, "--arms", "baseline,standard,lora", "--out", "OUT"]
    for key, value in sets:
        argv += ["--set", f"{key}={value}"]
    keeps_the_promise(argv)


def _toml_table(pairs) -> str:
    return "\n".join(f"{k} = {v}" for k, v in pairs)


CONFIG_TEXT = st.one_of(
    st.lists(st.tuples(st.sampled_from(FIELDS + ["sweep", "arms", "x"]).filter(lambda k: "." not in k),
                       TOML_VALUES), max_size=4).map(_toml_table),
    st.builds(lambda top, arm, inner: f"{_toml_table(top)}\n[arms.{arm}]\n{_toml_table(inner)}\n",
              st.lists(st.tuples(st.sampled_from(["epochs", "seed", "max_steps"]), TOML_VALUES), max_size=2),
              st.sampled_from(ARM_NAMES), st.lists(st.tuples(st.sampled_from(FIELDS[:12]), TOML_VALUES), max_size=3)),
    st.text(max_size=200),  # anything at all
)
SWEEP_KEYS = ["methods", "ranks", "precisions", "seeds", "alpha_policy", "targets", "lr_grid", "lr_extend",
              "lr_select", "lr_screen", "eval_every_steps", "bogus"]


@given(text=CONFIG_TEXT, encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
@example(text="[arms.lora]\nlora = 5\n", encoding="utf-8")
def test_every_config_file(text, encoding):
    payload = text.encode(encoding, errors="surrogatepass" if encoding.startswith("utf-8") else "replace")
    keeps_the_promise(["run", "--dry-run", *TINY, "--out", "OUT", "--config", "INPUT/c.toml"], {"c.toml": payload})


@given(table=st.lists(st.tuples(st.sampled_from(SWEEP_KEYS), TOML_VALUES), max_size=4, unique_by=lambda kv: kv[0]))
@example(table=[("ranks", "[1, 1]")])
@example(table=[("lr_screen", "1")])
def test_every_sweep_table(table):
    text = "[sweep]\n" + _toml_table(table) + "\n"
    keeps_the_promise(["sweep", "--dry-run", *TINY, "--out", "OUT", "--config", "INPUT/c.toml"],
                      {"c.toml": text.encode("utf-8", errors="surrogatepass")})


# --- options of every subcommand ------------------------------------------------------------------

OPTION_VALUES = st.one_of(st.text(max_size=30), st.sampled_from(
    ["0", "-1", "1e400", "nan", "inf", "-inf", "0,0", "1,2,3", "all", "lora", "fp32,bf16", ",", "", "x" * 300,
     "standard=1e-5;lora=1e-4", "2r", "fixed:16", "mean", "first-seed", "../..", "/dev/null"]),
    st.integers(-10, 10).map(str))
RUN_OPTIONS = ["--dataset", "--arms", "--seeds", "--profile", "--margin", "--executor", "--ray-address",
               "--ray-max-retries", "--per-category"]
SWEEP_OPTIONS = ["--dataset", "--methods", "--ranks", "--precisions", "--seeds", "--alpha-policy", "--targets",
                 "--lr-grid", "--lr-select", "--lr-screen", "--lr-extend", "--eval-every", "--profile", "--margin"]
FLAGS = ["--force", "--no-retry-failed", "--save-models", "--debug-not-an-option"]


@given(options=st.lists(st.tuples(st.sampled_from(RUN_OPTIONS), OPTION_VALUES), max_size=3),
       flags=st.lists(st.sampled_from(FLAGS), max_size=2))
@example(options=[("--arms", ",".join(f"arm{i}" for i in range(17)))], flags=[])  # 17 unknown arms: one line
@example(options=[("--margin", "nan")], flags=[])
def test_every_run_option(options, flags):
    argv = ["run", "--dry-run", *TINY, "--out", "OUT", *flags]
    for option, value in options:
        argv += [option, value]
    keeps_the_promise(argv)


@given(options=st.lists(st.tuples(st.sampled_from(SWEEP_OPTIONS), OPTION_VALUES), max_size=3),
       flags=st.lists(st.sampled_from(FLAGS), max_size=2))
@example(options=[("--lr-grid", "lora=1e-4"), ("--lr-select", "mean"), ("--seeds", "0")], flags=[])
def test_every_sweep_option(options, flags):
    argv = ["sweep", "--dry-run", *TINY, "--out", "OUT", "--ranks", "4", *flags]
    for option, value in options:
        argv += [option, value]
    keeps_the_promise(argv)


@given(tolerance=OPTION_VALUES, extra=st.lists(OPTION_VALUES, max_size=2))
@example(tolerance="nan", extra=[])
def test_every_compare_option(tolerance, extra):
    def prepare(inputs):
        for job in ("a", "b"):
            (inputs / job / "runs").mkdir(parents=True)
            for fixture in FIXTURES.glob("run-v4-*.json"):
                (inputs / job / "runs" / fixture.name).write_bytes(fixture.read_bytes())
    keeps_the_promise(["compare", "INPUT/a", "INPUT/b", *extra, "--quality-tolerance", tolerance, "--out", "OUT"],
                      prepare=prepare, writes_on_success=True)


@given(alpha=OPTION_VALUES, effect=OPTION_VALUES, base=st.sampled_from(["INPUT/missing.json", "INPUT/a.json", "INPUT"]))
@example(alpha="nan", effect="0.02", base="INPUT/a.json")
def test_every_bench_compare_option(alpha, effect, base):
    files = {"a.json": json.dumps({"benchmarks": [{"name": "t", "stats": {"data": [1.0, 1.1, 0.9]}}]}).encode()}
    keeps_the_promise(["bench-compare", base, "INPUT/a.json", "--alpha", alpha, "--min-effect", effect],
                      files, ok=(0, 1))


# Every option of every subcommand, read from the parser itself, so that an option or a subcommand added
# later is generated too without anyone listing it: each subcommand runs on real inputs (fixture records,
# a saved benchmark file), with a random choice of its options at hostile values. Path options get paths
# inside the test's own folders (a hostile path elsewhere could make a command write outside them; an
# output option pointed at an input folder writes there because it was told to).
def _subparsers() -> dict:
    import argparse

    from harness.cli import build_parser
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _fixture_job(*names):
    def prepare(inputs):
        for name in names:
            (inputs / name / "runs").mkdir(parents=True)
            for fixture in FIXTURES.glob("run-v4-*.json"):
                (inputs / name / "runs" / fixture.name).write_bytes(fixture.read_bytes())
        (inputs / "a.json").write_text(json.dumps({"benchmarks": [{"name": "t", "stats": {"data": [1.0, 1.1, 0.9]}}]}))
    return prepare


# subcommand -> (the arguments it starts from, keeps_the_promise's keywords); --dry-run keeps run and sweep
# from training a valid draw
COMMANDS = {
    "run": (["--dry-run", *TINY, "--out", "OUT"], {}),
    "sweep": (["--dry-run", *TINY, "--out", "OUT", "--ranks", "4"], {}),
    "report": (["INPUT/job"], {"ok": (0, 1), "writes_on_success": True, "written": "job"}),
    "recommend": (["INPUT/job"], {}),
    "compare": (["INPUT/job", "INPUT/b", "--out", "OUT"], {"writes_on_success": True}),
    "sizes": (["INPUT/job", "INPUT/b", "--out", "OUT"], {"writes_on_success": True}),
    "bench-compare": (["INPUT/a.json", "INPUT/a.json"], {"ok": (0, 1)}),
    "serve": (["INPUT/job"], {"ok": (0, 1), "writes_on_success": True, "written": "job"}),
    "publish": (["--results", "OUT"], {"writes_on_success": True}),
}
# where the command writes (an existing input folder there would be written on purpose), and what it reads
OUTPUT_OPTIONS = {"out", "results"}
INPUT_OPTIONS = {"config", "add", "dataset"}
OUTPUT_PATHS = st.sampled_from(["OUT", "OUT/x", "OUT/../OUT", "", "/dev/null", "/dev/null/x"])
INPUT_PATHS = st.sampled_from(["INPUT", "INPUT/job", "INPUT/b", "INPUT/missing", "INPUT/a.json", "INPUT/job/runs",
                               "", "/dev/null", "OUT"])


def test_every_subcommand_has_inputs_for_the_option_property():
    """A subcommand added to the parser without an entry in COMMANDS would go ungenerated."""
    assert sorted(_subparsers()) == sorted(COMMANDS)


@st.composite
def calls(draw):
    """A subcommand and up to three of its options (flags alone, others with a value)."""
    command = draw(st.sampled_from(sorted(COMMANDS)))
    options = [a for a in _subparsers()[command]._actions if a.option_strings and a.dest != "help"]
    picked = []
    for action in draw(st.lists(st.sampled_from(options), max_size=3)) if options else []:
        flag = draw(st.sampled_from(action.option_strings))
        if action.nargs == 0:
            picked.append((flag, None))
        elif action.dest in OUTPUT_OPTIONS | INPUT_OPTIONS:
            picked.append((flag, draw(OUTPUT_PATHS if action.dest in OUTPUT_OPTIONS else INPUT_PATHS)))
        else:
            choices = st.sampled_from(sorted(action.choices)) if action.choices else st.nothing()
            picked.append((flag, draw(choices | OPTION_VALUES)))
    return command, picked


@given(call=calls())
@example(call=("recommend", [("--max-memory", "nan")]))
@example(call=("recommend", [("--min-gain-share", "1e400")]))
@example(call=("publish", [("--add", "INPUT/job"), ("--job", "../x")]))
@example(call=("publish", [("--job", "x" * 300), ("--add", "INPUT/job")]))  # the fuzz run of 2026-12-07: a job
# name longer than the file system allows left the results root and its hardware/dataset folders behind
def test_every_option_of_every_subcommand(call):
    command, picked = call
    start, promise = COMMANDS[command]
    argv = [command, *start]
    for flag, value in picked:
        argv += [flag] if value is None else [flag, value]
    keeps_the_promise(argv, prepare=_fixture_job("job", "b"), **promise)


# --- data files ---------------------------------------------------------------------------------

COLUMNS = ["text_a", "text_b", "score", "category", "group", "split"]
TEXT = st.text(max_size=30) | st.sampled_from(["", " ", "\x00", "\ud800", "a" * 5000, "\u202e", "\r\n", '"', "é"])
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True), TEXT)
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=10)
SCORE = st.one_of(st.floats(0, 1), st.floats(allow_nan=True, allow_infinity=True), JSON_VALUE)
SPLIT = st.sampled_from(["train", "validation", "test", "dev", "", "TRAIN"]) | TEXT


def _row(columns):
    return st.fixed_dictionaries({c: {"score": SCORE, "split": SPLIT}.get(c, TEXT | JSON_VALUE) for c in columns})


JSONL_ROWS = st.lists(st.sampled_from(COLUMNS + ["junk"]), min_size=0, max_size=7).flatmap(
    lambda cols: st.lists(_row(cols), max_size=12))


def _jsonl(rows, junk_lines) -> str:
    lines = [json.dumps(r) for r in rows] + junk_lines
    return "\n".join(lines) + "\n"


def _deep(n: int) -> str:
    return '{"text_a": ' + "[" * n + "]" * n + "}"


def _encode(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="surrogatepass" if encoding.startswith("utf-8") else "replace")


@given(rows=JSONL_ROWS, junk=st.lists(st.sampled_from(["", "{", "[1]", "null", "{}", _deep(50), _deep(100000)])
                                      | st.text(max_size=20), max_size=2),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
@example(rows=[], junk=[_deep(100000)], encoding="utf-8")  # deep nesting: once a RecursionError
def test_every_jsonl_data_file(rows, junk, encoding):
    keeps_the_promise(["run", "--dry-run", *TINY, "--out", "OUT", "--dataset", "INPUT/d.jsonl"],
                      {"d.jsonl": _encode(_jsonl(rows, junk), encoding)})


def _csv_cell(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n\r') else text


CSV = st.lists(st.sampled_from(COLUMNS + ["junk", ""]), min_size=0, max_size=8).flatmap(
    lambda cols: st.lists(st.lists(TEXT | SCORE.map(lambda v: json.dumps(v)), min_size=0, max_size=len(cols) + 1),
                          max_size=12).map(lambda rows: [cols, *rows]))


@given(table=CSV, encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]),
       ending=st.sampled_from(["\n", "\r\n", "\r"]))
def test_every_csv_data_file(table, encoding, ending):
    text = ending.join(",".join(_csv_cell(c) for c in row) for row in table) + ending
    keeps_the_promise(["run", "--dry-run", *TINY, "--out", "OUT", "--dataset", "INPUT/d.csv"],
                      {"d.csv": _encode(text, encoding)})


@pytest.mark.parametrize("kind", ["folder", "fifo", "dev-null-link", "dev-zero-link", "dangling-link", "empty",
                                  "unreadable"])
def test_special_files_as_data(kind):
    def prepare(inputs):
        target = inputs / "d.csv"
        if kind == "folder":
            target.mkdir()
        elif kind == "fifo":
            os.mkfifo(target)
        elif kind == "dev-null-link":
            target.symlink_to("/dev/null")
        elif kind == "dev-zero-link":
            target.symlink_to("/dev/zero")
        elif kind == "dangling-link":
            target.symlink_to(inputs / "nowhere.csv")
        elif kind == "empty":
            target.write_bytes(b"")
        else:
            target.write_text("text_a,text_b,score\na,b,0.5\n")
            target.chmod(0)
    outcome = keeps_the_promise(["run", "--dry-run", *TINY, "--out", "OUT", "--dataset", "INPUT/d.csv"],
                                prepare=prepare)
    if kind != "unreadable" or os.geteuid() != 0:  # root reads a file whatever its mode
        assert outcome.code == 2
    if kind in ("folder", "fifo", "dev-null-link", "dev-zero-link"):
        assert "not found" not in outcome.err, outcome.err  # it exists: say what it is instead


# --- record files -----------------------------------------------------------------------------------

RECORDS = [json.loads(p.read_text()) for p in sorted(FIXTURES.glob("run-v4-*.json"))]


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list) and node:
        yield from _paths(node[0], (*prefix, 0))


# The fixtures predate the CPU-share fields; name them so that hostile values reach them too (the mutation
# adds a field that the record lacks).
CPU_SHARE_PATHS = {("environment", key) for key in cpu_share.ENVIRONMENT_KEYS}
PATHS = sorted({p for r in RECORDS for p in _paths(r) if p} | CPU_SHARE_PATHS, key=str)


@st.composite
def hostile_records(draw):
    """A real record with a few of its values replaced (or removed), anywhere in its tree."""
    return _mutated(draw, copy.deepcopy(draw(st.sampled_from(RECORDS))), PATHS)


def _mutated(draw, tree, paths):
    """``tree`` with one to three of its values (at ``paths``) replaced by any JSON value, or removed."""
    record = tree
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        node = record
        for key in path[:-1]:
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and isinstance(key, int) and node:
                node = node[0]
            else:
                break
        else:
            last = path[-1]
            if isinstance(node, dict):
                if draw(st.booleans()) and last in node:
                    del node[last]
                else:
                    node[last] = draw(JSON_VALUE)
            elif isinstance(node, list) and node:
                node[0] = draw(JSON_VALUE)
    return record


def _record_bytes(record) -> bytes:
    return json.dumps(record, allow_nan=True).encode("utf-8", errors="surrogatepass")


def _job(inputs: Path, name: str, payloads: list[bytes]) -> None:
    (inputs / name / "runs").mkdir(parents=True)
    for i, payload in enumerate(payloads):
        (inputs / name / "runs" / f"r{i}.json").write_bytes(payload)


@given(records=st.lists(hostile_records(), min_size=1, max_size=2))
@example(records=[{**RECORDS[0], "schema_version": "4"}])  # once a traceback building a schema path
@example(records=[{**RECORDS[0], "schema_version": 4.0}])
@example(records=[{**RECORDS[0], "quality": {**RECORDS[0]["quality"],  # found by the fuzz run: a ValueError
                                              "per_category": {"kids": {"spearman": ""}}}}])
@example(records=[{**RECORDS[0], "quality": {**RECORDS[0]["quality"],  # the fuzz run of 2026-12-07: a TypeError
                                              "per_category": {"kids": {"n_pairs": "0"}}}}])
@example(records=[{**RECORDS[0], "environment": {**RECORDS[0]["environment"],  # read by the shared-timings note
                                                 "training_cpu_other_cores": "1", "training_cpu_steal_cores": 1e308,
                                                 "training_cpu_own_cores": None}}])
def test_report_on_hostile_records(records):
    def prepare(inputs):
        _job(inputs, "job", [_record_bytes(r) for r in records])
    outcome = keeps_the_promise(["report", "INPUT/job"], prepare=prepare, ok=(0, 1), writes_on_success=True,
                                written="job")
    for line in outcome.err.splitlines():  # a skipped file is one warning that names it
        assert line.startswith(("warning:", "error:")) or not line.strip(), outcome.err


@given(records=st.lists(hostile_records(), min_size=1, max_size=2))
def test_compare_on_hostile_records(records):
    def prepare(inputs):
        _job(inputs, "a", [_record_bytes(r) for r in records])
        _job(inputs, "b", [p.read_bytes() for p in sorted(FIXTURES.glob("run-v4-*.json"))])
    keeps_the_promise(["compare", "INPUT/a", "INPUT/b", "--out", "OUT"], prepare=prepare, writes_on_success=True)


@given(records=st.lists(hostile_records(), min_size=1, max_size=2))
def test_recommend_on_hostile_records(records):
    def prepare(inputs):
        _job(inputs, "job", [_record_bytes(r) for r in records])
    outcome = keeps_the_promise(["recommend", "INPUT/job"], prepare=prepare)
    assert all(line.startswith(("warning:", "error:")) or not line.strip() for line in outcome.err.splitlines()), \
        outcome.err


@given(records=st.lists(hostile_records(), min_size=1, max_size=2))
@example(records=[{**RECORDS[0], "quality": {**RECORDS[0]["quality"],  # found by the fuzz run: a TypeError
                                              "forgetting": {**(RECORDS[0]["quality"].get("forgetting") or {}),
                                                             "drift_mean_cos": ""}}}])
def test_sizes_on_hostile_records(records):
    def prepare(inputs):
        _job(inputs, "a", [_record_bytes(r) for r in records])
        _job(inputs, "b", [p.read_bytes() for p in sorted(FIXTURES.glob("run-v4-*.json"))])
    outcome = keeps_the_promise(["sizes", "INPUT/a", "INPUT/b", "--out", "OUT"], prepare=prepare,
                                writes_on_success=True)
    assert all(line.startswith(("warning:", "error:")) or not line.strip() for line in outcome.err.splitlines()), \
        outcome.err


@given(records=st.lists(hostile_records(), min_size=1, max_size=2),
       category=st.one_of(st.none(), st.text(min_size=1, max_size=12)),
       folder=st.sampled_from(["models/RUN", "/", "..", "models", "models/../.."]))
def test_serve_on_hostile_records(records, category, folder):
    def prepare(inputs):
        marked = []
        for r in records:
            if category is not None and isinstance(r.get("spec"), dict) and isinstance(r.get("run_id"), str):
                r = {**r, "spec": {**r["spec"], "train_category": category},
                     "artifact_saved": {"folder": folder.replace("RUN", r["run_id"]), "dir_bytes": 1,
                                        "sha256": "0" * 64}}
            marked.append(_record_bytes(r))
        _job(inputs, "job", marked)
        (inputs / "job" / "models").mkdir()
    outcome = keeps_the_promise(["serve", "INPUT/job"], prepare=prepare, ok=(0, 1), writes_on_success=True,
                                written="job")
    assert all(line.startswith(("warning:", "error:")) or not line.strip() for line in outcome.err.splitlines()), \
        outcome.err


@settings(max_examples=max(5, settings().max_examples // 4))  # each publish writes a whole results tree
@given(records=st.lists(hostile_records(), min_size=1, max_size=2), job=st.text(min_size=1, max_size=12))
@example(records=[{**RECORDS[0], "environment": {}}], job="adr")  # once a KeyError before the path check
def test_publish_on_hostile_records(records, job):
    def prepare(inputs):
        _job(inputs, "job", [_record_bytes(r) for r in records])
    keeps_the_promise(["publish", "--add", "INPUT/job", "--job", job, "--results", "OUT"], prepare=prepare,
                      ok=(0, 1), writes_on_success=True)


STUDY = "results/cpu-x-2c/dating/study"  # a study in progress: a run log and a pilot, both generated by publish


@settings(max_examples=max(5, settings().max_examples // 4))  # each publish writes a whole results tree
@given(runs=st.lists(hostile_records(), max_size=2), pilot=st.lists(hostile_records(), min_size=1, max_size=2))
def test_publish_on_a_study_log_and_pilot_of_hostile_records(runs, pilot):
    """publish regenerates the run log and the pilot curves of every study's PROVENANCE.md from its runs/ and
    pilot/runs/: hostile records there are skipped with one warning each, never a traceback."""
    def prepare(inputs):
        study = inputs / STUDY
        _job(study, "pilot", [_record_bytes(r) for r in pilot])
        _job(study.parent, study.name, [_record_bytes(r) for r in runs])
        (study / run_log.PROVENANCE).write_text(f"# A study\n\n{run_log.BEGIN}\n{run_log.END}\n\n"
                                                f"{run_log.PILOT_BEGIN}\n{run_log.PILOT_END}\n", encoding="utf-8")
    outcome = keeps_the_promise(["publish", "--results", "INPUT/results"], prepare=prepare, ok=(0, 1),
                                writes_on_success=True, written="results")
    assert all(line.startswith(("warning:", "error:")) or not line.strip() for line in outcome.err.splitlines()), \
        outcome.err


# --- the job manifest (OUT/job.json) ---------------------------------------------------------------

MANIFEST = {"kinds": ["run", "sweep"], "created_at": "2026-12-01T00:00:00+00:00",
            "commands": [{"kind": "sweep", "command": "python -m harness sweep --lr-grid registry --lr-extend 2",
                          "harness_version": "0.1.0", "at": "2026-12-01T00:00:00+00:00",
                          "options": {"lr_grid": "registry", "lr_extend": 2}}],
            "lr_grids": {"lora r=8": [1e-4, 2e-4, 5e-4]},
            "lr_selection": {"rule": "mean", "seeds": [0, 1], "screen": 2}, "spearman_margin": 0.02}
MANIFEST_PATHS = sorted({p for p in _paths(MANIFEST) if p}, key=str)


@st.composite
def hostile_manifests(draw) -> bytes:
    """job.json as a user's folder may hold it: a real manifest with values replaced or removed, any JSON
    value instead of the whole, or bytes that are not JSON at all."""
    kind = draw(st.sampled_from(["mutated", "mutated", "any-json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=80))
    value = draw(JSON_VALUE) if kind == "any-json" else _mutated(draw, copy.deepcopy(MANIFEST), MANIFEST_PATHS)
    return json.dumps(value, allow_nan=True).encode("utf-8", errors="surrogatepass")


def _job_with_manifest(inputs: Path, manifest: bytes) -> None:
    _job(inputs, "job", [p.read_bytes() for p in sorted(FIXTURES.glob("run-v4-*.json"))])
    (inputs / "job" / "job.json").write_bytes(manifest)


@contextlib.contextmanager
def folder_reads(module, name: str):
    """Count the calls of ``module.name(folder, ...)`` per folder while a command runs: jobfile.read (a
    job.json) or results.load_runs (a folder's run files). Every table of one command takes them from one
    read, so that no job.json, however broken, is warned of twice or gives two tables two rules."""
    reads: collections.Counter = collections.Counter()
    real = getattr(module, name)
    def counted(folder, *args, **kwargs):
        reads[Path(folder).resolve()] += 1
        return real(folder, *args, **kwargs)
    with unittest.mock.patch.object(module, name, counted):
        yield reads


def manifest_reads():
    from harness import jobfile
    return folder_reads(jobfile, "read")


@given(manifest=hostile_manifests())
@example(manifest=json.dumps({**MANIFEST, "commands": [{"kind": "sweep", "options": {"lr_extend": [2]}}]}).encode())
@example(manifest=json.dumps({**MANIFEST, "kinds": None}).encode())  # found by the fuzz profile: a TypeError
@example(manifest=json.dumps({**MANIFEST, "commands": 7, "kinds": ["sweep", 3]}).encode())
def test_report_on_a_hostile_job_manifest(manifest):
    with manifest_reads() as reads:
        outcome = keeps_the_promise(["report", "INPUT/job"], ok=(0, 1), writes_on_success=True, written="job",
                                    prepare=lambda inputs: _job_with_manifest(inputs, manifest))
    assert all(line.startswith(("warning:", "error:")) or not line.strip() for line in outcome.err.splitlines()), \
        outcome.err
    assert all(n == 1 for n in reads.values()) and (outcome.code != 0 or len(reads) == 1), reads


@settings(max_examples=max(5, settings().max_examples // 4))  # each publish writes a whole results tree
@given(manifest=hostile_manifests())
def test_publish_on_a_hostile_job_manifest(manifest):
    from harness import results
    with manifest_reads() as reads, folder_reads(results, "load_runs") as loads:
        outcome = keeps_the_promise(["publish", "--add", "INPUT/job", "--job", "j", "--results", "OUT"],
                                    prepare=lambda inputs: _job_with_manifest(inputs, manifest), ok=(0, 1),
                                    writes_on_success=True)
    # the published copy's job.json and run files are read once, for the index and the site together (the
    # run files of the folder given to --add once more, to find where the copy goes)
    assert all(n == 1 for n in reads.values()) and (outcome.code != 0 or len(reads) == 1), reads
    assert all(n == 1 for n in loads.values()) and (outcome.code != 0 or len(loads) == 2), loads


# --- serve's record (OUT/serving.json), read back into tasks.md ---------------------------------------

SERVING = {"base_model": "tiny", "device": "cpu", "tolerance": 1e-5, "rss_before_bytes": 1, "rss_base_bytes": 2**27,
           "rss_all_bytes": 2**28, "per_adapter_bytes": 2**20, "method": "one process",
           "adapters": [{"category": "sports", "pairs": 3, "max_abs_cos_diff": 0.0, "within_tolerance": True,
                         "set_adapter_s": 0.01}]}
SERVING_PATHS = sorted({p for p in _paths(SERVING) if p}, key=str)


def _per_category_job(inputs: Path, serving: bytes) -> None:
    """The fixture records as a --per-category job (the adapter trained on one category) and a serving.json."""
    payloads = []
    for path in sorted(FIXTURES.glob("run-v4-*.json")):
        record = json.loads(path.read_text())
        record["quality"]["test_category"] = ["sports" if i % 2 else "music"
                                              for i in range(len(record["quality"]["test_cos"]))]
        if record["method"] != "standard":
            record["spec"]["train_category"] = "sports"
        payloads.append(_record_bytes(record))
    _job(inputs, "job", payloads)
    (inputs / "job" / "serving.json").write_bytes(serving)


@st.composite
def hostile_serving(draw) -> bytes:
    """serving.json: serve's record with values replaced or removed, any JSON value, or not JSON at all."""
    kind = draw(st.sampled_from(["mutated", "mutated", "any-json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=60))
    return _record_bytes(draw(JSON_VALUE) if kind == "any-json"
                         else _mutated(draw, copy.deepcopy(SERVING), SERVING_PATHS))


@given(serving=hostile_serving())
def test_report_on_a_hostile_serving_record(serving):
    outcome = keeps_the_promise(["report", "INPUT/job"], prepare=lambda inputs: _per_category_job(inputs, serving),
                                ok=(0, 1), writes_on_success=True, written="job")
    assert all(line.startswith(("warning:", "error:")) or not line.strip() for line in outcome.err.splitlines()), \
        outcome.err


# --- a local model folder (--set model=FOLDER) --------------------------------------------------------

MODEL_FILES = ["config.json", "modules.json", "sentence_bert_config.json", "1_Pooling/config.json",
               "config_sentence_transformers.json"]
SIZES = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
         "max_position_embeddings", "type_vocab_size", "pad_token_id"]
BIG_OR_ODD = st.one_of(st.integers(-2**70, 2**70), st.sampled_from([0, 1, -1, 3, 10**9, 2**31, 2**63, 10**12]),
                       st.floats(allow_nan=True, allow_infinity=True), JSON_VALUE)


@st.composite
def hostile_model_folders(draw) -> tuple[str, bytes | dict]:
    """(file, what to put in its place) for one file of a real (tiny) sentence-transformers folder: bytes (its
    JSON with values replaced or removed, any JSON value, or bytes that are not JSON) or, for config.json,
    a dict of sizes to set in it (a billion included)."""
    name = draw(st.sampled_from(MODEL_FILES))
    kind = draw(st.sampled_from(["mutated", "mutated", "size", "any-json", "bytes"]))
    if kind == "bytes":
        return name, draw(st.binary(max_size=60))
    if kind == "size":
        return "config.json", draw(st.dictionaries(st.sampled_from(SIZES), BIG_OR_ODD, min_size=1, max_size=2))
    if kind == "any-json":
        value = draw(JSON_VALUE)
    else:
        original = json.loads((Path(_tiny_folder()) / name).read_text(encoding="utf-8"))
        value = _mutated(draw, original, sorted({p for p in _paths(original) if p}, key=str))
    return name, json.dumps(value, allow_nan=True).encode("utf-8", errors="surrogatepass")


def _tiny_folder() -> str:
    from harness.models import TINY_MODEL, resolve_model_path
    return resolve_model_path(TINY_MODEL)  # built once into this session's cache (conftest's harness_cache)


@given(replaced=hostile_model_folders())
@example(replaced=("config.json", {"hidden_size": 2**30}))  # terabytes, were it built: refused from the header
@example(replaced=("config.json", {"num_hidden_layers": 10**9, "vocab_size": 10**12}))
@example(replaced=("sentence_bert_config.json",  # found by the fuzz profile: a TypeError from the probe step
                   b'{"transformer_task": "feature-extraction", "modality_config": {"text": {"method": null, '
                   b'"method_output_name": "last_hidden_state"}}, "module_output_name": "token_embeddings"}'))
def test_every_model_folder(replaced, harness_cache):
    """A folder given as the model: one line before any worker starts, never a traceback, and no config
    size (a billion layers, a hidden size of 2**30) makes the pre-flight build what it asks for."""
    name, payload = replaced

    def prepare(inputs):
        import shutil
        shutil.copytree(_tiny_folder(), inputs / "model")
        target = inputs / "model" / name
        if isinstance(payload, dict):
            payload_bytes = json.dumps({**json.loads(target.read_text(encoding="utf-8")), **payload}).encode()
        else:
            payload_bytes = payload
        target.write_bytes(payload_bytes)
    keeps_the_promise(["run", "--dry-run", "--set", "model=INPUT/model", "--set", "train_limit=64", "--set",
                       "eval_limit=48", "--arms", "baseline,standard,lora", "--out", "OUT"], prepare=prepare)
