"""Faults during a run are recorded and the rest of the work goes on; interrupted work resumes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from harness import files, results, runner
from harness.spec import build_specs
from tests.conftest import REPO, TINY_ARGS, repo_env, run_cli

TINY_SETS = [a for a in TINY_ARGS if a != "--set"]


def wait_for(condition, proc, *, limit_s: float = 300) -> None:
    """Poll for a signal that a process gives (a file it creates), failing early if it exits."""
    deadline = time.time() + limit_s
    while not condition():
        assert proc.poll() is None, "the process exited before giving the signal"
        assert time.time() < deadline, "no signal within the limit"
        time.sleep(0.05)


def only_record(out: Path) -> dict:
    (path,) = (out / "runs").glob("*.json")
    return json.loads(path.read_text())


def test_injected_oom_is_recorded_with_memory_so_far(tmp_path, harness_cache):
    out = tmp_path / "out"
    proc = run_cli("run", "--out", str(out), "--arms", "lora", *TINY_ARGS,
                   env_extra={"HARNESS_INJECT_FAULT": "oom@2"})
    assert proc.returncode == 1
    record = only_record(out)
    assert record["status"] == "failed" and record["error"]["reason"] == "oom"
    assert record["memory"]["peak_memory_bytes"] >= record["memory"]["baseline_memory_bytes"] > 0


def test_a_real_cpu_allocation_failure_is_recorded_as_oom(tmp_path, harness_cache):
    """Not an injected exception: a real 32 GiB allocation after the first step, in a process tree
    whose address space prlimit caps at 12 GiB, so torch's CPU allocator fails for real."""
    import resource
    out = tmp_path / "out"
    cap = 12 * 2**30

    def limit_address_space():
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    env = repo_env(HARNESS_INJECT_FAULT="alloc@32")
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--out", str(out), "--arms", "standard",
                           *TINY_ARGS], cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
                          preexec_fn=limit_address_space)
    assert proc.returncode == 1, proc.stderr[-2000:]
    record = only_record(out)
    assert record["error"]["reason"] == "oom", record["error"]
    assert "can't allocate memory" in record["error"]["message"]


def test_real_divergence_is_recorded_with_the_step(tmp_path, harness_cache):
    out = tmp_path / "out"
    proc = run_cli("run", "--out", str(out), "--arms", "standard", *TINY_ARGS, "--set", "max_steps=30",
                   "--set", "train_limit=128", "--set", "learning_rate=1e6", "--set", "warmup_steps=0")
    assert proc.returncode == 1
    record = only_record(out)
    assert record["error"]["reason"] == "diverged"
    assert record["error"]["step"] == 10  # the loss is checked at every logging step (every 10 steps)


def test_failed_runs_do_not_stop_the_others(tmp_path, harness_cache):
    out = tmp_path / "out"
    proc = run_cli("run", "--out", str(out), *TINY_ARGS, "--set", "arms.standard.learning_rate=1e6",
                   "--set", "arms.standard.warmup_steps=0", "--set", "max_steps=12", "--set", "train_limit=128")
    assert proc.returncode == 1
    statuses = {json.loads(p.read_text())["method"]: json.loads(p.read_text())["status"]
                for p in (out / "runs").glob("*.json")}
    assert statuses == {"baseline": "success", "standard": "failed", "lora": "success"}
    assert "FAILED standard-" in proc.stdout and "diverged" in proc.stdout


def test_interrupt_stops_cleanly_and_the_same_command_resumes(tmp_path, harness_cache):
    proc, out = _training_in_its_own_group(tmp_path)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert "run the same command again to resume" in stderr
    files = sorted(p.name for p in (out / "runs").iterdir())
    assert len(files) == 1 and files[0].startswith("baseline-")  # no half-written file
    baseline = (out / "runs" / files[0]).read_text()
    results.load_record(out / "runs" / files[0])

    again = run_cli("run", "--out", str(out), *TINY_ARGS)  # standard now a short run: a new spec
    assert again.returncode == 0, again.stderr[-2000:]
    assert "baseline: kept existing success result" in again.stdout
    assert (out / "runs" / files[0]).read_text() == baseline


def wait_until_the_group_is_gone(pgid: int, limit_s: float = 60) -> None:
    """Every process of the group the test started has ended (a worker ends with its parent: its death
    signal)."""
    deadline = time.time() + limit_s
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        assert time.time() < deadline, "a process of the command is still running"
        time.sleep(0.05)


