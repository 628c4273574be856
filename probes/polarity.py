"""Polarity-aware truth probe (Bürger et al., "Truth is Universal", 2024: TTPD).

Activations of true/false statements are modelled as::

    x = mu + p * n + tau * t_G + tau * p * t_P + noise,   tau = +1 true / -1 false,
                                                          p   = +1 affirmative / -1 negated

``t_G`` is the general truth direction (the same for both polarities); ``t_P`` is the
polarity-sensitive part, whose sign flips under negation. A probe fit on affirmative
statements only learns ``t_G + t_P`` and fails on negated statements whenever ``t_P``
dominates. Fitting the model above by least squares on both polarities separates the two;
classification then uses the projection on ``t_G`` alone (optionally plus the projection on
the affirmative-vs-negated direction, as in TTPD), so no polarity is needed at predict time.
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from probes._validation import ProbeInputError, as_binary_labels, as_features, as_polarity, to_numpy
from probes.linear import _LinearProbe


def check_polarity_classes(t: np.ndarray, p: np.ndarray) -> None:
    """Both classes (``t`` 0/1) must occur among affirmative (``p`` +1) and negated (-1) statements."""
    for pol, name in ((1.0, "affirmative"), (-1.0, "negated")):
        seen = set(t[p == pol].tolist())
        if seen != {0, 1}:
            raise ProbeInputError(f"polarity-aware probe needs true and false {name} statements; "
                                  f"got {name} labels {sorted(seen)}")


class PolarityAwareProbe(_LinearProbe):
    """Fit with ``fit(X, y, polarity)``; ``polarity`` is 'affirmative'/'negated' (or bool
    True = negated, or +1/-1). ``groups`` (e.g. topic or dataset id) optionally centres each
    group before estimating the directions, as TTPD does per dataset.

    Fitted: ``truth_direction_`` (unit t_G, pointing to ``classes_[1]``),
    ``polarity_truth_direction_`` (unit t_P), ``polarity_direction_`` (unit, affirmative minus
    negated means), and ``coef_``/``intercept_`` of the final linear classifier.
    ``direction_`` is ``truth_direction_``.
    """

    def __init__(self, use_polarity_direction: bool = False, C: float = 1e4):
        self.use_polarity_direction = use_polarity_direction
        self.C = C

    def fit(self, X, y, polarity=None, groups=None):
        X = as_features(X)
        self.classes_, t = as_binary_labels(y, X.shape[0])
        p = as_polarity(polarity, X.shape[0])
        check_polarity_classes(t, p)
        centred = X
        if groups is not None:
            groups = to_numpy(groups)
            if groups.shape != (X.shape[0],):
                raise ProbeInputError(f"groups must be 1-D with {X.shape[0]} entries; got shape {groups.shape}")
            centred = X.copy()
            for g in np.unique(groups):
                centred[groups == g] -= X[groups == g].mean(0)

        tau = 2.0 * t - 1.0
        design = np.stack([np.ones_like(tau), p, tau, tau * p], axis=1)
        coefs, *_ = np.linalg.lstsq(design, centred, rcond=None)
        t_general, t_polar = coefs[2], coefs[3]
        self.truth_direction_ = t_general / np.linalg.norm(t_general)
        self.polarity_truth_direction_ = t_polar / np.linalg.norm(t_polar)
        pol_dir = X[p > 0].mean(0) - X[p < 0].mean(0)
        self.polarity_direction_ = pol_dir / np.linalg.norm(pol_dir)

        basis = [self.truth_direction_] + ([self.polarity_direction_] if self.use_polarity_direction else [])
        basis = np.stack(basis, axis=1)                               # [d, k]
        lr = LogisticRegression(C=self.C, max_iter=1000).fit(X @ basis, t)
        self.coef_ = basis @ lr.coef_[0]
        self.intercept_ = float(lr.intercept_[0])
        self.n_features_in_ = X.shape[1]
        return self

    @property
    def direction_(self) -> np.ndarray:
        check_is_fitted(self, "truth_direction_")
        return self.truth_direction_
