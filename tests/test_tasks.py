"""One adapter per category (ADR-001's "separate adapters per category"): `run --per-category`
trains each adapter on its category's pairs only, report writes tasks.md, and `serve` loads every kept
adapter onto one base in one process and checks each against its run (real subprocesses, tiny BERT)."""

import json
from collections import Counter

import pytest

from harness import data
from tests.conftest import TINY_ARGS, run_cli

CATEGORIES = ("kids", "smoking")


@pytest.fixture(scope="module")
def job(tmp_path_factory, harness_cache):
    out = tmp_path_factory.mktemp("tasks") / "out"
    proc = run_cli("run", "--arms", "baseline,standard,lora", "--per-category", ",".join(CATEGORIES),
                   "--save-models", "--out", str(out), *TINY_ARGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_each_adapter_trains_on_its_category_and_the_table_scores_it_there(job):
    records = [json.loads(p.read_text()) for p in (job / "runs").glob("*.json")]
    by_category = {r["spec"].get("train_category", ""): r for r in records if r["method"] == "lora"}
    assert sorted(by_category) == sorted(CATEGORIES)
    train = data.load_splits("dating").train
    for category, record in by_category.items():
        assert record["data"]["train_pairs"] == min(64, Counter(train.category)[category])  # train_limit=64
        assert record["label"] == f"lora r=8 on {category}" and f"-{category}-" in record["run_id"]
        assert len(record["quality"]["test_category"]) == len(record["quality"]["test_cos"]) == 48
    standard = next(r for r in records if r["method"] == "standard")
    assert standard["data"]["train_pairs"] == 64 and not standard["spec"].get("train_category")
    table = (job / "tasks.md").read_text()
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")]
                                          for line in table.splitlines() if line.startswith("| "))}
    assert set(rows) == {"category", *CATEGORIES}
    for category in CATEGORIES:
        own = Counter(by_category[category]["quality"]["test_category"])[category]
        assert rows[category][1] == f"{own} / {own}"  # dating: every pair is its own group
        assert rows[category][2] == "lora r=8" and rows[category][3] == "1"


def test_serve_loads_every_adapter_on_one_base_and_each_reproduces_its_run(job):
    proc = run_cli("serve", str(job))
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = json.loads((job / "serving.json").read_text())
    assert sorted(a["category"] for a in served["adapters"]) == sorted(CATEGORIES)
    assert all(a["within_tolerance"] and a["pairs"] > 0 for a in served["adapters"]), served
    assert served["rss_all_bytes"] >= served["rss_base_bytes"] > served["rss_before_bytes"] > 0
    assert "## Served from one process" in (job / "tasks.md").read_text()


@pytest.mark.parametrize("args, words", [
    (("--arms", "baseline,standard,lora", "--per-category", "kidz"), ["no category 'kidz'", "kids, nightlife"]),
    (("--arms", "baseline,standard", "--per-category", "all"), ["no adapter arm"]),
    (("--arms", "lora", "--set", "train_category=kidz"), ["no training pairs of that category", "kids, nightlife"]),
])
def test_a_category_the_data_lacks_is_one_line_before_any_worker(tmp_path, args, words):
    out = tmp_path / "out"
    proc = run_cli("run", *args, "--out", str(out), *TINY_ARGS)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and all(w in errors[0] for w in words), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not out.exists()


def test_serve_on_a_job_without_kept_adapters_says_what_is_missing(tmp_path):
    (tmp_path / "out" / "runs").mkdir(parents=True)
    proc = run_cli("serve", str(tmp_path / "out"))
    assert proc.returncode == 2 and "--save-models" in proc.stderr and "Traceback" not in proc.stderr