def _training_in_its_own_group(tmp_path):
    """run with a long standard arm, in a process group of its own (the test signals only what it
    started), once the worker's first training step has ended."""
    out = tmp_path / "out"
    args = [sys.executable, "-m", "harness", "run", "--out", str(out), *TINY_ARGS,
            "--set", "arms.standard.max_steps=2000", "--set", "arms.standard.train_limit=64"]
    training = tmp_path / "standard-is-training"
    env = repo_env(HARNESS_INJECT_FAULT=f"touch@{training}")
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    wait_for(training.exists, proc)
    return proc, out


def test_a_hard_killed_parent_leaves_no_worker_training(tmp_path, harness_cache):
    """kill -9 of the parent mid-training: its worker ends too (its death signal, then its own quiet stop),
    instead of training on in the background and spoiling the next run's timings; the finished record
    stays."""
    proc, out = _training_in_its_own_group(tmp_path)
    proc.kill()
    proc.communicate(timeout=60)
    wait_until_the_group_is_gone(proc.pid)
    (path,) = (out / "runs").glob("*.json")
    assert path.name.startswith("baseline-")
    results.load_record(path)


def test_ctrl_c_twice_stops_at_once_and_keeps_every_finished_result(tmp_path, harness_cache):
    """Ctrl-C as a terminal sends it, to the whole foreground process group (the parent and its worker),
    twice in a row: the second one lands while the parent is still stopping the worker. The command ends
    with its one interrupted line and status 130, no traceback, the finished record intact, no worker
    left behind, and the same command resumes."""
    proc, out = _training_in_its_own_group(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal sends it: to the parent and its worker
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (stdout[-1500:], stderr[-1500:])
    assert "Traceback" not in stderr and "run the same command again to resume" in stderr, stderr[-2000:]
    wait_until_the_group_is_gone(proc.pid)
    files_ = sorted(p.name for p in (out / "runs").iterdir())
    assert len(files_) == 1 and files_[0].startswith("baseline-"), files_  # no half-written file
    results.load_record(out / "runs" / files_[0])
    again = run_cli("run", "--out", str(out), *TINY_ARGS)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "baseline: kept existing success result" in again.stdout


def test_a_worker_interrupted_alone_stops_the_job_as_ctrl_c_does(tmp_path, harness_cache):
    """SIGTERM to the worker alone (``kill`` of its pid, or a Ctrl-C that the parent has not seen yet): the
    job stops with its one interrupted line and status 130, files no "crash" record for the run and starts
    no other; the finished record stays."""
    from harness import worker
    assert runner.WORKER_INTERRUPTED == worker.EXIT_INTERRUPTED
    proc, out = _training_in_its_own_group(tmp_path)
    (child,) = psutil.Process(proc.pid).children()
    child.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (stdout[-1500:], stderr[-1500:])
    assert "Traceback" not in stderr and "run the same command again to resume" in stderr, stderr[-2000:]
    assert "lora" not in stdout.split("standard")[-1], stdout[-1500:]  # no run started after it
    wait_until_the_group_is_gone(proc.pid)
    files_ = sorted(p.name for p in (out / "runs").iterdir())
    assert len(files_) == 1 and files_[0].startswith("baseline-"), files_


def test_a_killed_writer_leaves_no_partial_result(tmp_path):
    target = tmp_path / "runs" / "big.json"
    code = ("import sys; from harness.files import write_json_atomic; "
            "write_json_atomic(sys.argv[1], {'x': [0.123456789] * 20_000_000})")
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], cwd=REPO,
                            env=repo_env())
    deadline = time.time() + 60
    while not any(p.suffix == ".tmp" for p in target.parent.glob(".*")) and time.time() < deadline:
        time.sleep(0.01)
    proc.kill()  # SIGKILL in the middle of the write
    proc.wait()
    assert not target.exists()
    assert results.load_runs(tmp_path) == []  # the stray temporary file is never read as a result


def test_same_spec_and_seed_give_the_same_quality(harness_cache):
    (spec,) = build_specs(arms=["lora"], overrides=TINY_SETS)
    one, two = runner.run_in_worker(spec), runner.run_in_worker(spec)
    assert one["status"] == two["status"] == "success"
    assert one["quality"] == two["quality"]
    assert one["training"]["loss_history"] == two["training"]["loss_history"]


