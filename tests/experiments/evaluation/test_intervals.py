"""Intervals over nested units (experiments.evaluation.stats): coverage by simulation on a known
generative model (worlds > claims > seeds, each a random effect, plus noise per row), and what the
output says about its units."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from experiments.errors import UserError
from experiments.evaluation.stats import base_model_once, mean_ci, nested_interval, summarise

# 5 worlds x 4 claims x 3 seeds x 2 rows per seed (e.g. two paraphrases); the true mean is 0.
WORLDS, CLAIMS, SEEDS, ROWS = 5, 4, 3, 2
SD = dict(world=1.0, claim=0.7, seed=0.5, noise=0.5)


def simulate(repeats: int, seed: int) -> np.ndarray:
    """``[repeats, W, C, S, K]`` draws of world + claim + seed effects + row noise (all centred)."""
    rng = np.random.default_rng(seed)
    shape = (repeats, WORLDS, CLAIMS, SEEDS, ROWS)
    return (rng.normal(0, SD["world"], shape[:2] + (1, 1, 1)) + rng.normal(0, SD["claim"], shape[:3] + (1, 1))
            + rng.normal(0, SD["seed"], shape[:4] + (1,)) + rng.normal(0, SD["noise"], shape))


def tidy(values: np.ndarray) -> pd.DataFrame:
    """Tidy rows (``repeat, world, claim, seed, value``) of ``simulate``'s array."""
    idx = np.indices(values.shape).reshape(values.ndim, -1)
    return pd.DataFrame(dict(repeat=idx[0], world=[f"w{i}" for i in idx[1]], claim=[f"claim{i}" for i in idx[2]],
                             seed=idx[3], value=values.ravel()))


def covers(lo, hi, truth=0.0) -> float:
    return float(np.mean((np.asarray(lo) < truth) & (truth < np.asarray(hi))))


def test_default_interval_covers_and_the_pooled_one_does_not():
    """Nominal 95% over 300 simulated studies: the default (t over worlds' means) covers >= 90%;
    the old interval, pooling seeds x claims as independent units, covers far less."""
    values = simulate(300, seed=0)
    summary = summarise(tidy(values), ["repeat"])
    assert (summary.units == "world>claim>seed").all() and (summary.n == WORLDS).all()
    assert (summary.n_worlds == WORLDS).all() and (summary.n_claims == CLAIMS).all() and (summary.n_seeds == SEEDS).all()
    assert covers(summary.lo, summary.hi) >= 0.90
    # the same means: a balanced design's grand mean
    np.testing.assert_allclose(summary["mean"], values.reshape(300, -1).mean(1))
    pooled = np.array([mean_ci(cells) for cells in values.mean(-1).reshape(300, -1)])  # seeds x claims as units
    assert covers(pooled[:, 1], pooled[:, 2]) < 0.85


def test_hierarchical_bootstrap_covers_near_nominal():
    """The bootstrap (resampling units at every level, each within its parent) is not the
    default: with 5 top-level units a percentile interval runs a little short, but it stays
    within 10 points of nominal where the pooled interval misses by 40."""
    values = simulate(200, seed=1)
    rows = tidy(values[:1]).drop(columns="repeat")
    out = [nested_interval(rows.assign(value=v.ravel()), ci="bootstrap", n_boot=500) for v in values]
    assert {o["units"] for o in out} == {"world>claim>seed"}
    assert covers([o["lo"] for o in out], [o["hi"] for o in out]) >= 0.85
    again = nested_interval(rows.assign(value=values[0].ravel()), ci="bootstrap", n_boot=500)
    assert again == out[0]  # seeded


def test_agreeing_seeds_do_not_collapse_the_interval_when_claims_differ():
    rows = pd.DataFrame([dict(claim=c, seed=s, value=v) for c, v in (("a", 0.2), ("b", 0.5), ("c", 0.9))
                         for s in range(3)])
    got = nested_interval(rows)
    claim_means = np.array([0.2, 0.5, 0.9])
    want = stats.t.interval(0.95, 2, loc=claim_means.mean(), scale=stats.sem(claim_means))
    assert (got["lo"], got["hi"]) == pytest.approx(want)
    assert got["units"] == "claim>seed" and got["n"] == 3 and got["n_claims"] == 3 and got["n_seeds"] == 3
    assert got["n_worlds"] is None  # no world column: not a level
    # one world: the interval is over its claims, and the output says there was one world
    one_world = nested_interval(rows.assign(world="w0"))
    assert (one_world["lo"], one_world["hi"]) == pytest.approx(want)
    assert one_world["units"] == "claim>seed" and one_world["n_worlds"] == 1


def test_one_unit_gives_no_interval_and_says_so():
    rows = pd.DataFrame(dict(world="w0", claim="a", seed=0, value=[0.3, 0.5]))  # two rows of one seed
    got = nested_interval(rows)
    assert got["mean"] == pytest.approx(0.4) and math.isnan(got["lo"]) and math.isnan(got["hi"])
    assert got["n"] == 1 and (got["n_worlds"], got["n_claims"], got["n_seeds"]) == (1, 1, 1)
    s = summarise(rows.assign(step=0), ["step"], bounds=(0, 1))
    assert s.lo.isna().all() and s.hi.isna().all() and s.n.tolist() == [1]
    assert mean_ci([0.3])[0] == 0.3 and np.isnan(mean_ci([0.3])[1:]).all()
    assert np.isnan(mean_ci([])).all()


