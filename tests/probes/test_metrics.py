"""Metrics, bootstrap intervals and control-task selectivity."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from probes import LogisticProbe, ProbeInputError
from probes.metrics import (Estimate, accuracy, auroc, bootstrap, control_labels, evaluate,
                            expected_calibration_error, selectivity)


def test_accuracy_and_auroc_against_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = np.round(y * 0.8 + rng.normal(size=500), 1)                   # rounded: many ties
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert accuracy(y, (s > 0.5).astype(float)) == pytest.approx(((s > 0.5) == y).mean())
    assert np.isnan(auroc(np.ones(5, int), np.arange(5.0)))


def test_ece_is_zero_when_calibrated_and_large_when_overconfident():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 200_000)
    y = (rng.uniform(0, 1, p.size) < p).astype(int)                   # labels drawn from p: calibrated
    assert expected_calibration_error(y, p) < 0.01
    over = np.where(p > 0.5, 0.999, 0.001)                            # same predictions, overconfident
    assert expected_calibration_error(y, over) > 0.2
    with pytest.raises(ProbeInputError, match=r"\[0, 1\]"):
        expected_calibration_error(y[:3], np.array([0.2, 1.5, 0.1]))


def test_bootstrap_interval_covers_value_and_shrinks_with_n():
    rng = np.random.default_rng(2)
    widths = []
    for n in (200, 3200):
        y = rng.integers(0, 2, n)
        p = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(size=n) * 0.3, 0, 1)
        est = bootstrap(accuracy, y, p, n_boot=300, seed=0)
        assert isinstance(est, Estimate) and est.low <= est.value <= est.high
        widths.append(est.high - est.low)
    assert widths[1] < widths[0] / 2.5                                # ~ 1/sqrt(n)
    report = evaluate(y, p, n_boot=100)
    assert set(report) == {"accuracy", "auroc", "ece"} and "[" in str(report["auroc"])
    assert bootstrap(accuracy, y, p, n_boot=100, seed=5) == bootstrap(accuracy, y, p, n_boot=100, seed=5)


def test_metric_input_errors():
    with pytest.raises(ProbeInputError, match="0/1"):
        auroc(np.array([0, 2, 1]), np.zeros(3))
    with pytest.raises(ProbeInputError, match="3 entries"):
        auroc(np.array([0, 1, 1]), np.zeros(4))
    with pytest.raises(ProbeInputError, match="NaN"):
        accuracy(np.array([0, 1]), np.array([0.1, np.nan]))


def test_control_labels_are_constant_within_groups():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(20), 5)
    c = control_labels(np.tile([0, 1], 50), groups=groups, rng=rng)
    assert all(len(set(c[groups == g])) == 1 for g in range(20))
    assert set(c) == {0, 1}


def test_selectivity_flags_a_probe_that_memorises_groups():
    """Each entity (group) has its own offset in activation space and its statements share a
    label within the real task only through a weak truth signal. A high-capacity probe can
    read entity identity, so on the per-entity control task it scores well: low selectivity.
    Without groups (shuffled labels) the control sits at chance: high selectivity."""
    rng = np.random.default_rng(4)
    n_groups, per, d = 40, 30, 60
    groups = np.repeat(np.arange(n_groups), per)
    entity = rng.normal(size=(n_groups, d)) * 3
    y = rng.integers(0, 2, n_groups * per)
    X = entity[groups] + rng.normal(size=(len(y), d))
    X[:, 0] += 3 * (2 * y - 1)
    train = rng.random(len(y)) < 0.7
    args = (LogisticProbe(C=1.0), X[train], y[train], X[~train], y[~train])
    shuffled = selectivity(*args, n_controls=3)
    assert shuffled["accuracy"] > 0.9 and abs(shuffled["control_accuracy"] - 0.5) < 0.1
    assert shuffled["selectivity"] > 0.35
    by_group = selectivity(*args, n_controls=3, groups_train=groups[train], groups_test=groups[~train])
    assert by_group["control_accuracy"] > 0.8 and by_group["selectivity"] < 0.2