def test_config_paths_cannot_escape_the_output_folder():
    (spec,) = build_specs(arms=["baseline"], dataset="../../../etc/evil name.csv")
    assert "/" not in spec.run_id and ".." not in spec.run_id
    assert spec.run_id.startswith("baseline-evil_name-")


def test_no_unpickling_loaders_in_the_harness():
    source = "\n".join(p.read_text() for p in (REPO / "harness").rglob("*.py"))  # subpackages too
    for risky in ("torch.load(", "pickle.load", "shell=True", "os.system("):
        assert risky not in source, risky


def test_a_second_process_on_the_same_out_stops_with_the_holder_named(tmp_path, harness_cache):
    out = tmp_path / "out"
    training = tmp_path / "training"
    env = repo_env(HARNESS_INJECT_FAULT=f"touch@{training}")
    first = subprocess.Popen([sys.executable, "-m", "harness", "run", "--out", str(out), "--arms", "standard",
                              *TINY_ARGS, "--set", "max_steps=2000"], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(training.exists, first)
        second = run_cli("run", "--out", str(out), "--arms", "standard", *TINY_ARGS, "--set", "max_steps=2000")
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1 and f"is in use by process {first.pid}" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert not list((out / "runs").glob("*.json"))  # the interrupted run left nothing half written


def test_same_record_filed_twice_within_a_second_keeps_every_copy(tmp_path):
    record = {"run_id": "r1", "status": "success"}
    for n in range(3):
        runner.store({**record, "n": n}, out=tmp_path, log=lambda m: None)
    aside = sorted((tmp_path / "runs" / "superseded").glob("r1.*.json"))
    kept = [json.loads(p.read_text())["n"] for p in [*aside, tmp_path / "runs" / "r1.json"]]
    assert sorted(kept) == [0, 1, 2]


def test_a_full_disk_stops_cleanly_and_keeps_the_finished_record(tmp_path, monkeypatch):
    """ENOSPC injected at the write of a finished record: a StoreError that names the folder, and the
    record saved to the temporary folder instead."""
    import errno
    real = files.write_bytes_atomic

    def full_disk(path, payload):
        if "runs" in Path(path).parts:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, payload)
    monkeypatch.setattr(files, "write_bytes_atomic", full_disk)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "rescue"))
    (tmp_path / "rescue").mkdir()
    record = {"run_id": "finished-run", "status": "success", "quality": {"spearman": 0.5}}
    try:
        runner.store(record, out=tmp_path / "out", log=lambda m: None)
        raise AssertionError("expected a StoreError")
    except results.StoreError as exc:
        message = str(exc)
    assert str(tmp_path / "out" / "runs") in message and "No space left on device" in message
    assert "later runs were not started" in message
    (rescued,) = (tmp_path / "rescue").glob("harness-unfiled-finished-run-*.json")
    assert json.loads(rescued.read_text()) == record


def test_out_that_cannot_be_written_is_refused_before_any_training(tmp_path, harness_cache):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out, message in ((blocker, "exists and is not a folder"), (Path("/proc/harness-out"), "cannot write there")):
        proc = run_cli("run", "--out", str(out), *TINY_ARGS)
        assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
        assert "running in a fresh worker" not in proc.stdout
    assert blocker.read_text() == "not a folder"


def test_report_never_writes_through_a_symlink_and_tables_follow_the_umask(tmp_path, harness_cache):
    out = tmp_path / "out"
    assert run_cli("run", "--out", str(out), "--arms", "baseline", *TINY_ARGS).returncode == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / "tradeoffs.md").unlink()
    (out / "tradeoffs.md").symlink_to(victim)
    assert run_cli("report", str(out)).returncode == 0
    assert victim.read_text() == "precious"
    assert not (out / "tradeoffs.md").is_symlink() and "Tradeoffs" in (out / "tradeoffs.md").read_text()
    mask = os.umask(0)
    os.umask(mask)
    for path in [out / "tradeoffs.md", *(out / "runs").glob("*.json")]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path


