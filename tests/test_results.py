"""The result store: atomic, versioned, never silently overwritten, old versions still read."""

import json
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import files, results

FIXTURES = Path(__file__).parent / "fixtures"


def test_atomic_write_refuses_to_overwrite(tmp_path):
    path = tmp_path / "runs" / "a.json"
    files.write_json_atomic(path, {"x": 1})
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        files.write_json_atomic(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 1}
    files.write_json_atomic(path, {"x": 3}, overwrite=True)
    assert json.loads(path.read_text()) == {"x": 3}
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]  # no temporary file left


def test_non_finite_numbers_are_stored_as_null(tmp_path):
    path = tmp_path / "a.json"
    files.write_json_atomic(path, {"loss": float("nan"), "h": [1.0, float("inf")]})
    assert json.loads(path.read_text()) == {"loss": None, "h": [1.0, None]}


def test_failed_write_leaves_no_partial_file(tmp_path):
    path = tmp_path / "a.json"
    with pytest.raises(TypeError):
        files.write_json_atomic(path, {"x": object()})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("version", results.KNOWN_VERSIONS)
def test_checked_in_records_of_every_schema_version_go_through_the_whole_report_path(version, tmp_path, capsys):
    """Old records are not only loadable: report regenerates their tables, with the clustered
    statistics (a version-1 record's data is regenerated and must match its fingerprint)."""
    from harness.__main__ import main
    out = tmp_path / "job"
    (out / "runs").mkdir(parents=True)
    # version 1: the GPU job's records (they carry per-pair cosines); versions 2 and 3: tiny-model records
    fixtures = FIXTURES.glob("compare-gpu/runs/*.json") if version == 1 else FIXTURES.glob(f"run-v{version}-*.json")
    for fixture in sorted(fixtures):
        assert json.loads(fixture.read_text())["schema_version"] == version
        (out / "runs" / fixture.name).write_text(fixture.read_text())
    assert list((out / "runs").iterdir()), f"no checked-in fixture of schema version {version}"
    assert main(["report", str(out)]) == 0, capsys.readouterr().err
    table = (out / "tradeoffs.md").read_text()
    assert "| Spearman (test)" in table and "Spearman [95% CI]" in table
    if version == 1:  # dating-v1: 500 rows over 66 independent sentence pairs
        assert "| standard | 1       | 500 / 66" in table


def test_unknown_version_and_corrupt_json_are_skipped_with_a_warning(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    good = json.loads((FIXTURES / "run-v1-lora.json").read_text())
    (runs / "good.json").write_text(json.dumps(good))
    (runs / "future.json").write_text(json.dumps({**good, "schema_version": 99}))
    (runs / "torn.json").write_text('{"schema_version": 1, "run')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = results.load_runs(tmp_path)
    assert [r["run_id"] for r in loaded] == [good["run_id"]]
    messages = " ".join(str(w.message) for w in caught)
    assert "future.json: unknown schema_version 99" in messages
    assert "torn.json: corrupt JSON" in messages


@pytest.mark.parametrize("fixture", sorted(FIXTURES.glob("run-v*.json")), ids=lambda p: p.name)
def test_fixture_records_follow_the_json_schema_of_their_version(fixture):
    jsonschema = pytest.importorskip("jsonschema")
    record = json.loads(fixture.read_text())
    jsonschema.validate(record, json.loads(results.schema_file(record["schema_version"]).read_text()))


# --- reading records fast: readable.validator gives jsonschema's own verdicts ----------------------------
_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=3))
_JSON = st.recursive(_LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner,
                                                                                        max_size=2), max_leaves=6)
_TYPES = st.sampled_from(["number", "integer", "string", "boolean", "null", "array", "object"])
_ITEMS = st.one_of(st.builds(lambda t: {"type": t}, _TYPES),
                   st.builds(lambda ts: {"type": ts}, st.lists(_TYPES, min_size=1, max_size=3, unique=True)),
                   st.builds(lambda t: {"type": t, "minimum": 0}, _TYPES), st.booleans())


@settings(max_examples=300, deadline=None)
@given(items=_ITEMS, prefix=st.booleans(), values=st.lists(_JSON, max_size=6) | _JSON)
def test_the_fast_items_check_gives_jsonschemas_own_verdict_and_message(items, prefix, values):
    """Any items schema, any array (or non-array): the same errors, paths and messages as jsonschema's
    Draft 2020-12 validator, valid arrays of plain values included."""
    import jsonschema

    from harness import readable
    schema = {"type": "object", "properties": {"a": {"items": items, **({"prefixItems": [{"type": "string"}]}
                                                                       if prefix else {})}}}
    record = {"a": values}
    ours, theirs = readable.validator(schema), jsonschema.Draft202012Validator(schema)
    assert [(e.message, list(e.absolute_path)) for e in ours.iter_errors(record)] == \
        [(e.message, list(e.absolute_path)) for e in theirs.iter_errors(record)]


def test_every_published_record_reads_the_same_with_the_fast_items_check():
    import jsonschema

    from harness import readable
    paths = sorted(Path(__file__).parent.parent.glob("results/*/*/*/runs/*.json"))[::10]
    assert len(paths) > 20
    standard = jsonschema.Draft202012Validator(readable.SCHEMA)
    for path in paths:
        record = json.loads(path.read_text())
        assert results.schema_problem(record, record["schema_version"]) is None
        assert readable.problem(record) is None and not list(standard.iter_errors(record)), path
