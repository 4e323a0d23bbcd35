"""Bad input: one clear line naming the field or file, exit status 2, no traceback, nothing written.

Each case goes through the real command line in a subprocess.
"""

import json

import pytest

from tests.conftest import TINY_ARGS, run_cli


@pytest.mark.parametrize("args, message", [
    (["--set", "lora.r=0"], "error: lora.r = 0: must be an integer >= 1"),
    (["--set", "lora.r=-3"], "error: lora.r = -3: must be an integer >= 1"),
    (["--set", "lora.alpha=0"], "error: lora.alpha = 0.0: must be > 0"),
    (["--set", "lora.dropout=1.0"], "error: lora.dropout = 1.0: must be in [0, 1)"),
    (["--set", "lora.dropout=-0.1"], "error: lora.dropout = -0.1: must be in [0, 1)"),
    (["--set", "learning_rate=0"], "error: learning_rate = 0.0: must be > 0"),
    (["--set", "batch_size=0"], "error: batch_size = 0: must be >= 1"),
    (["--set", "epochs=-1"], "error: epochs = -1.0: must be >= 0"),
    (["--set", "learnig_rate=1e-4"], "error: --set: learnig_rate: unknown key (did you mean 'learning_rate'?)"),
    (["--set", "lora.rank=4"], "error: --set: lora.rank: unknown key (did you mean 'r'?)"),
    (["--set", "seed=zero"], "error: seed = 'zero': expected an integer, got str"),
    (["--set", "measure_energy=maybe"], "error: measure_energy = 'maybe': expected true or false, got str"),
    (["--set", "device=tpu"], "error: device = 'tpu': must be one of auto, cpu, cuda, mps"),
    (["--set", "device=mps"], "error: device = 'mps': requested but not available on this machine"),
    (["--set", "model=/nonexistent/model"], "error: model '/nonexistent/model': no such folder"),
    (["--set", "lora.target_modules=q,v"], "error: lora.target_modules = ['q', 'v']: ['q', 'v'] not found in "
                                           "this model; its Linear modules are: dense, key, query, value"),
    (["--dataset", "nope.csv"], "error: dataset file 'nope.csv': not found"),
    (["--dataset", "data.parquet"], "error: dataset 'data.parquet': not a built-in dataset"),
    (["--arms", "baseline,lroa"], "error: arm 'lroa': unknown (did you mean 'lora'?)"),
    # pre-flight checks every arm's spec, not only the first one's
    (["--set", "arms.lora.device=mps"], "error: device = 'mps': requested but not available on this machine"),
    (["--set", "arms.lora.model=/nonexistent/model"], "error: model '/nonexistent/model': no such folder"),
    (["--set", "arms.standard.dataset=nope.csv"], "error: dataset file 'nope.csv': not found"),
    (["--seeds", "0,x"], "error: seeds = '0,x': expected comma-separated integers"),
])
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, args, message):
    out = tmp_path / "out"
    proc = run_cli("run", "--out", str(out), *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_cuda_requested_without_cuda(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run_cli("run", "--out", str(tmp_path / "o"), "--set", "device=cuda")
    assert proc.returncode == 2 and "'cuda': requested but not available" in proc.stderr


def test_not_a_sentence_transformers_folder(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "weights.txt").write_text("x")
    proc = run_cli("run", "--out", str(tmp_path / "o"), "--set", f"model={tmp_path / 'm'}")
    assert proc.returncode == 2 and "not a sentence-transformers model folder" in proc.stderr


def test_unknown_key_in_toml(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[arms.lora.lora]\nalpah = 3\n")
    proc = run_cli("run", "--out", str(tmp_path / "o"), "--config", str(cfg))
    assert proc.returncode == 2
    assert "arms.lora.lora.alpah: unknown key (did you mean 'alpha'?)" in proc.stderr


@pytest.mark.parametrize("body, message", [
    ("text_a,text_b\nx,y\n", "bad.csv:1: missing column score"),
    ("text_a,text_b,score\nx,,0.5\n", "bad.csv:2: text_b is empty"),
    ("text_a,text_b,score\nx,y,nan\n", "bad.csv:2: score 'nan' is not a finite number"),
    ("text_a,text_b,score\nx,y,-inf\n", "bad.csv:2: score '-inf' is not a finite number"),
    ("text_a,text_b,score\nx,y,abc\n", "bad.csv:2: score 'abc' is not a number"),
    ("text_a,text_b,score\nx,y,7\n", "bad.csv:2: score 7.0 is outside the declared range"),
    ("text_a,text_b,score,split\nx,y,0.5,train\nx,y,0.5,validation\n", "the test split is empty"),
])
def test_bad_data_file(tmp_path, body, message):
    data = tmp_path / "bad.csv"
    data.write_text(body)
    out = tmp_path / "out"
    proc = run_cli("run", "--out", str(out), "--dataset", str(data))
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not out.exists()


def test_same_pair_in_train_and_test_is_a_warning_with_the_count(tmp_path, harness_cache):
    rows = [{"text_a": f"a{i}", "text_b": f"b{i}", "score": 0.5, "split": "train"} for i in range(8)]
    rows += [{"text_a": "a1", "text_b": "b1", "score": 0.5, "split": "validation"},
             {"text_a": "b2", "text_b": "a2", "score": 0.5, "split": "test"},
             {"text_a": "a3", "text_b": "b3", "score": 0.9, "split": "test"},
             {"text_a": "new", "text_b": "pair", "score": 0.1, "split": "test"}]
    data = tmp_path / "dup.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    proc = run_cli("run", "--out", str(tmp_path / "o"), "--dataset", str(data), "--arms", "baseline", *TINY_ARGS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warning: 2 pair(s) of the test split also appear in the train split" in proc.stderr


def test_report_on_a_folder_without_runs(tmp_path):
    proc = run_cli("report", str(tmp_path))
    assert proc.returncode == 2 and "no runs/ folder" in proc.stderr


def test_report_skips_unknown_versions_and_corrupt_files(tmp_path):
    from pathlib import Path
    runs = tmp_path / "runs"
    runs.mkdir()
    fixture = json.loads((Path(__file__).parent / "fixtures" / "run-v1-standard.json").read_text())
    (runs / "ok.json").write_text(json.dumps(fixture))
    (runs / "v7.json").write_text(json.dumps({**fixture, "schema_version": 7}))
    (runs / "bad.json").write_text("{not json")
    proc = run_cli("report", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "v7.json: unknown schema_version 7" in proc.stderr
    assert "bad.json: corrupt JSON" in proc.stderr
    assert (tmp_path / "tradeoffs.md").exists()
