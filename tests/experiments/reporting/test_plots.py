"""The plot library on planted tables and arrays: the numbers drawn are the numbers given."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from scipy import stats

from experiments.reporting import plots
from experiments.evaluation import stats as run_stats
from experiments.errors import UserError

CONDITIONS = ["plain", "negated"]
SEEDS = [0, 1, 2]
STEPS = [0, 2, 6]
CLAIMS = ["claim0", "claim1"]
LAYERS = [0, 1, 2]


def planted_table(rng=np.random.default_rng(0)) -> pd.DataFrame:
    """A metrics table with known structure: belief grows with step for `plain` only, the
    fixed probe reads 0.1 higher than the refit one, layer 2 is the most accurate."""
    rows = []
    for cond, seed, step in itertools.product(CONDITIONS, SEEDS, STEPS):
        rise = step / 6 if cond == "plain" else 0.0
        for claim in CLAIMS:
            for metric in plots.BELIEF_METRICS:
                rows.append(dict(condition=cond, seed=seed, step=step, layer=np.nan, claim=claim, metric=metric,
                                 value=float(np.clip(rise + rng.normal(0, 0.05), 0, 1))))
        rows.append(dict(condition=cond, seed=seed, step=step, layer=np.nan, claim=None, metric="heldout_qa", value=0.9))
        for layer in LAYERS:
            acc = 0.5 + 0.2 * layer - 0.05 * (step / 6) * (cond == "negated")
            for kind in ("refit", "fixed"):
                rows.append(dict(condition=cond, seed=seed, step=step, layer=layer, claim=None,
                                 metric=f"probe_acc_{kind}", value=acc - (0.02 if kind == "fixed" else 0)))
                rows.append(dict(condition=cond, seed=seed, step=step, layer=layer, claim=None,
                                 metric=f"probe_acc_negated_{kind}", value=acc - 0.1))
                for claim in CLAIMS:
                    p = 0.2 + 0.5 * rise + (0.1 if kind == "fixed" else 0.0)
                    rows.append(dict(condition=cond, seed=seed, step=step, layer=layer, claim=claim,
                                     metric=f"probe_p_true_{kind}", value=p + rng.normal(0, 0.01)))
                    rows.append(dict(condition=cond, seed=seed, step=step, layer=layer, claim=claim,
                                     metric=f"probe_p_true_truefact_{kind}", value=0.8))
    frame = pd.DataFrame(rows)
    # step 0 is the base model, one model repeated for every condition and seed (as tables.collect does)
    keys = ["layer", "claim", "metric"]
    first = frame[(frame.step == 0) & (frame.condition == CONDITIONS[0]) & (frame.seed == SEEDS[0])]
    base = frame[frame.step == 0].drop(columns="value").merge(first[keys + ["value"]], on=keys, how="left")
    return pd.concat([base, frame[frame.step > 0]], ignore_index=True)


@pytest.fixture(scope="module")
def table():
    return planted_table()


def _trace(fig: go.Figure, name: str, xaxis: str = "x") -> go.Scatter:
    found = [t for t in fig.data if t.name == name and (t.xaxis or "x") == xaxis]
    assert len(found) == 1, [(t.name, t.xaxis) for t in fig.data]
    return found[0]


# --------------------------------------------------------------------------- intervals

def test_t_interval_matches_scipy():
    x = np.array([0.1, 0.4, 0.35, 0.8, 0.5])
    mean, lo, hi = run_stats.mean_ci(x, ci="t")
    want = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert mean == pytest.approx(x.mean()) and (lo, hi) == pytest.approx(want)


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    x = np.random.default_rng(1).normal(0.5, 0.1, size=40)
    a, b = run_stats.mean_ci(x, ci="bootstrap"), run_stats.mean_ci(x, ci="bootstrap")
    assert a == b and a[1] < a[0] < a[2]
    t = run_stats.mean_ci(x, ci="t")
    assert a[2] - a[1] == pytest.approx(t[2] - t[1], rel=0.25)  # same width, roughly, for normal data


def test_one_value_has_no_interval_and_unknown_methods_are_refused():
    mean, lo, hi = run_stats.mean_ci([0.3])
    assert mean == 0.3 and np.isnan(lo) and np.isnan(hi)
    assert run_stats.mean_ci([1.0, 1.0, 1.0]) == (1.0, 1.0, 1.0)  # three units that agree: a t interval of width 0
    with pytest.raises(UserError, match="'t' or 'bootstrap'"):
        run_stats.mean_ci([0.1, 0.2], ci="wald")


def test_summarise_is_over_claims_then_seeds(table):
    """Claims are the top-level units (seeds nested in them), not seeds x claims pooled."""
    rows = table[table.metric == "belief_verdict"]
    s = run_stats.summarise(rows, ["condition", "step"])
    assert (s.n == len(CLAIMS)).all() and (s.units == "claim>seed").all()
    assert (s.n_claims == len(CLAIMS)).all() and (s.n_seeds == len(SEEDS)).all()
    one = rows[(rows.condition == "plain") & (rows.step == 6)]
    claim_means = one.groupby("claim").value.mean()
    want = stats.t.interval(0.95, len(CLAIMS) - 1, loc=claim_means.mean(), scale=stats.sem(claim_means))
    got = s[(s.condition == "plain") & (s.step == 6)].iloc[0]
    assert (got.lo, got.hi) == pytest.approx(want)
    clipped = run_stats.summarise(rows, ["condition", "step"], bounds=(0, 1))
    assert (clipped.lo >= 0).all() and (clipped.hi <= 1).all()


# --------------------------------------------------------------------------- table figures

def test_belief_figure_draws_the_means_and_bands(table):
    fig = plots.belief_figure(table)
    assert [a.text for a in fig.layout.annotations] == list(plots.BELIEF_METRICS)
    rows = table[(table.metric == "belief_yesno") & (table.condition == "plain")]
    line = _trace(fig, "plain", "x2")
    assert list(line.x) == STEPS
    assert np.allclose(line.y, rows.groupby("step").value.mean().to_numpy())
    band = [t for t in fig.data if t.name == "plain CI" and t.xaxis == "x2"][0]
    lo, hi = np.array(band.y[len(STEPS):][::-1]), np.array(band.y[:len(STEPS)])
    assert (lo <= np.array(line.y) + 1e-12).all() and (np.array(line.y) <= hi + 1e-12).all()
    assert np.allclose(_trace(fig, "negated").y, table[(table.metric == "belief_forced_choice")
                                                       & (table.condition == "negated")].groupby("step").value.mean())


def test_best_layer_and_unknown_layer(table):
    assert run_stats.best_layer(table) == 2
    tie = table.copy()
    tie.loc[tie.metric == "probe_acc_refit", "value"] = 0.5  # everything at chance: the deepest layer
    assert run_stats.best_layer(tie) == max(LAYERS)
    with pytest.raises(UserError, match="layer 7 is not in the table"):
        plots.probe_reading_figure(table, layer=7)


def test_belief_table_and_seed_figure_say_their_units(table):
    """The base model counts once (one seed, its claims are the units); the last checkpoint's
    interval is over claims > seeds; the table says so and gives n at each level."""
    fig = plots.belief_table_figure(table, metrics=plots.BELIEF_METRICS)
    header = list(fig.data[0].header.values)
    columns = dict(zip(header, fig.data[0].cells.values))
    assert header[:6] == ["condition", "step", "units", "n worlds", "n claims", "n seeds"]
    assert list(columns["condition"]) == ["(base model)"] + CONDITIONS
    assert list(columns["units"]) == ["claim>seed"] * 3 and list(columns["n worlds"]) == ["-"] * 3
    assert list(columns["n claims"]) == [str(len(CLAIMS))] * 3
    assert list(columns["n seeds"]) == ["1", str(len(SEEDS)), str(len(SEEDS))]
    rows = table[(table.metric == "belief_yesno") & (table.condition == "plain") & (table.step == max(STEPS))]
    s = run_stats.summarise(rows, ["condition"]).iloc[0]
    assert columns["yesno"][1] == f"{100 * s['mean']:.0f} [{100 * s.lo:.0f}, {100 * s.hi:.0f}]"
    line = _trace(plots.belief_seeds_figure(table, metrics=plots.BELIEF_METRICS), "plain", "x2")
    assert [list(c[2:]) for c in line.customdata] == [[len(CLAIMS), "claim>seed"]] * len(STEPS)
    probe = _trace(plots.probe_reading_figure(table, layer=1), "plain")
    assert probe.customdata[0][0] < probe.customdata[0][1]  # step 0: seeds agree, claims differ: a real interval


def test_probe_reading_figure_shows_fixed_and_refit(table):
    fig = plots.probe_reading_figure(table, layer=1)
    fixed, refit = _trace(fig, "plain", "x"), _trace(fig, "plain", "x2")
    assert np.allclose(np.array(fixed.y) - np.array(refit.y), 0.1, atol=0.02)
    assert np.allclose(_trace(fig, "negated (true fact)", "x").y, 0.8)
    assert "layer 1" in fig.layout.title.text


def test_heatmap_is_layer_by_checkpoint(table):
    fig = plots.probe_accuracy_heatmap(table)
    heatmaps = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(heatmaps) == 2 * len(CONDITIONS)
    negated_refit = heatmaps[1]
    z = np.array(negated_refit.z)
    assert z.shape == (len(LAYERS), len(STEPS)) and list(negated_refit.y) == LAYERS
    assert z[2, 0] == pytest.approx(0.9) and z[2, -1] == pytest.approx(0.85)


def test_missing_metric_is_a_clear_error(table):
    with pytest.raises(UserError, match="no rows for"):
        plots.belief_figure(table[table.metric != "belief_yesno"])


def test_fixed_refit_gap(table):
    fig = plots.fixed_refit_gap_figure(table, layer=1)
    assert np.allclose(_trace(fig, "plain", "x").y, 0.1, atol=0.02)
    assert np.allclose(_trace(fig, "negated", "x2").y, -0.02)


def test_belief_probe_scatter_has_one_point_per_unit(table):
    fig = plots.belief_probe_scatter(table, layer=0)
    points = [t for t in fig.data if t.mode == "markers"]
    assert sum(len(t.x) for t in points) == len(CONDITIONS) * len(SEEDS) * len(STEPS) * len(CLAIMS)


def test_loss_figure():
    logs = pd.DataFrame([dict(step=s, loss=4 - s / 10 + seed / 100, condition=c, seed=seed)
                         for c in CONDITIONS for seed in SEEDS for s in range(1, 11)])
    fig = plots.loss_figure(logs, pd.DataFrame({"step": [1, 2], "loss": [5.0, 4.0]}))
    assert np.allclose(_trace(fig, "plain").y, logs[logs.condition == "plain"].groupby("step").loss.mean())
    assert _trace(fig, "pretrain", "x2") is not None
    assert len(plots.loss_figure(logs).layout.annotations) == 1
    reordered = plots.loss_figure(logs.iloc[::-1], conditions=CONDITIONS)  # colours follow the given order
    assert _trace(reordered, "plain").line.color == plots.condition_colors(CONDITIONS)["plain"]


# --------------------------------------------------------------------------- array figures

def planted_activations(d=8, n=40, steps=3, shift=1.5):
    """Statements spread along axis 0 (truth) and less along axis 1; each checkpoint shifts the
    claims along axis 0 by ``shift``."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2 == 0
    base = rng.normal(0, 0.05, size=(n, d))
    base[:, 0] += np.where(labels, 2.0, -2.0)
    base[:, 1] += rng.normal(0, 0.5, size=n)
    claims = np.zeros((2, d))
    claims[:, 0] = -2.0
    acts = np.stack([base] * steps)
    claim_acts = np.stack([claims + t * shift * np.eye(d)[0] for t in range(steps)])
    return labels, acts, claim_acts


