"""The figures that carry a study's conclusions: the four-way verdict at a margin, the share of
standard's gain, convergence, and comparison columns that are ratios only where a ratio means something."""

import numpy as np
import pandas as pd
import pytest

from harness import convergence, figures, stats
from harness.report import tradeoffs


def _test(diff, lo, hi, significant):
    return {"diff": diff, "lo": lo, "hi": hi, "significant": significant, "seeds_agree": True}


def test_a_difference_inside_the_margin_is_equivalent_even_when_it_is_significant():
    # three warm-up steps: standard moved by 1e-5 on every seed; "significant" but of no interest
    assert stats.verdict(_test(-1e-5, -2e-5, -0.5e-5, True)) == "equivalent"
    assert stats.verdict(_test(-0.022, -0.03, -0.015, True), margin=0.02) == "worse"
    assert stats.verdict(_test(0.05, 0.03, 0.07, True)) == "better"
    assert stats.verdict(_test(-0.02, -0.05, 0.01, False)) == "inconclusive"
    assert stats.verdict(_test(-0.008, -0.014, -0.003, True), margin=0.01) == "worse"
    assert stats.verdict(_test(-0.008, -0.014, -0.003, True), margin=0.02) == "equivalent"


def test_the_gain_share_recovers_a_known_share_and_refuses_a_gain_that_is_not_there():
    rng = np.random.default_rng(0)
    gold = rng.random(600)
    noise = rng.normal(size=600)
    ref = [gold + 0.1 * rng.normal(size=600) for _ in range(3)]
    base = [noise]
    half = [0.5 * (r - r.mean()) / r.std() + 0.5 * (noise - noise.mean()) / noise.std() for r in ref]
    share = stats.gain_share(half, ref, base, gold, n_boot=400)
    s_half = np.mean([stats.fast_spearman(c, gold) for c in half])
    s_ref = np.mean([stats.fast_spearman(c, gold) for c in ref])
    s_base = stats.fast_spearman(noise, gold)
    assert share["mean"] == pytest.approx((s_half - s_base) / (s_ref - s_base))
    assert share["lo"] < share["mean"] < share["hi"] and 0 < share["lo"] and share["hi"] < 1
    nothing = stats.gain_share(half, base * 3, base, gold, n_boot=200)  # "standard" = the baseline
    assert nothing["mean"] is None and "not significant" in nothing["why"]


def test_a_run_still_rising_in_its_last_quarter_has_not_converged():
    rising = [{"step": s, "val_spearman": s / 1000} for s in range(100, 1000, 100)]
    assert convergence.verdict(rising, steps=1000, final=1.0)["converged"] is False
    flat = [{"step": s, "val_spearman": 0.5 + (0.001 if s > 600 else 0)} for s in range(100, 1000, 100)]
    v = convergence.verdict(flat, steps=1000, final=0.505)
    assert v["converged"] is True and v["from_step"] == 700 and v["gain_last_quarter"] == pytest.approx(0.004)
    assert convergence.verdict([], steps=1000, final=0.5) is None
    assert convergence.verdict([{"step": 900, "val_spearman": 0.1}], steps=1000, final=0.5) is None  # too late
    runs = [{"training": {"validation_curve": rising, "global_step": 1000}, "quality": {"validation_spearman": 1.0}},
            {"training": {"validation_curve": flat, "global_step": 1000}, "quality": {"validation_spearman": 0.505}}]
    assert convergence.cell(convergence.summary(runs)) == "no: 1 of 2 (+0.300 in the last quarter)"


def test_the_tradeoff_table_gives_ratios_for_costs_shares_for_quality_and_differences_near_zero():
    spearman, wall, forgetting = "Spearman (test)", "Train wall time (s)", figures.FIGURES["forgetting"].label
    assert forgetting.startswith("Forgetting")

    def arm(label, method, order, s, w, f):
        return {**{f.label: None for f in figures.every()}, "label": label, "method": method, "order": (order,),
                "status": "success", spearman: s, wall: w, forgetting: f}
    frame = pd.DataFrame([arm("baseline", "baseline", 0, -0.4, None, 0.0),
                          arm("standard", "standard", 1, 0.5, 400.0, 0.02),
                          arm("lora r=8", "lora", 2, 0.2, 300.0, 0.1)])
    table = tradeoffs.tradeoff_table(frame)
    column = "lora r=8 vs standard"
    assert table.loc[wall, column] == pytest.approx(75.0)
    assert table.loc[spearman, column] == pytest.approx(0.6 / 0.9)
    assert table.loc[forgetting, column] == pytest.approx(0.08)
    text = tradeoffs.format_table(table)
    assert "67% of gain" in text and "| 75%" in text and "+0.080" in text and "% of standard" not in text
    frame.loc[1, spearman] = -0.39999  # standard moved nothing (three warm-up steps): no share of it
    assert pd.isna(tradeoffs.tradeoff_table(frame).loc[spearman, column])
