"""The generated recommendation: the rule of harness/report/recommend.py, branch by branch, on rows with known
figures; and on a published job, every figure of its sentence traced back to the run files."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import pytest

from harness import results, sweep, tuning
from harness.report import recommend
from tests.test_hostile_inputs import invoke

REPO = Path(__file__).resolve().parent.parent
ADR_JOB = REPO / "results" / "cpu-amd-epyc-2c" / "dating-v2" / "adr"


def row(point, method, spearman, time_s, *, memory=100.0, artifact=10.0, diff=None, verdict=None, share=None,
        reference=False):
    r = {"point": point, "method": method, "is_reference": reference,
         "spearman_mean": spearman, "spearman_lo": spearman - 0.02, "spearman_hi": spearman + 0.02,
         "train_wall_s_mean": time_s, "train_wall_s_lo": time_s and time_s * 0.9,
         "train_wall_s_hi": time_s and time_s * 1.1,
         "peak_memory_mib_mean": memory, "peak_memory_mib_lo": memory, "peak_memory_mib_hi": memory,
         "artifact_mib_mean": artifact, "artifact_mib_lo": artifact, "artifact_mib_hi": artifact}
    if diff is not None:
        r.update(vs_standard_spearman_diff=diff, vs_standard_diff_lo=diff - 0.01, vs_standard_diff_hi=diff + 0.01,
                 vs_standard_p=0.5, vs_standard_verdict=verdict, vs_standard_margin=0.02)
    if share is not None:
        r.update(gain_share_mean=share, gain_share_lo=share - 0.05, gain_share_hi=share + 0.05)
    return r


BASE = row("baseline", "baseline", -0.4, None)
STD = row("standard", "standard", 0.50, 400.0, memory=900.0, artifact=90.0, reference=True)


def test_an_equivalent_cheaper_variant_is_chosen_and_called_indistinguishable():
    lora = row("lora r=16", "lora", 0.49, 300.0, diff=-0.01, verdict="equivalent", share=0.98)
    rec = recommend.recommend([BASE, STD, lora])
    assert rec["choice"] is lora
    assert "indistinguishable here (Δ -0.010 [-0.020, +0.000], equivalent within ±0.02" in rec["why"]
    assert "train time 300 s [270, 330] (75% of standard's)" in rec["why"]


def test_a_worse_or_inconclusive_variant_never_wins_on_cost_alone():
    worse = row("lora r=1", "lora", 0.30, 100.0, diff=-0.2, verdict="worse", share=0.6)
    unsure = row("ia3", "ia3", 0.45, 90.0, diff=-0.05, verdict="inconclusive", share=0.9)
    rec = recommend.recommend([BASE, STD, worse, unsure])
    assert rec["choice"] is STD and "no variant is better or equivalent" in rec["why"]
    assert "ia3, is inconclusive" in rec["why"]  # the best other, by quality, with its difference


def test_a_job_compared_in_bf16_names_its_reference_standard_bf16_not_standard():
    # the AMD method study: standard fp32 is one of the variants, set against standard bf16
    ref = {**STD, "point": "standard bf16", "train_wall_s_mean": 200.0}
    fp32 = row("standard", "standard", 0.50, 400.0, diff=-0.007, verdict="equivalent", share=0.99)
    lora = row("lora r=16 bf16", "lora", 0.40, 180.0, diff=-0.1, verdict="worse", share=0.8)
    rec = recommend.recommend([BASE, ref, fp32, lora])
    assert rec["choice"] is ref
    assert rec["why"].startswith("standard bf16: standard is indistinguishable from it (Δ -0.007")
    assert "but standard bf16 trains fastest here" in rec["why"]
    rec = recommend.recommend([BASE, ref, lora])
    assert rec["why"].startswith("standard bf16: no variant is better or equivalent; the best other, lora r=16 bf16")
    assert "80% [75%, 85%] of standard bf16's gain" in rec["why"] and "(90% of standard bf16's)" in rec["why"]


def test_a_significantly_better_variant_is_chosen():
    better = row("dora r=16", "dora", 0.56, 500.0, diff=0.06, verdict="better", share=1.1)
    assert recommend.recommend([BASE, STD, better])["choice"] is better


def test_constraints_filter_and_a_gain_share_is_met_only_by_its_lower_bound():
    lora = row("lora r=16", "lora", 0.45, 300.0, memory=400.0, diff=-0.05, verdict="worse", share=0.92)
    rec = recommend.recommend([BASE, STD, lora], recommend.Constraints(max_memory=500))
    assert rec["choice"] is lora and "which does not meet them" in rec["why"]
    rec = recommend.recommend([BASE, STD, lora], recommend.Constraints(max_memory=500, min_gain_share=0.9))
    assert rec["choice"] is None  # its share may be 87%: not claimed as at least 90%
    assert "No variant meets the constraints" in rec["why"] and "Closest: lora r=16" in rec["why"]
    assert "may be 87% < 90%" in rec["why"]


def test_the_pareto_front_is_quality_against_time():
    fast = row("ia3", "ia3", 0.40, 90.0)
    slow_worse = row("loha r=16", "loha", 0.39, 500.0)
    front = recommend.pareto([STD, fast, slow_worse])
    assert STD in front and fast in front and slow_worse not in front


# every published job page carries its recommendation (recommendation.md beside its tables)
PUBLISHED = sorted(p.parent for p in (REPO / "results").glob("*/*/*/recommendation.md"))


def test_every_published_job_carries_its_recommendation():
    assert ADR_JOB in PUBLISHED and len(PUBLISHED) >= 5


@pytest.mark.parametrize("job", PUBLISHED, ids=lambda p: "/".join(p.parts[-3:]))
def test_recommend_on_a_published_job_traces_every_figure_to_the_run_files(job, capsys):
    assert invoke(["recommend", str(job)]) == 0
    text = capsys.readouterr().out
    sentence = next(line for line in text.splitlines() if line.startswith("**")).strip("*")
    assert sentence in (job / "recommendation.md").read_text()  # the page says what the command says
    rows = {r["point"]: r for r in recommend.job_rows(job)}
    # the runs each variant reports: those at its chosen rate (a tuned job's grid runs are not its figures)
    records = [r for r in sweep.selected(results.load_runs(job), sweep.job_selection(job)) if r["status"] == "success"]
    # every variant named, with its mean train time recomputed from its records
    for point, r in rows.items():
        if point in sentence and r.get("train_wall_s_mean") is not None:
            walls = [x["timings"]["train_wall_s"] for x in records if tuning.point_of(x["spec"]) == point]
            assert r["train_wall_s_mean"] == pytest.approx(statistics.mean(walls))
    # every number of the sentence is one of the figures of the job's rows, as formatted
    figures = set()
    ref = next(r for r in rows.values() if r.get("is_reference"))
    for r in rows.values():
        for value in r.values():
            if isinstance(value, float):
                figures |= {f"{value:+.3f}", f"{value:.3f}", recommend.amount(value), f"{100 * value:.0f}"}
        for key in ("train_wall_s", "peak_memory_mib", "artifact_mib"):  # "(75% of standard's)"
            if r.get(f"{key}_mean") is not None and ref.get(f"{key}_mean"):
                figures.add(recommend.percent(100 * r[f"{key}_mean"] / ref[f"{key}_mean"]).rstrip("%"))
    for point in sorted(rows, key=len, reverse=True):  # a variant's name ("lora r=64") is no figure
        sentence = sentence.replace(point, "")
    for number in re.findall(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|[+-]?\d+(?:\.\d+)?", sentence):
        if number.lstrip("+-") in ("8", "16", "0.02", "95"):  # ranks, the margin, the CI level
            continue
        assert number in figures or number.lstrip("+") in figures, (number, sentence)


@pytest.mark.parametrize("args, words", [
    (["--max-memory", "nan"], "--max-memory nan"), (["--max-train-time", "-1"], "> 0"),
    (["--min-gain-share", "2"], "fraction in (0, 1]"), (["--max-artifact", "inf"], "finite")])
def test_bad_constraints_are_one_line(args, words, capsys):
    assert invoke(["recommend", str(ADR_JOB), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err