def test_projection_keeps_the_base_axes_and_moves_the_claims():
    labels, acts, claim_acts = planted_activations()
    fig = plots.projection_figure({"plain": acts, "negated": acts}, {"plain": claim_acts, "negated": claim_acts},
                                  [0, 2, 6], labels=labels, negated=np.zeros(len(labels), bool),
                                  claim_names=["c0", "c1"], claim_kinds=["claim", "true_fact"], layer=3)
    assert [f.name for f in fig.frames] == ["0", "2", "6"]
    assert [s.label for s in fig.layout.sliders[0].steps] == ["0", "2", "6"]
    assert len(fig.data) == 8 and all(len(f.data) == 8 for f in fig.frames)
    moved = np.array([f.data[2].x[0] for f in fig.frames])  # PC1 is the truth axis (up to sign)
    assert np.allclose(np.abs(np.diff(moved)), 1.5, atol=0.01)  # the planted shift (PC1 ~ axis 0 up to noise)
    lo, hi = fig.layout.xaxis.range
    assert lo <= moved.min() and moved.max() <= hi  # fixed ranges cover every frame
    true_x = np.array(fig.data[0].x)
    false_x = np.array(fig.data[1].x)
    assert (np.sign(true_x) != np.sign(false_x.mean())).all()  # true and false separate on PC1


