"""Centred probe readings and the validation split (experiments.evaluation.readout), and a
layer choice that never looks at the test split (experiments.evaluation.stats.best_layer)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from experiments.config import PROBE_ESTIMATORS
from experiments.errors import UserError
from experiments.evaluation import readout
from experiments.evaluation.stats import best_layer
from tests.experiments.evaluation.planted import CLAIMS, N_LAYERS, basis, checkpoint, plant, planted_statements

# A float32 activation moved by the drift is rounded to float32 again (relative error ~6e-8 per
# coordinate, d = 16): the centred reading may move by that rounding, ~1e-7 in practice, and by
# nothing else. The raw readings move by tenths.
Z_TOL = 1e-5


def frame(rows) -> pd.DataFrame:
    out = pd.DataFrame(rows)
    return out.assign(claim=out.get("claim"))


def reading(rows: pd.DataFrame, metric: str, claim: str | None = None) -> np.ndarray:
    """Values of ``metric`` per layer (for one claim)."""
    sel = rows.metric == metric
    if claim is not None:
        sel &= rows.claim == claim
    return rows[sel].sort_values("layer").value.to_numpy()


@pytest.mark.parametrize("estimator", PROBE_ESTIMATORS)
def test_a_global_drift_moves_raw_readings_not_centred_ones(estimator):
    """A later checkpoint whose every activation (controls and claims, every layer) is moved by
    one constant vector, with a component along the truth direction: the base model's (fixed)
    probe reads everything as truer, the centred reading does not move."""
    q = basis()
    stmts, acts0, claims0 = checkpoint(q[0], seed=0)
    drift = (3.0 * q[0] + 4.0 * q[3]).astype(np.float32)
    acts1, claims1 = acts0 + drift, claims0 + drift
    fixed = readout.fit_probes(acts0, stmts, estimator=estimator)
    before = frame(readout.probe_rows(acts0, stmts, claims0, CLAIMS, fixed, fixed))
    after = frame(readout.probe_rows(acts1, stmts, claims1, CLAIMS, readout.fit_probes(acts1, stmts,
                                                                                        estimator=estimator), fixed))
    # raw: the fixed probe's reading of the false claim and of the controls moves (layers 1.. carry truth)
    moved = reading(after, "probe_p_true_fixed", "c_false") - reading(before, "probe_p_true_fixed", "c_false")
    assert (moved[1:] > 0.2).all()
    negated = np.array([s.negated for s in stmts])
    controls = [fixed.p_true(np.moveaxis(a, 1, 0), negated).mean(1) for a in (acts0, acts1)]
    assert (controls[1][1:] - controls[0][1:] > 0.1).all()
    # centred: unchanged for every claim, kind and layer (layer 0 included)
    for metric in ("probe_z_fixed", "probe_z_truefact_fixed", "probe_z_refit", "probe_z_truefact_refit"):
        for claim in sorted(set(before[before.metric == metric].claim)):
            z0, z1 = reading(before, metric, claim), reading(after, metric, claim)
            assert len(z0) == N_LAYERS and np.isfinite(z0).all()
            np.testing.assert_allclose(z1, z0, rtol=0, atol=Z_TOL, err_msg=f"{metric} {claim}")
    # and it still reads the planted truth: the false claim below the controls' mean, the true ones above
    for layer in (1, 2):
        assert reading(after, "probe_z_fixed", "c_false")[layer] < 0
        assert reading(after, "probe_z_truefact_fixed", "c_false")[layer] > 0
        assert reading(after, "probe_z_fixed", "c_true")[layer] > 0


def test_centring_is_per_dataset_on_the_test_split():
    """Two statement sets, the second read as truer overall: the claim's z is the mean of its
    z-scores against each set's test-split controls; training-split controls do not count."""
    q = basis()
    a, b = planted_statements(n_subjects=40), planted_statements(n_subjects=40, dataset="other")
    stmts = a + [dataclasses.replace(s, text=s.text + " (b)", subject=s.subject + "b") for s in b]
    acts = plant([s.label for s in stmts], [s.negated for s in stmts], q[0], seed=3)
    acts[len(a):, 1:] += 2.0 * q[0]  # the second set sits further along the truth direction
    claims = plant([False] * 3 + [True] * 6, [False] * 9, q[0], seed=4)
    probes = readout.fit_probes(acts, stmts)
    z = readout.centred_readings(acts, stmts, claims, probes)
    negated = np.array([s.negated for s in stmts])
    logits = probes.logits(np.moveaxis(acts, 1, 0), negated)
    claim_logits = probes.logits(np.moveaxis(claims, 1, 0))
    want = []
    for dataset in ("other", "synthetic"):
        ref = logits[:, [s.split == "test" and s.dataset == dataset for s in stmts]]
        want.append((claim_logits - ref.mean(1, keepdims=True)) / ref.std(1, ddof=1, keepdims=True))
    np.testing.assert_allclose(z, np.mean(want, axis=0), rtol=1e-12)
    pooled = logits[:, [s.split == "test" for s in stmts]]
    assert not np.allclose(z, (claim_logits - pooled.mean(1, keepdims=True)) / pooled.std(1, ddof=1, keepdims=True))
    # the training split does not move the reference
    moved = acts.copy()
    moved[[s.split == "train" for s in stmts]] += 5.0 * q[0]
    np.testing.assert_allclose(readout.centred_readings(moved, stmts, claims, probes), z, rtol=1e-12)
    few = [i for i, s in enumerate(stmts) if s.split == "train"] + [[s.split for s in stmts].index("test")]
    with pytest.raises(UserError, match="at least 2 test-split control statements"):
        readout.centred_readings(acts[few], [stmts[i] for i in few], claims, probes)