def test_a_finished_record_made_on_other_data_is_rerun_not_kept(tmp_path, harness_cache):
    """Same spec hash, other data (an older data version): the record is run again, the old one kept aside."""
    from harness.data import load_splits
    (spec,) = build_specs(arms=["baseline"], overrides=TINY_SETS)
    out = tmp_path / "out"
    old = {**json.loads((Path(__file__).parent / "fixtures" / "run-v2-lora.json").read_text()),
           "run_id": spec.run_id, "spec_hash": spec.spec_hash}
    old["data"] = {**old["data"], "fingerprint": "0" * 64, "version": "dating-v1"}
    files.write_json_atomic(out / "runs" / f"{spec.run_id}.json", old)
    current = load_splits("dating").fingerprint
    logs = []
    (record,) = runner.run_all([spec], out=out, log=logs.append, fingerprints={spec.data_key: current})
    assert record["data"]["fingerprint"] == current and record["status"] == "success"
    assert any("made on other data (dating-v1)" in line for line in logs)
    (aside,) = (out / "runs" / "superseded").glob("*.json")
    assert json.loads(aside.read_text())["data"]["fingerprint"] == "0" * 64


def test_a_full_disk_ends_the_command_with_one_line_and_no_later_runs(tmp_path, monkeypatch, capsys, harness_cache):
    """The whole command: ENOSPC when the first finished record is filed. Exit 1, one line naming the
    folder, no traceback, the second arm never started, the first arm's record kept elsewhere."""
    import errno

    from harness.__main__ import main
    real = files.write_bytes_atomic

    def full_disk(path, payload):
        if Path(path).parent.name == "runs":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, payload)
    monkeypatch.setattr(files, "write_bytes_atomic", full_disk)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "rescue"))
    (tmp_path / "rescue").mkdir()
    out = tmp_path / "out"
    code = main(["run", "--out", str(out), "--arms", "baseline,standard", *TINY_ARGS])
    captured = capsys.readouterr()
    assert code == 1
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(out / "runs") in errors[0] and "Traceback" not in captured.err
    assert "standard: running" not in captured.out
    (rescued,) = (tmp_path / "rescue").glob("harness-unfiled-baseline-*.json")
    assert json.loads(rescued.read_text())["status"] == "success"


