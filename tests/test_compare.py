"""compare: the same benchmark across machines, refused where anything but the hardware differs, and
each tuned arm counted at its chosen rate only."""

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

FIXTURES = Path(__file__).parent / "fixtures"
CPU_ADR = next(iter(sorted((REPO / "results").glob("cpu-*/dating-v1/adr"))), None)  # compare fixtures are v1


@pytest.mark.skipif(CPU_ADR is None, reason="needs the published CPU dating-v1/adr job")
def test_compare_two_machines(tmp_path):
    proc = run_cli("compare", str(CPU_ADR), str(FIXTURES / "compare-gpu"), "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "compare.md").read_text()
    assert "cpu-amd-epyc-2c" in md and "cuda-nvidia-h100-80gb-hbm3-79gb" in md
    # the library builds differ too, and the comparison says so instead of crediting the hardware alone
    assert "- torch_build: cpu-amd-epyc-2c 2.13.0+cpu; cuda-nvidia-h100-80gb-hbm3-79gb 2.13.0+cu130" in md
    assert "transformers_version" not in md  # the same on both
    assert "speed-up vs cpu-amd-epyc-2c" in (tmp_path / "compare.csv").read_text()
    assert (tmp_path / "compare.png").exists() and (tmp_path / "compare.svg").exists()
    ratios = (tmp_path / "compare-ratios.csv").read_text()
    assert ratios.count("lora r=8") == 2  # LoRA vs standard on each machine


def test_compare_refuses_a_mismatched_pair(tmp_path):
    other = tmp_path / "other"
    shutil.copytree(FIXTURES / "compare-gpu", other)
    for path in (other / "runs").glob("*.json"):
        record = json.loads(path.read_text())
        record["spec"]["batch_size"] = 32
        path.write_text(json.dumps(record))
    proc = run_cli("compare", str(FIXTURES / "compare-gpu"), str(other), "--out", str(tmp_path / "c"))
    assert proc.returncode == 2
    assert "spec field 'batch_size' differs: 32 vs 16" in proc.stderr
    assert not (tmp_path / "c" / "compare.md").exists()


def _copy_with_a_losing_rate(folder: Path) -> tuple[dict, float]:
    """The compare-gpu fixture copied to ``folder``, plus its LoRA arm at a second learning rate that
    lost on validation and ran three times as long: (that record, the chosen rate's train wall time)."""
    shutil.copytree(FIXTURES / "compare-gpu", folder)
    record = json.loads(next((folder / "runs").glob("lora-*.json")).read_text())
    chosen_s = record["timings"]["train_wall_s"]
    record["run_id"] = "lora-r8-dating-s0-0000000000"
    record["spec"]["learning_rate"] = 2e-3
    record["quality"]["validation_spearman"] -= 0.2
    record["timings"]["train_wall_s"] = 3 * chosen_s
    (folder / "runs" / f"{record['run_id']}.json").write_text(json.dumps(record))
    return record, chosen_s


def test_compare_counts_a_tuned_arm_at_its_chosen_rate_only(tmp_path):
    """A tuned sweep holds an arm at several learning rates. compare reports the runs at the chosen
    rate (the best validation Spearman on the first seed), as the folder's own tables do, and says how
    many it left out; before, it averaged over the whole grid."""
    import pandas as pd
    tuned = tmp_path / "tuned"
    _, chosen_s = _copy_with_a_losing_rate(tuned)

    proc = run_cli("compare", str(FIXTURES / "compare-gpu"), str(tuned), "--out", str(tmp_path / "c"))
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "c" / "compare.md").read_text()
    assert ("successful runs at other rates left out: cuda-nvidia-h100-80gb-hbm3-79gb: 0; "
            "cuda-nvidia-h100-80gb-hbm3-79gb (tuned): 1.") in md
    per_arm = pd.read_csv(tmp_path / "c" / "compare.csv")
    row = per_arm[(per_arm["arm"] == "lora r=8") & (per_arm["figure"] == "train wall time (s)")].iloc[0]
    assert row["cuda-nvidia-h100-80gb-hbm3-79gb (tuned)"] == pytest.approx(chosen_s)  # not (1 + 3) / 2 of it
    assert row["cuda-nvidia-h100-80gb-hbm3-79gb"] == pytest.approx(chosen_s)
