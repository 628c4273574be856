"""Probe metrics with bootstrap confidence intervals, and selectivity against control tasks.

All metrics take 0/1 targets (or two labels, mapped with ``positive``) and scores: a
probability of the positive class for ECE, any monotone score for AUROC, and either
predicted labels or probabilities (thresholded at 0.5) for accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import clone

from probes._validation import ProbeInputError, as_features, to_numpy


@dataclass(frozen=True)
class Estimate:
    """A metric value with a percentile bootstrap interval."""
    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _targets(y_true, n=None) -> np.ndarray:
    y = to_numpy(y_true)
    if y.ndim != 1 or (n is not None and len(y) != n):
        raise ProbeInputError(f"y_true must be 1-D with {n if n is not None else 'n'} entries; got shape {y.shape}")
    if y.dtype == bool:
        return y.astype(np.int64)
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise ProbeInputError(f"y_true must be 0/1 or bool; got values {sorted(map(str, values))[:5]}")
    return y.astype(np.int64)


def _scores(scores, n) -> np.ndarray:
    s = to_numpy(scores, dtype=np.float64)
    if s.shape != (n,):
        raise ProbeInputError(f"scores must be 1-D with {n} entries; got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ProbeInputError("scores contain NaN or infinite values")
    return s


def accuracy(y_true, y_pred) -> float:
    """Fraction correct; ``y_pred`` may be 0/1 labels or probabilities (thresholded at 0.5)."""
    y = _targets(y_true)
    p = _scores(y_pred, len(y))
    return float(((p > 0.5) == y.astype(bool)).mean())


def _average_ranks(s: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


def auroc(y_true, scores) -> float:
    """Area under the ROC curve (Mann-Whitney U; ties count one half). NaN with one class."""
    y = _targets(y_true)
    s = _scores(scores, len(y))
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def expected_calibration_error(y_true, prob, n_bins: int = 10) -> float:
    """Top-label ECE (Guo et al. 2017): equal-width bins of confidence max(p, 1 - p), weighted
    mean |accuracy - confidence| over bins."""
    y = _targets(y_true)
    p = _scores(prob, len(y))
    if ((p < 0) | (p > 1)).any():
        raise ProbeInputError("prob must be probabilities in [0, 1]")
    confidence = np.maximum(p, 1 - p)
    correct = ((p > 0.5) == y.astype(bool)).astype(np.float64)
    bins = np.minimum(((confidence - 0.5) * 2 * n_bins).astype(int), n_bins - 1)
    total = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, correct, n_bins) - np.bincount(bins, confidence, n_bins))
    return float(gap.sum() / len(y)) if total.sum() else float("nan")


METRICS = {"accuracy": accuracy, "auroc": auroc, "ece": expected_calibration_error}


def bootstrap(metric, y_true, scores, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
              batched: bool = False) -> Estimate:
    """``metric(y_true, scores)`` with a percentile bootstrap interval over resampled statements.

    ``batched``: ``metric`` also takes every resample at once, ``[n_boot, n]`` arrays, and
    returns their ``[n_boot]`` values (e.g. ``lambda y, s: s.mean(-1)``), one call instead of
    ``n_boot``; the same resamples either way."""
    y = _targets(y_true)
    s = _scores(scores, len(y))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(y), size=(n_boot, len(y)))
    values = np.asarray(metric(y[draws], s[draws])) if batched else np.array([metric(y[i], s[i]) for i in draws])
    alpha = (1 - level) / 2
    low, high = np.nanquantile(values, [alpha, 1 - alpha])
    return Estimate(metric(y, s), float(low), float(high))


def evaluate(y_true, prob, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, Estimate]:
    """Accuracy, AUROC and ECE of probabilities ``prob`` with bootstrap intervals."""
    return {name: bootstrap(fn, y_true, prob, n_boot=n_boot, level=level, seed=seed)
            for name, fn in METRICS.items()}


def control_labels(y, *, groups=None, rng) -> np.ndarray:
    """Control-task labels: a shuffle of ``y``; with ``groups``, one random label per group
    (Hewitt & Liang 2019), so that a probe can score on them only by memorising groups."""
    y = to_numpy(y)
    if groups is None:
        return rng.permutation(y)
    groups = to_numpy(groups)
    uniq, inverse = np.unique(groups, return_inverse=True)
    return rng.permutation(np.resize(np.unique(y), len(uniq)))[inverse]


def selectivity(estimator, X_train, y_train, X_test, y_test, *, n_controls: int = 5,
                groups_train=None, groups_test=None, seed: int = 0) -> dict[str, float]:
    """Held-out accuracy on the task minus on control tasks (labels shuffled, or random per group).

    With ``groups`` (e.g. the entity each statement is about, shared between splits), control
    labels are consistent within a group across train and test, so a probe that memorises
    entities scores well on the control: low selectivity flags it.
    """
    X_train, X_test = as_features(X_train, name="X_train"), as_features(X_test, name="X_test")
    y_train, y_test = to_numpy(y_train), to_numpy(y_test)
    task = clone(estimator).fit(X_train, y_train).score(X_test, y_test)
    rng = np.random.default_rng(seed)
    y_all = np.concatenate([y_train, y_test])
    groups = None
    if (groups_train is None) != (groups_test is None):
        raise ProbeInputError("give both groups_train and groups_test, or neither")
    if groups_train is not None:
        groups = np.concatenate([to_numpy(groups_train), to_numpy(groups_test)])
    controls = []
    for _ in range(n_controls):
        c = control_labels(y_all, groups=groups, rng=rng)
        c_train, c_test = c[: len(y_train)], c[len(y_train):]
        if len(np.unique(c_train)) < 2:
            continue
        controls.append(clone(estimator).fit(X_train, c_train).score(X_test, c_test))
    if not controls:
        raise ProbeInputError("every control task had one class in the training split; use more groups")
    control = float(np.mean(controls))
    return dict(accuracy=float(task), control_accuracy=control, selectivity=float(task) - control)
