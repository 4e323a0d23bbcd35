"""sizes: LoRA's saving against model size, from one job per model.

The published STS-B ADR job (all-MiniLM-L6-v2, three seeds) is the small model. No second model's
job is published yet, so the large one is the same job copied with its model's name and total
parameters changed (and, where a test needs it, its machine or dataset): the table's arithmetic and
its refusals are what these tests check, not a measured mpnet figure."""

import json
import shutil

import pytest

from harness import figures
from harness.report import sizes
from tests.conftest import REPO, run_cli

SMALL = next(iter(sorted((REPO / "results").glob("cpu-*/stsb/adr"))), None)
pytestmark = pytest.mark.skipif(SMALL is None, reason="needs the published CPU stsb/adr job")


def _bigger(tmp_path, name="large", **changes):
    folder = tmp_path / name
    shutil.copytree(SMALL, folder, ignore=shutil.ignore_patterns("superseded", "site", "plots"))
    for path in (folder / "runs").glob("*.json"):
        record = json.loads(path.read_text())
        record["spec"]["model"] = "a-model-five-times-larger"
        record["params"]["total_params"] = 5 * record["params"]["total_params"]
        for dotted, value in changes.items():
            node = record
            *parents, last = dotted.split(".")
            for part in parents:
                node = node[part]
            node[last] = value
        path.write_text(json.dumps(record))
    return folder


def test_each_model_gets_its_lora_costs_as_paired_ratios_and_its_gain_share(tmp_path):
    large = _bigger(tmp_path)
    proc = run_cli("sizes", str(large), str(SMALL), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    import pandas as pd
    rows = pd.read_csv(tmp_path / "out" / "sizes.csv")
    assert list(rows["model"]) == ["all-MiniLM-L6-v2", "a-model-five-times-larger"]  # smallest model first
    records = [json.loads(p.read_text()) for p in (SMALL / "runs").glob("*.json")]
    runs = {(r["method"], r["spec"]["seed"]): r for r in records}
    wall = figures.FIGURES["train_wall_s"]
    ratios = [100 * wall.value(runs[("lora", s)]) / wall.value(runs[("standard", s)]) for s in (0, 1, 2)]
    small = rows.iloc[0]
    assert small["train_wall_s_pct_mean"] == pytest.approx(sum(ratios) / 3)
    assert small["train_wall_s_pct_lo"] < small["train_wall_s_pct_mean"] < small["train_wall_s_pct_hi"]
    assert small["seeds"] == 3 and small["variant"] == "lora r=8"
    assert 0 < small["gain_share_mean"] < 1.05 and small["gain_share_lo"] < small["gain_share_hi"]
    assert rows.iloc[1]["gain_share_mean"] == pytest.approx(small["gain_share_mean"])  # same runs, same share
    md = (tmp_path / "out" / "sizes.md").read_text()
    assert "| all-MiniLM-L6-v2 " in md and "train wall (s) % of std" in md
    for suffix in ("png", "svg", "csv"):
        assert (tmp_path / "out" / "plots" / f"lora_saving_vs_size.{suffix}").is_file()


@pytest.mark.parametrize("changes, words", [
    ({"environment.cpu_model": "Another CPU"}, "differ in hardware"),
    ({"data.name": "dating-v2"}, "differ in dataset"),
])
def test_jobs_of_two_machines_or_two_datasets_are_refused_in_one_line(tmp_path, changes, words):
    other = _bigger(tmp_path, **changes)
    proc = run_cli("sizes", str(SMALL), str(other), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and words in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


def test_a_folder_without_lora_says_so(tmp_path):
    folder = tmp_path / "nolora"
    shutil.copytree(SMALL / "runs", folder / "runs", ignore=shutil.ignore_patterns("superseded", "lora-*"))
    with pytest.raises(sizes.SizesError, match="no LoRA variant"):
        sizes.table([folder])
