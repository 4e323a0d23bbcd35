"""bench-compare: the decision rule's power and false-alarm rate, and the command's verdicts.

The rule (harness/benchcompare.py): regressed when a one-sided Mann-Whitney test over rounds says
NEW is slower (p < 0.05) and the ratio of medians is at least 1.02. Its operating characteristics
are simulated here on per-round medians drawn with a 3% coefficient of variation (what rounds of
test_train_step showed on this 2-core machine when it was quiet), at the 10 rounds the README
recommends for regression checks.
"""

import json

import numpy as np
import pytest

from harness import benchcompare
from tests.conftest import run_cli

ROUNDS, CV, TRIALS = 10, 0.03, 200


def rounds(rng, scale=1.0):
    return list(0.75 * scale * rng.lognormal(0.0, CV, ROUNDS))


def test_a_five_percent_slowdown_is_detected_and_an_unchanged_run_is_not():
    rng = np.random.default_rng(0)
    detected = sum(benchcompare.decide(rounds(rng), rounds(rng, 1.05))["verdict"] == "regressed"
                   for _ in range(TRIALS))
    false_alarms = sum(benchcompare.decide(rounds(rng), rounds(rng))["verdict"] == "regressed"
                       for _ in range(TRIALS))
    assert detected / TRIALS >= 0.90, detected
    assert false_alarms / TRIALS <= 0.05, false_alarms


def save(path, per_round: dict[str, list[float]]):
    benchmarks = [{"fullname": name, "name": name, "stats": {"data": values, "median": float(np.median(values))},
                   "extra_info": {}} for name, values in per_round.items()]
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    return path


def test_the_command_names_each_verdict_and_exits_1_on_a_regression(tmp_path):
    rng = np.random.default_rng(1)
    base = save(tmp_path / "base.json", {"a": rounds(rng), "b": rounds(rng), "c": rounds(rng)})
    new = save(tmp_path / "new.json", {"a": rounds(rng, 1.10), "b": rounds(rng), "c": rounds(rng, 0.85)})
    proc = run_cli("bench-compare", str(base), str(new))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = {line.split("|")[1].strip(): line for line in proc.stdout.splitlines() if line.startswith("| ")}
    assert "REGRESSED" in lines["a"] and "unchanged" in lines["b"] and "improved" in lines["c"]
    assert "REGRESSED: a" in proc.stdout
    same = run_cli("bench-compare", str(base), str(base))
    assert same.returncode == 0 and "REGRESSED" not in same.stdout


def test_per_round_step_medians_are_preferred_to_round_times():
    bench = {"stats": {"data": [9.0, 9.0]}, "extra_info": {"step_s_per_round_medians": [0.5, 0.6]}}
    assert benchcompare.samples(bench) == ([0.5, 0.6], "per-round median step time")
    assert benchcompare.samples({"stats": {}})[0] is None


@pytest.mark.parametrize(("content", "words"), [
    (None, "no such file"), ("{", "not a readable JSON file"), ("[]", "not a pytest-benchmark file"),
    ('{"benchmarks": [{"fullname": "other"}]}', "share no benchmark"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, content, words):
    rng = np.random.default_rng(2)
    base = save(tmp_path / "base.json", {"a": rounds(rng)})
    new = tmp_path / "new.json"
    if content is not None:
        new.write_text(content)
    proc = run_cli("bench-compare", str(base), str(new))
    assert proc.returncode == 2 and words in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