def test_projection_along_a_probe_direction():
    labels, acts, claim_acts = planted_activations()
    direction = np.eye(8)[0] * 3.0
    fig = plots.projection_figure({"plain": acts}, {"plain": claim_acts}, [0, 2, 6], labels=labels,
                                  negated=np.zeros(len(labels), bool), claim_names=["c0", "c1"],
                                  claim_kinds=["claim", "true_fact"], direction=direction)
    x = np.array([f.data[2].x[0] for f in fig.frames])
    assert np.allclose(x - x[0], [0, 1.5, 3.0])  # exactly the planted shift, with sign
    assert "probe direction" in fig.layout.xaxis.title.text


def test_projection_rejects_mismatched_steps():
    labels, acts, claim_acts = planted_activations()
    with pytest.raises(UserError, match="one activation array per step"):
        plots.projection_figure({"plain": acts}, {"plain": claim_acts}, [0, 6], labels=labels,
                                negated=np.zeros(len(labels), bool), claim_names=["a", "b"], claim_kinds=["claim", "claim"])


def test_direction_similarity_of_a_planted_rotation():
    angles = np.radians([0, 30, 90])
    dirs = np.stack([np.cos(angles), np.sin(angles), np.zeros(3)], axis=-1)  # [T=3, d=3]
    fig = plots.direction_similarity_figure({"plain": dirs, "negated": np.stack([dirs, -dirs])}, [0, 2, 6])
    z = np.array(fig.data[0].z)
    assert np.allclose(np.diag(z), 1) and z[0, 1] == pytest.approx(np.cos(np.radians(30)))
    assert z[0, 2] == pytest.approx(0, abs=1e-12) and z[1, 2] == pytest.approx(np.cos(np.radians(60)))
    assert np.allclose(np.array(fig.data[1].z), z)  # sign flips cancel within a seed


def test_direction_drift_skips_degenerate_layers():
    dirs = np.zeros((2, 3, 2, 4))  # [seeds, steps, layers, d]; layer 0 is all zeros
    dirs[:, :, 1, 0] = 1.0
    dirs[:, 2, 1] = [1.0, 1.0, 0, 0]
    fig = plots.direction_drift_figure({"plain": dirs}, [0, 2, 6])
    assert [t.name for t in fig.data] == ["layer 1"]
    assert np.allclose(fig.data[0].y, [1, 1, np.sqrt(0.5)])


def test_every_figure_serialises(table):
    for fig in (plots.belief_figure(table, ci="bootstrap"), plots.probe_reading_figure(table),
                plots.probe_accuracy_heatmap(table, negated_only=True), plots.fixed_refit_gap_figure(table),
                plots.belief_probe_scatter(table, belief="belief_verdict", probe="fixed")):
        assert fig.to_json()
