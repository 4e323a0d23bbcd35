"""The real command line, real worker subprocesses, a tiny real model, real files."""

import json
import signal
import sys

import pytest

from harness import cpu_share, results, runner
from harness.spec import build_specs
from tests.conftest import TINY_ARGS, repo_env, run_cli

REQUIRED = ["status", "method", "params.trainable_params", "params.total_params", "timings.train_wall_s",
            "memory.peak_memory_bytes", "energy.energy_kwh", "energy.energy_method", "quality.spearman",
            "quality.auc_roc", "quality.margin", "quality.cohens_d", "quality.f1", "quality.cluster_purity"]


def has(record, dotted):
    node = record
    for part in dotted.split("."):
        assert part in node, f"{dotted} missing"
        node = node[part]
    return node


def test_all_three_arms_end_to_end_then_resume(tmp_path, harness_cache):
    out = tmp_path / "out"
    proc = run_cli("run", "--out", str(out), *TINY_ARGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted((out / "runs").glob("*.json"))
    assert [f.name.split("-")[0] for f in files] == ["baseline", "lora", "standard"]
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(results.SCHEMA_FILE.read_text())
    by_method = {}
    for f in files:
        record = json.loads(f.read_text())
        jsonschema.validate(record, schema)
        for key in REQUIRED:
            has(record, key)
        assert record["status"] == "success"
        by_method[record["method"]] = record
    std, lora, base = by_method["standard"], by_method["lora"], by_method["baseline"]
    assert base["params"]["trainable_params"] == 0
    assert lora["params"]["trainable_params"] == lora["params"]["lora_params_expected"] < \
        std["params"]["trainable_params"]
    assert std["timings"]["steps"] == lora["timings"]["steps"] == 4
    assert std["memory"]["peak_memory_bytes"] >= std["memory"]["baseline_memory_bytes"] > 0
    assert std["energy"]["energy_kwh"] is None and "disabled" in std["energy"]["energy_unavailable_reason"]
    if sys.platform == "linux":  # what else used the CPUs while each arm trained: measured from /proc/stat
        env = std["environment"]
        assert env["training_cpu_own_cores"] > 0 and cpu_share.shared_cores(env) is not None, env
        assert "training_cpu_own_cores" not in base["environment"]  # the baseline does not train
    # matched: the specs differ only in what each arm declares
    diff = {k for k in std["spec"] if std["spec"][k] != lora["spec"][k]}
    assert diff == {"arm", "learning_rate", "lora"}
    # training changed the model: quality differs from the untrained baseline
    assert std["quality"]["margin"] != base["quality"]["margin"]  # continuous; a few steps may not reorder ranks
    table = (out / "tradeoffs.md").read_text()
    assert "| Spearman (test)" in table and "lora r=8 vs standard" in table
    assert "Trainable parameters" in (out / "tradeoffs.csv").read_text()
    assert "Spearman (test)" in proc.stdout
    # four steps of a random model cannot separate the arms, and the output says so
    assert "| standard | 1       | 48 / 48" in table
    assert "do not tell the arms apart" in table and "do not tell the arms apart" in proc.stdout
    assert std["quality"]["test_gold"] == base["quality"]["test_gold"] and len(std["quality"]["test_group"]) == 48
    # forgetting: the base model's reference embeddings were encoded by the first run of the job only
    forgetting = {m: r["quality"]["forgetting"] for m, r in by_method.items()}
    assert {f["reference"] for f in forgetting.values()} == {"stsb"}
    first = min(by_method, key=lambda m: by_method[m]["started_at"])
    assert {m: f["base_source"] for m, f in forgetting.items()} == {
        m: "computed in this run" if m == first else "job cache" for m in by_method}
    assert len({f["base_spearman"] for f in forgetting.values()}) == 1
    assert [p.suffix for p in (out / ".cache").iterdir()] == [".npz"]
    # the folder's manifest names the job kind and the exact command line
    manifest = json.loads((out / "job.json").read_text())
    assert manifest["kinds"] == ["run"] and manifest["commands"][0]["command"].startswith(
        f"python -m harness run --out {out} --set model=tiny-random-bert")

    # the same command again keeps every finished result: nothing is rerun or lost
    before = {f.name: f.read_text() for f in files}
    again = run_cli("run", "--out", str(out), *TINY_ARGS)
    assert again.returncode == 0
    assert again.stdout.count("kept existing success result") == 3
    assert len(json.loads((out / "job.json").read_text())["commands"]) == 2  # both commands, in order
    assert {f.name: f.read_text() for f in (out / "runs").glob("*.json")} == before

    # report rebuilds the tables from the run files alone
    (out / "tradeoffs.md").unlink()
    rep = run_cli("report", str(out))
    assert rep.returncode == 0 and (out / "tradeoffs.md").read_text() == table


def test_bad_input_exits_2_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("run", "--out", str(out), "--set", "lora.r=0")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: lora.r = 0: must be an integer >= 1"
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    proc = run_cli("run", "--out", str(out), "--dataset", str(tmp_path / "missing.csv"))
    assert proc.returncode == 2 and "not found" in proc.stderr and not out.exists()


def test_worker_records_a_failure(tmp_path, harness_cache):
    """The worker itself, as the runner starts it: a failing run still leaves a record."""
    import subprocess
    import sys

    from tests.conftest import REPO
    (spec,) = build_specs(arms=["lora"], overrides=[a for a in TINY_ARGS if a != "--set"] +
                          ["lora.target_modules=q,v"])
    spec_path, out_path = tmp_path / "spec.json", tmp_path / "record.json"
    spec_path.write_text(json.dumps(spec.to_dict()))
    proc = subprocess.run([sys.executable, "-m", "harness.worker", str(spec_path), str(out_path)], cwd=REPO,
                          env=repo_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    record = results.load_record(out_path)
    assert record["status"] == "failed"
    assert record["error"]["reason"] == "bad_input"
    assert "not found in this model" in record["error"]["message"]
    assert record["environment"]["torch_version"]  # what was known before the failure is kept


def test_timeout_and_crash_are_recorded(tmp_path, harness_cache, monkeypatch):
    (spec,) = build_specs(arms=["standard"], overrides=[a for a in TINY_ARGS if a != "--set"] +
                          ["timeout_s=0.5"])
    record = runner.run_in_worker(spec)
    assert record["status"] == "failed" and record["error"]["reason"] == "timeout"

    # a worker killed by a signal: make the worker kill itself before it can write anything
    monkeypatch.setenv("PYTHONSTARTUP", "")
    (spec,) = build_specs(arms=["baseline"], overrides=[a for a in TINY_ARGS if a != "--set"])
    monkeypatch.setattr(runner.sys, "executable", _self_killing_python(tmp_path))
    record = runner.run_in_worker(spec)
    assert record["status"] == "failed" and record["error"]["reason"] == "crash"
    assert record["error"]["signal_name"] == signal.Signals.SIGKILL.name


def _self_killing_python(tmp_path):
    script = tmp_path / "python"
    script.write_text("#!/bin/sh\nkill -9 $$\n")
    script.chmod(0o755)
    return str(script)


def test_the_console_reads_like_the_harness_not_like_the_trainer(tmp_path, harness_cache):
    """By default a run prints its own progress lines and its figures when it ends, not the trainer's
    tqdm bar, per-step log dicts or loading bars; --verbose brings those back."""
    quiet = run_cli("run", "--out", str(tmp_path / "quiet"), "--arms", "standard", *TINY_ARGS, "--set", "max_steps=20")
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    console = quiet.stdout + quiet.stderr
    assert "step 20/20 (100%)" in console and "step 2/20 (10%)" in console and "s/step" in console
    assert "{'loss'" not in console and "it/s]" not in console and "Loading weights" not in console
    assert "standard: success (test Spearman " in console and ", trained " in console
    loud = run_cli("run", "--out", str(tmp_path / "loud"), "--arms", "standard", "--verbose", *TINY_ARGS)
    assert loud.returncode == 0, loud.stderr[-2000:]
    assert "it/s]" in loud.stdout + loud.stderr
    record = json.loads(next((tmp_path / "quiet" / "runs").glob("*.json")).read_text())
    assert record["training"]["loss_history"]  # the log is kept, only its printing is gone