def test_a_pause_file_holds_the_job_at_a_run_boundary_and_its_removal_resumes_it(tmp_path, harness_cache):
    """touch OUT/PAUSE while a run trains: that run finishes and is filed, the next one waits (the
    runner says so) until the file is removed, then the job completes with every record."""
    out = tmp_path / "out"
    training = tmp_path / "training"
    env = repo_env(HARNESS_INJECT_FAULT=f"touch@{training}")
    proc = subprocess.Popen([sys.executable, "-m", "harness", "run", "--out", str(out), "--arms", "standard,lora",
                             *TINY_ARGS], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(training.exists, proc)  # standard's first step has ended
        (out / runner.PAUSE).touch()
        for line in proc.stdout:  # the runner's own signal that it is holding
            if line.startswith("paused:"):
                break
        else:
            raise AssertionError(f"the job ended without pausing: {proc.stderr.read()[-2000:]}")
        (record,) = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
        assert record["method"] == "standard" and record["status"] == "success"  # the run in progress finished
        (out / runner.PAUSE).unlink()
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr[-2000:]
    assert "resumed after" in stdout
    assert sorted(json.loads(p.read_text())["method"] for p in (out / "runs").glob("*.json")) == ["lora", "standard"]


# Every reason a run can fail with, and whether the pre-flight (harness/__main__.preflight, before any
# worker starts) could have known it. A new reason needs a line here; "yes" means the pre-flight checks it.
FAILURE_REASONS = {
    "bad_input": "yes: data (rows, types, encodings, special files), model folder, LoRA targets, device and "
                 "precision, max_seq_length against the model's positions, and every text through the model's "
                 "tokenizer are checked before any worker starts; a worker's bad_input is a missing check",
    "oom": "no: it depends on the memory free while the run trains",
    "diverged": "no: a property of this training run, found by training it",
    "exception": "no: an unexpected error inside the run, recorded with its traceback",
    "crash": "no: the worker process died (a signal, a native crash)",
    "timeout": "no: the run outlasted timeout_s",
    "lost": "no: the Ray task was lost with its node or worker",
    "artifact_mismatch": "no: the saved artifact exists only after training",
    "disk_full": "no: the disk fills while the run writes (its artifact, a kept model); check_writable only "
                 "proves that OUT can be written at the start",
}


def test_every_failure_reason_says_whether_the_preflight_could_know_it():
    schema = json.loads(results.schema_file(results.SCHEMA_VERSION).read_text())
    reasons = schema["properties"]["error"]["oneOf"][1]["properties"]["reason"]["enum"]
    assert sorted(FAILURE_REASONS) == sorted(reasons)
    assert [r for r, why in FAILURE_REASONS.items() if why.startswith("yes")] == ["bad_input"]


def test_a_folder_whose_runs_come_from_two_machines_says_so_beside_its_timings(tmp_path, capsys):
    """A study resumed on another CPU model: the tables name both machines and how many runs each ran."""
    from harness.__main__ import main
    fixtures = sorted((REPO / "tests" / "fixtures").glob("run-v4-*.json"))
    (tmp_path / "runs").mkdir()
    for i, fixture in enumerate(fixtures):
        record = json.loads(fixture.read_text())
        if i == 0:
            record["environment"]["cpu_model"] = "AMD EPYC 9R14"
        (tmp_path / "runs" / fixture.name).write_text(json.dumps(record))
    assert main(["report", str(tmp_path)]) == 0, capsys.readouterr().err
    table = (tmp_path / "tradeoffs.md").read_text()
    assert "TIMINGS MIX 2 MACHINES" in table and "AMD EPYC 9R14, 2 cores (1 runs)" in table


def test_a_run_that_trained_beside_other_work_is_named_beside_the_timings(tmp_path, capsys):
    """One run trained while other work took 0.9 of a core (a test suite beside a study, as happened): the
    tables name it and its figure; a folder of quiet runs says nothing of the kind."""
    from harness.__main__ import main
    from harness.report import run_log
    fixtures = sorted((REPO / "tests" / "fixtures").glob("run-v4-*.json"))
    for busy, folder in ((0.9, tmp_path / "shared"), (0.02, tmp_path / "quiet")):
        (folder / "runs").mkdir(parents=True)
        for fixture in fixtures:
            record = json.loads(fixture.read_text())
            other = busy if record["method"] == "dora" else 0.01
            record["environment"].update(training_cpu_own_cores=1.9, training_cpu_other_cores=other,
                                         training_cpu_steal_cores=0.0)
            (folder / "runs" / fixture.name).write_text(json.dumps(record))
        assert main(["report", str(folder)]) == 0, capsys.readouterr().err
    shared = (tmp_path / "shared" / "tradeoffs.md").read_text()
    assert "TIMINGS SHARED: 1 of 2 trained runs" in shared and "dora-r8-dating-s0-ded7d933d0: 0.90 cores" in shared
    assert "TIMINGS SHARED" not in (tmp_path / "quiet" / "tradeoffs.md").read_text()
    log = run_log.block(tmp_path / "shared")
    assert "others' cores in training" in log and "| 0.90 |" in log and "| 0.01 |" in log


def test_a_full_disk_while_a_kept_model_is_written_fails_that_run_and_leaves_no_partial_model(tmp_path,
                                                                                             harness_cache):
    """ENOSPC while --save-models writes the artifact: the run is recorded as failed (disk_full) with the
    error, no half-written model is left under OUT/models (nor its incoming folder), and the same
    command without the fault reruns it and keeps a whole model."""
    out = tmp_path / "out"
    args = ("run", "--arms", "standard", "--save-models", "--out", str(out), *TINY_ARGS)
    full = run_cli(*args, env_extra={"HARNESS_INJECT_FAULT": "artifact@enospc"})
    assert full.returncode == 1, full.stderr[-2000:]
    (record,) = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert record["status"] == "failed" and record["error"]["reason"] == "disk_full", record["error"]
    assert "No space left on device" in record["error"]["message"]
    assert not (out / "models").exists() or not any((out / "models").iterdir())
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    (kept,) = (out / "models").iterdir()
    (record,) = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert record["status"] == "success" and kept.name == record["run_id"]
    assert record["artifact_saved"]["sha256"] and any(kept.rglob("*.safetensors"))
    (failed,) = (out / "runs" / "superseded").glob("*.json")  # the failed record is kept aside, never lost
    assert json.loads(failed.read_text())["error"]["reason"] == "disk_full"
