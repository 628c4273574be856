"""Stability statistics on synthetic curves whose answers are known by hand."""
import math

import numpy as np
import pandas as pd
import pytest

from experiments.stability.measures import interpolate_states
from experiments.stability.stats import (first_crossing, per_seed_stats, rebound_stats, summarise_seeds,
                                         wilson_interval)


def test_first_crossing_interpolates_linearly():
    assert first_crossing([0, 10, 20], [0.0, 0.2, 0.8], 0.5) == pytest.approx(15.0)
    assert first_crossing([0, 10], [0.6, 0.9], 0.5) == 0.0  # already there at the start
    assert math.isnan(first_crossing([0, 10, 20], [0.1, 0.3, 0.4], 0.5))
    assert first_crossing([0, 4], [0.0, 1.0], 0.25) == pytest.approx(1.0)


def test_rebound_of_a_collapsing_and_a_holding_seed():
    # held at 0.1, rebounds to a peak of 0.9 and ends at 0.7
    s = rebound_stats(0.1, [0, 10, 20, 30], [0.1, 0.5, 0.9, 0.7], threshold=0.5)
    assert s["rebound"] == pytest.approx(0.6) and s["rebound_peak"] == pytest.approx(0.8)
    assert s["rebound_half_time"] == pytest.approx(10.0)  # 0.1 + 0.8 / 2 = 0.5 reached at step 10
    assert s["cross_time"] == pytest.approx(10.0)
    assert (s["held"], s["collapsed"], s["crossed"]) == (1.0, 1.0, 1.0)
    flat = rebound_stats(0.1, [0, 10], [0.1, 0.05], threshold=0.5)
    assert flat["rebound"] == pytest.approx(-0.05) and math.isnan(flat["rebound_half_time"])
    assert math.isnan(flat["cross_time"]) and (flat["held"], flat["collapsed"], flat["crossed"]) == (1.0, 0.0, 0.0)
    never_held = rebound_stats(0.8, [0, 10], [0.8, 0.9], threshold=0.5)
    assert never_held["held"] == 0.0 and never_held["collapsed"] == 0.0


def _synthetic_table():
    """Two claims x three seeds; in Phase 2 seed k goes 0.1 -> 0.1 + 0.15 k -> 0.2 + 0.25 k (mean over
    claims, which differ by +-0.1); the unanchored run goes 0 -> 1 over 8 steps."""
    rows = []
    for seed in range(3):
        for claim, delta in (("c0", -0.1), ("c1", 0.1)):
            for phase, steps, values in ((1, [0, 5, 10], [0.0, 0.1, 0.1]),
                                         (2, [0, 5, 10], [0.1, 0.1 + 0.15 * seed, 0.2 + 0.25 * seed])):
                for step, v in zip(steps, values):
                    rows.append(dict(anchor="kl", weight=1.0, seed=seed, phase=phase, step=step,
                                     global_step=step + 10 * (phase - 1), layer=np.nan, claim=claim,
                                     metric="belief_yesno", value=v + delta))
                    rows.append(dict(anchor="kl", weight=1.0, seed=seed, phase=phase, step=step,
                                     global_step=step + 10 * (phase - 1), layer=2, claim=claim,
                                     metric="probe_p_true_fixed", value=0.3))
                    rows.append(dict(anchor="kl", weight=1.0, seed=seed, phase=phase, step=step,
                                     global_step=step + 10 * (phase - 1), layer=1, claim=claim,
                                     metric="probe_p_true_fixed", value=0.9))  # another layer: ignored
        rows.append(dict(anchor="none", weight=0.0, seed=seed, phase=1, step=8, global_step=8, layer=np.nan,
                         claim="c0", metric="belief_yesno", value=1.0))
        rows.append(dict(anchor="none", weight=0.0, seed=seed, phase=1, step=0, global_step=0, layer=np.nan,
                         claim="c0", metric="belief_yesno", value=0.0))
    return pd.DataFrame(rows)


def test_per_seed_and_summary_statistics():
    per_seed = per_seed_stats(_synthetic_table(), layer=2, threshold=0.5)
    get = lambda seed, stat, metric="belief_yesno", anchor="kl": per_seed.query(
        "seed == @seed and stat == @stat and metric == @metric and anchor == @anchor").value.item()
    for seed in range(3):
        assert get(seed, "rebound") == pytest.approx(0.1 + 0.25 * seed)  # claim deltas cancel in the mean
        assert get(seed, "phase1_end") == pytest.approx(0.1)
    assert get(0, "collapsed") == 0 and get(1, "collapsed") == 0 and get(2, "collapsed") == 1
    assert get(2, "cross_time") == pytest.approx(5 + 5 / 3)  # 0.1 -> 0.4 -> 0.7: 0.5 a third into 5..10
    assert get(2, "rebound_half_time") == pytest.approx(5.0)  # half of the 0.6 rise (0.4) at step 5
    assert math.isnan(get(1, "cross_time")) and get(1, "crossed") == 0
    assert get(0, "phase2_end", "probe_p_true_fixed") == pytest.approx(0.3)  # layer 2 only
    assert get(1, "cross_time", anchor="none") == pytest.approx(4.0)  # unanchored: 0 -> 1 over 8 steps
    summary = summarise_seeds(per_seed)
    row = summary.query("anchor == 'kl' and metric == 'belief_yesno' and stat == 'rebound'").iloc[0]
    assert row["mean"] == pytest.approx(0.35) and row.n == 3
    half = 4.302653 * 0.25 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n); sd of (0.1, 0.35, 0.6) is 0.25
    assert (row.lo, row.hi) == pytest.approx((0.35 - half, 0.35 + half), rel=1e-5)
    frac = summary.query("anchor == 'kl' and metric == 'belief_yesno' and stat == 'collapsed'").iloc[0]
    assert frac["mean"] == pytest.approx(1 / 3)
    assert (frac.lo, frac.hi) == pytest.approx(wilson_interval(1, 3))


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(0, 3)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(1.959964**2 / (3 + 1.959964**2), rel=1e-6)
    lo, hi = wilson_interval(5, 10)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_interpolation_is_exact_at_both_ends():
    import torch

    g = torch.Generator().manual_seed(0)
    a = {"w": torch.randn(3, 4, generator=g), "steps": torch.tensor([1, 2])}
    b = {"w": torch.randn(3, 4, generator=g), "steps": torch.tensor([5, 6])}
    assert torch.equal(interpolate_states(a, b, 0.0)["w"], a["w"])
    assert torch.equal(interpolate_states(a, b, 1.0)["w"], b["w"])
    assert torch.allclose(interpolate_states(a, b, 0.25)["w"], 0.75 * a["w"] + 0.25 * b["w"])
    assert torch.equal(interpolate_states(a, b, 0.5)["steps"], a["steps"])  # integer tensors are not blended


def test_intervals_stay_inside_the_possible_range():
    per_seed = pd.DataFrame({"anchor": "kl", "weight": 1.0, "seed": [0, 1, 2], "metric": "belief_yesno",
                             "stat": "phase2_end", "value": [0.5, 1.0, 1.0]})
    row = summarise_seeds(per_seed).iloc[0]
    assert row["mean"] == pytest.approx(5 / 6) and row.hi == 1.0 and row.lo < row["mean"]
    times = per_seed.assign(stat="cross_time", value=[1.0, 30.0, 2.0])
    assert summarise_seeds(times).iloc[0].lo == 0.0