def test_unbalanced_units_weigh_equally_within_their_parent():
    """World w0 has claims a (seeds 0.0, 1.0) and b (one seed, 0.6); w1 has one claim c (0.2):
    the world means are 0.55 and 0.2, and the interval is a t interval over those two."""
    rows = pd.DataFrame(dict(world=["w0", "w0", "w0", "w1"], claim=["a", "a", "b", "c"], seed=[0, 1, 0, 0],
                             value=[0.0, 1.0, 0.6, 0.2]))
    got = nested_interval(rows)
    means = np.array([0.55, 0.2])
    assert got["mean"] == pytest.approx(means.mean())
    assert (got["lo"], got["hi"]) == pytest.approx(stats.t.interval(0.95, 1, loc=means.mean(), scale=stats.sem(means)))
    assert (got["n_worlds"], got["n_claims"], got["n_seeds"]) == (2, 1, 1)  # the fewest under one parent
    boot = nested_interval(rows, ci="bootstrap", n_boot=400)
    assert boot["lo"] <= got["mean"] <= boot["hi"]


def test_rows_pooled_over_claims_and_missing_values_are_not_units():
    rows = pd.DataFrame(dict(claim=["a", "b", "all", "c"], seed=0, value=[0.1, 0.3, 0.9, np.nan]))
    got = nested_interval(rows)
    assert got["mean"] == pytest.approx(0.2) and got["n"] == 2 and got["n_claims"] == 2
    only_pooled = nested_interval(rows[rows.claim == "all"])
    assert only_pooled["units"] == "seed" and only_pooled["n_claims"] is None and only_pooled["mean"] == 0.9


def test_summarise_groups_and_never_uses_a_by_column_as_a_unit():
    rows = pd.DataFrame([dict(step=st, claim=c, seed=s, value=st + 0.1 * i + 0.01 * s)
                         for st in (0, 1) for i, c in enumerate("abc") for s in range(2)])
    s = summarise(rows, ["step"], bounds=(0, 1))
    assert s.columns.tolist() == ["step", "mean", "lo", "hi", "n", "units", "n_worlds", "n_claims", "n_seeds"]
    assert (s.units == "claim>seed").all() and s.n_worlds.isna().all()
    assert s.hi.iloc[1] == 1.0 and s.lo.iloc[0] >= 0  # clipped to the bounds
    per_seed = summarise(rows, ["step", "seed"])
    assert (per_seed.units == "claim").all() and per_seed.n_seeds.isna().all() and (per_seed.n == 3).all()
    with pytest.raises(UserError, match="'t' or 'bootstrap'"):
        summarise(rows, ["step"], ci="wald")


def test_the_base_model_counts_once():
    """Step-0 rows are one model copied to every seed: only one copy is a unit."""
    rows = pd.DataFrame([dict(step=st, seed=s, value=0.5 if st == 0 else 0.1 * s) for st in (0, 4) for s in range(3)])
    kept = base_model_once(rows)
    assert kept[kept.step == 0].seed.tolist() == [0] and len(kept[kept.step == 4]) == 3
    s = summarise(kept, ["step"])
    assert s.n.tolist() == [1, 3] and s.lo.isna().tolist() == [True, False]


def test_a_probe_accuracy_interval_is_over_subjects_not_statements():
    from experiments.evaluation.stats import subject_interval

    subjects = [f"person{i}" for i in range(10) for _ in range(10)]
    correct = [i >= 2 for i in range(10) for _ in range(10)]  # two subjects read wrong throughout
    ci = subject_interval(correct, subjects)
    assert ci["acc"] == 0.8 and ci["n_subjects"] == 10 and ci["lo"] <= 0.8 <= ci["hi"]
    # drawn by subject, the interval sees 10 units: far wider than 100 statements would give (~0.16)
    assert ci["hi"] - ci["lo"] > 0.3
    spread = subject_interval([i % 5 != 0 for i in range(100)], subjects)  # the same 0.8, wrong ones spread evenly
    assert spread["acc"] == 0.8 and spread["hi"] - spread["lo"] < 1e-9


def test_a_probe_accuracy_by_frame_is_over_each_frames_own_statements():
    """``checks.probe_accuracy_by_frame``: one frame read perfectly and one at chance are told
    apart (a mean over frames would read 0.75), statements without a frame are left out, and the
    frames' accuracies weighted by their counts give back the accuracy over every framed statement."""
    from experiments.evaluation.checks import probe_accuracy_by_frame
    from experiments.materials.statements import Statement

    def statement(template: str, i: int) -> Statement:
        return Statement(f"s{i}", i % 2 == 0, False, f"e{i}", "test", template=template)

    statements = ([statement("{s} lives in {o} .", i) for i in range(40)]
                  + [statement("in {o} you can meet {s} every day .", i) for i in range(40)]
                  + [statement("", i) for i in range(10)])
    correct = np.array([True] * 40 + [i % 4 < 2 for i in range(40)] + [False] * 10)
    by_frame = probe_accuracy_by_frame(correct, statements)
    assert list(by_frame) == ["{s} lives in {o} .", "in {o} you can meet {s} every day ."]
    assert by_frame["{s} lives in {o} ."] == {"acc": 1.0, "n": 40}
    assert by_frame["in {o} you can meet {s} every day ."] == {"acc": 0.5, "n": 40}
    pooled = sum(f["acc"] * f["n"] for f in by_frame.values()) / sum(f["n"] for f in by_frame.values())
    assert pooled == pytest.approx(correct[:80].mean())