def test_validation_split_is_carved_from_training_subjects_per_dataset():
    a, b = planted_statements(n_subjects=40), planted_statements(n_subjects=8, dataset="other")
    stmts = a + b
    val = readout.validation_split(stmts)
    assert val.any() and np.array_equal(val, readout.validation_split(stmts))  # deterministic
    split = np.array([s.split for s in stmts])
    assert (split[val] == "train").all()
    subjects = {(s.dataset, s.subject) for s, v in zip(stmts, val) if v}
    assert not any((s.dataset, s.subject) in subjects for s, v in zip(stmts, val) if not v)  # no subject straddles
    for dataset, n_train in (("synthetic", 30), ("other", 6)):
        held = {sub for d, sub in subjects if d == dataset}
        assert len(held) == max(1, round(n_train * readout.VALIDATION_FRACTION))
    acts = plant([s.label for s in stmts], [s.negated for s in stmts], basis()[0], seed=5)
    probes = readout.fit_probes(acts, stmts, validation=True)
    assert set(probes.test_index) == set(np.flatnonzero(val))
    assert set(probes.train_index) == set(np.flatnonzero((split == "train") & ~val))
    one = [s for s in a if s.subject == "s1" or s.split == "test"]
    with pytest.raises(UserError, match="validation split needs a dataset with at least 2 training-split subjects"):
        readout.validation_split(one)


def test_the_layer_is_chosen_without_the_test_split():
    """Replace the test statements' activations by noise: the validation rows, and so the layer
    ``best_layer`` picks, stay exactly as they were, while the test accuracy collapses."""
    stmts, acts, claims = checkpoint(basis()[0], seed=0)
    test = np.array([s.split == "test" for s in stmts])
    noisy = acts.copy()
    noisy[test] = np.random.default_rng(9).normal(size=noisy[test].shape).astype(np.float32)
    tables = []
    for a in (acts, noisy):
        refit, refit_val = (readout.fit_probes(a, stmts, validation=v) for v in (False, True))
        rows = frame(readout.probe_rows(a, stmts, claims, CLAIMS, refit, refit, refit_val=refit_val,
                                        fixed_val=refit_val))
        tables.append(rows.assign(step=0, condition="plain", seed=0))
    clean, scrambled = tables
    for metric in ("probe_acc_val_refit", "probe_acc_val_fixed"):
        np.testing.assert_array_equal(reading(scrambled, metric), reading(clean, metric))
    assert (reading(clean, "probe_acc_val_refit")[1:] > 0.9).all()
    assert (reading(scrambled, "probe_acc_refit")[1:] < 0.75).all()  # the test split is noise now
    assert best_layer(scrambled) == best_layer(clean)


def test_best_layer_prefers_validation_and_falls_back_for_old_tables():
    rows = []
    for layer, (test_acc, val_acc) in enumerate([(0.5, 0.5), (0.7, 0.95), (0.99, 0.8)]):
        rows += [dict(step=0, layer=layer, metric="probe_acc_refit", value=test_acc),
                 dict(step=0, layer=layer, metric="probe_acc_val_refit", value=val_acc),
                 dict(step=5, layer=layer, metric="probe_acc_val_refit", value=1.0 - val_acc)]  # only step 0 counts
    table = pd.DataFrame(rows)
    assert best_layer(table) == 1
    assert best_layer(table[table.metric == "probe_acc_refit"]) == 2  # a table written before validation rows


def test_neighbourhood_readings_follow_their_own_statements():
    """Planted neighbourhoods: the subject's statements sit where the controls do (read right),
    the object's are planted with their truth flipped (read wrong): accuracy, P(true) of the
    true affirmative statements and their centred reading say so, per claim and layer."""
    from experiments.materials.statements import NeighbourStatement

    direction = basis()[0]
    stmts, acts, _ = checkpoint(direction, seed=0)
    probes = readout.fit_probes(acts, stmts)
    variants = [(True, False), (False, False), (False, True), (True, True)]
    neighbours = [NeighbourStatement("c", kind, f"{kind} {i} {j}", label, negated, f"e{i}", "r")
                  for kind in ("subject", "object") for i in range(3) for j, (label, negated) in enumerate(variants)]
    flipped = [n.label != (n.kind == "object") for n in neighbours]  # the object's truth planted the wrong way
    neighbour_acts = plant(flipped, [n.negated for n in neighbours], direction, seed=7)
    rows = frame(readout.neighbour_rows(acts, stmts, neighbour_acts, neighbours, {"refit": probes, "fixed": None}))
    assert set(rows.metric) == {f"probe_{m}_neighbour_{k}_refit" for m in ("acc", "p_true", "z")
                                for k in ("subject", "object")}
    assert set(rows.claim) == {"c"} and sorted(rows.layer.unique()) == list(range(N_LAYERS))
    for layer in range(1, N_LAYERS):  # layer 0 carries no truth
        at = rows[rows.layer == layer].set_index("metric").value
        assert at["probe_acc_neighbour_subject_refit"] == 1.0 and at["probe_acc_neighbour_object_refit"] == 0.0
        assert at["probe_p_true_neighbour_subject_refit"] > 0.75 > 0.25 > at["probe_p_true_neighbour_object_refit"]
        assert at["probe_z_neighbour_subject_refit"] > 0 > at["probe_z_neighbour_object_refit"]
    assert readout.neighbour_rows(acts, stmts, neighbour_acts[:0], [], {"refit": probes}) == []
