"""Linear truth probes as scikit-learn estimators.

Both expose ``direction_`` (unit vector, pointing to ``classes_[1]``), so directions from
different probes, layers and checkpoints can be compared by cosine similarity.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from probes._validation import ProbeInputError, as_binary_labels, as_features, to_numpy


def sigmoid(z) -> np.ndarray:
    """``1 / (1 + exp(-z))``, clipped so huge logits give 0 or 1 without overflow warnings.

    The one logistic link of the package: every probe's ``P(true)`` goes through it.
    """
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))


def linear_logits(acts, coef, intercept) -> np.ndarray:
    """Logits ``x @ coef + intercept`` of a stack of linear probes on their statements.

    Parameters
    ----------
    acts : array ``[*batch, m, d]``
        Activations of ``m`` statements for each probe (``[m, d]`` for a single probe).
    coef : array ``[*batch, d]``
    intercept : array ``[*batch]``

    Returns
    -------
    array ``[*batch, m]`` (float64). Each probe is applied as one matrix-vector product, so
    the numbers equal a single probe's ``decision_function`` bit for bit.
    """
    acts = to_numpy(acts)  # as given (a layer-major view of [n, L, d] is not copied): one probe's rows at a time below
    coef, intercept = to_numpy(coef, dtype=np.float64), to_numpy(intercept, dtype=np.float64)
    batch = coef.shape[:-1]
    if acts.ndim != coef.ndim + 1 or acts.shape[:-2] != batch or acts.shape[-1] != coef.shape[-1] \
            or intercept.shape != batch:
        raise ProbeInputError(f"linear probes need acts [*batch, m, d], coef [*batch, d], intercept [*batch]; "
                              f"got {acts.shape}, {coef.shape}, {intercept.shape}")
    k = int(np.prod(batch))
    out = np.zeros((k, acts.shape[-2]))
    for i, (x, c, b) in enumerate(zip(acts.reshape(k, *acts.shape[-2:]), coef.reshape(k, -1), intercept.reshape(k))):
        out[i] = np.ascontiguousarray(x, dtype=np.float64) @ c + b
    return out.reshape(*batch, acts.shape[-2])


class _LinearProbe(ClassifierMixin, BaseEstimator):
    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self, "coef_")
        return as_features(X, self.coef_.shape[0]) @ self.coef_ + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        p = sigmoid(self.decision_function(X))
        return np.stack([1 - p, p], axis=1)

    def predict(self, X) -> np.ndarray:
        return self.classes_[(self.decision_function(X) > 0).astype(int)]

    @property
    def direction_(self) -> np.ndarray:
        check_is_fitted(self, "coef_")
        return self.coef_ / np.linalg.norm(self.coef_)


class LogisticProbe(_LinearProbe):
    """L2-regularised logistic regression on standardised features.

    ``C`` is the inverse regularisation strength, as in scikit-learn. Features are
    standardised before fitting; ``coef_`` and ``intercept_`` are mapped back to raw
    activation space so ``X @ coef_ + intercept_`` is the logit.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 1000):
        self.C = C
        self.max_iter = max_iter

    def fit(self, X, y):
        X = as_features(X)
        self.classes_, t = as_binary_labels(y, X.shape[0])
        mu, sd = X.mean(0), X.std(0) + 1e-8
        lr = LogisticRegression(C=self.C, max_iter=self.max_iter).fit((X - mu) / sd, t)
        self.coef_ = lr.coef_[0] / sd
        self.intercept_ = float(lr.intercept_[0] - (mu * self.coef_).sum())
        self.n_features_in_ = X.shape[1]
        return self


def projection_spread(proj):
    """The standard deviation of the training statements' projections on a probe direction (1
    where it is 0), so a 1-D scale is fit on projections of unit spread: the fit is then the same
    for activations of any size. Unscaled, a direction whose projections are small (a layer of
    small activations, features scaled by 1e-3) has a gradient below the solver's tolerance at
    the start, so its scale, and all its weights, would stay 0. ``proj``: ``[n]`` (numpy) or
    ``[B, n, 1]`` (torch; returns ``[B, 1]``)."""
    if isinstance(proj, np.ndarray):
        spread = float(proj.std())
        return spread if spread > 0 else 1.0
    import torch

    spread = proj.std(dim=1, unbiased=False)
    return torch.where(spread > 0, spread, torch.ones_like(spread))


class MassMeanProbe(_LinearProbe):
    """Difference-of-means direction (Marks & Tegmark), optionally covariance-whitened (LDA).

    The logit is ``scale_ * (x - midpoint) . theta`` with ``theta = mu1 - mu0`` (or
    ``Sigma^-1 (mu1 - mu0)`` when ``lda=True``); ``scale_`` is fit by 1-D logistic
    regression (on the projections scaled to unit spread: :func:`projection_spread`) so
    ``predict_proba`` is calibrated on the training data.
    """

    def __init__(self, lda: bool = False, shrinkage: float = 1e-3):
        self.lda = lda
        self.shrinkage = shrinkage

    def fit(self, X, y):
        X = as_features(X)
        self.classes_, t = as_binary_labels(y, X.shape[0])
        mu0, mu1 = X[t == 0].mean(0), X[t == 1].mean(0)
        theta = mu1 - mu0
        if self.lda:
            centred = np.concatenate([X[t == 0] - mu0, X[t == 1] - mu1])
            cov = centred.T @ centred / max(len(X) - 2, 1)
            cov += self.shrinkage * np.trace(cov) / len(cov) * np.eye(len(cov))
            theta = np.linalg.solve(cov, theta)
        midpoint = (mu0 + mu1) / 2
        proj = (X - midpoint) @ theta
        spread = projection_spread(proj)
        lr = LogisticRegression(C=1e4).fit((proj / spread)[:, None], t)
        self.coef_ = theta * (lr.coef_[0, 0] / spread)
        self.intercept_ = float(lr.intercept_[0] - midpoint @ self.coef_)
        self.n_features_in_ = X.shape[1]
        return self
