"""Contrast-Consistent Search (Burns et al., 2022): an unsupervised truth direction.

Input is contrast pairs: for each statement, the activation of the statement asserted true (x+)
and asserted false (x-). A probe ``p(x) = sigmoid(w . x + b)`` is trained so that
``p(x+) ~ 1 - p(x-)`` (consistency) while avoiding ``p = 0.5`` everywhere (confidence).
Each side is centred on its own mean (removing the "ends in yes/no" offset) and scaled by a
shared per-feature standard deviation, so the direction lives in one raw activation space.
All random restarts are trained at once as one batched problem; the lowest-loss one is kept.
CCS cannot know which end is "true": labels passed to ``fit`` only choose the sign.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from probes._validation import as_binary_labels, as_contrast_pairs
from probes.linear import sigmoid


@contextmanager
def _threads_for(work: float):
    """Small problems run single-threaded: on a busy machine, torch's thread pool makes tiny
    matrix products ~100x slower than one thread does."""
    before = torch.get_num_threads()
    if work < 5e7:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _adamw(loss_fn, params, *, lr, weight_decay, steps, betas=(0.9, 0.999), eps=1e-8):
    """Plain AdamW (same update as ``torch.optim.AdamW``), written out because importing
    ``torch.optim`` pulls in the compiler stack: seconds of start-up for a tiny problem."""
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for step in range(1, steps + 1):
        grads = torch.autograd.grad(loss_fn(), params)
        with torch.no_grad():
            for p, g, m_i, v_i in zip(params, grads, m, v):
                p.mul_(1 - lr * weight_decay)
                m_i.mul_(betas[0]).add_(g, alpha=1 - betas[0])
                v_i.mul_(betas[1]).addcmul_(g, g, value=1 - betas[1])
                denom = (v_i / (1 - betas[1] ** step)).sqrt_().add_(eps)
                p.addcdiv_(m_i, denom, value=-lr / (1 - betas[0] ** step))


def ccs_loss(p_pos: torch.Tensor, p_neg: torch.Tensor) -> torch.Tensor:
    """Per-restart CCS loss; inputs ``[..., R, n]`` probabilities, output ``[..., R]``."""
    consistency = (p_pos - (1 - p_neg)) ** 2
    confidence = torch.minimum(p_pos, p_neg) ** 2
    return (consistency + confidence).mean(-1)


@dataclass
class BatchedCCSFit:
    """``B`` CCS probes; ``weight``/``bias`` act on normalised activations ``(x - mean_side) / scale``."""
    weight: np.ndarray         # [B, d]
    bias: np.ndarray           # [B]
    mean_pos: np.ndarray       # [B, d]
    mean_neg: np.ndarray       # [B, d]
    scale: np.ndarray          # [B, d]
    restart_losses: np.ndarray  # [B, R]


def fit_ccs_batched(pairs: np.ndarray, t=None, *, n_restarts: int = 10, max_iter: int = 1000, lr: float = 1e-2,
                    weight_decay: float = 0.01, random_state: int | None = 0) -> BatchedCCSFit:
    """Fit ``B`` independent CCS probes at once: ``pairs`` ``[B, n, 2, d]`` (x+ then x-).

    Every problem starts from the same seeded restarts, so problem ``b`` gets what
    :class:`CCSProbe` fits on ``pairs[b]`` alone. ``t`` (0/1 per pair, shared) only orients
    each probe so that it reads "x+ is true" for ``t == 1``.
    """
    mean_pos, mean_neg = pairs[:, :, 0].mean(1), pairs[:, :, 1].mean(1)
    centred = np.concatenate([pairs[:, :, 0] - mean_pos[:, None], pairs[:, :, 1] - mean_neg[:, None]], axis=1)
    scale = centred.std(1) + 1e-8
    x_pos = torch.from_numpy((pairs[:, :, 0] - mean_pos[:, None]) / scale[:, None]).float()   # [B, n, d]
    x_neg = torch.from_numpy((pairs[:, :, 1] - mean_neg[:, None]) / scale[:, None]).float()
    B, _, d = x_pos.shape

    gen = torch.Generator().manual_seed(0 if random_state is None else int(random_state))
    bound = 1 / np.sqrt(d)
    w = ((torch.rand(n_restarts, d, generator=gen) * 2 - 1) * bound).expand(B, -1, -1).clone().requires_grad_()
    b = ((torch.rand(n_restarts, generator=gen) * 2 - 1) * bound).expand(B, -1).clone().requires_grad_()

    def losses():                                                   # [B, R]
        return ccs_loss(torch.sigmoid(torch.bmm(w, x_pos.transpose(1, 2)) + b[..., None]),
                        torch.sigmoid(torch.bmm(w, x_neg.transpose(1, 2)) + b[..., None]))

    with _threads_for(n_restarts * x_pos.numel()):
        _adamw(lambda: losses().sum(), [w, b], lr=lr, weight_decay=weight_decay, steps=max_iter)
        with torch.no_grad():
            final = losses()
    best = final.argmin(-1)
    rows = torch.arange(B)
    weight = w[rows, best].detach().double().numpy()
    bias = b[rows, best].detach().double().numpy()
    if t is not None:
        pos = sigmoid(np.einsum("bnd,bd->bn", x_pos.double().numpy(), weight) + bias[:, None])
        neg = sigmoid(np.einsum("bnd,bd->bn", x_neg.double().numpy(), weight) + bias[:, None])
        flip = (((0.5 * (pos + 1 - neg)) > 0.5) == np.asarray(t, bool)).mean(-1) < 0.5
        weight[flip], bias[flip] = -weight[flip], -bias[flip]
    return BatchedCCSFit(weight, bias, mean_pos, mean_neg, scale, final.numpy().astype(np.float64))


class CCSProbe(ClassifierMixin, BaseEstimator):
    """Unsupervised CCS probe on contrast pairs ``[n, 2, d]`` (or flat ``[n, 2*d]``: x+ then x-).

    ``predict_proba(X)[:, 1]`` is ``(p(x+) + 1 - p(x-)) / 2``, the probability that the
    statement is true. Without labels, ``classes_`` is ``[0, 1]`` with 1 meaning "x+ is true"
    up to the sign CCS happened to pick.

    Each side is also a linear probe in raw activation space: ``p(x+) = sigmoid(x+ @ coef_ +
    intercept_)`` reads a statement asserted as in x+, ``p(x-) = sigmoid(x- @ coef_ +
    intercept_negated_)`` one asserted as in x- (the two differ only by their centring).
    """

    def __init__(self, n_restarts: int = 10, max_iter: int = 1000, lr: float = 1e-2,
                 weight_decay: float = 0.01, random_state: int | None = 0):
        self.n_restarts = n_restarts
        self.max_iter = max_iter
        self.lr = lr
        self.weight_decay = weight_decay
        self.random_state = random_state

    def _normalise(self, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (pairs[:, 0] - self.mean_pos_) / self.scale_, (pairs[:, 1] - self.mean_neg_) / self.scale_

    def fit(self, X, y=None):
        pairs = as_contrast_pairs(X)
        self.classes_, t = np.array([0, 1]), None
        if y is not None:
            self.classes_, t = as_binary_labels(y, len(pairs))
        fit = fit_ccs_batched(pairs[None], t, n_restarts=self.n_restarts, max_iter=self.max_iter, lr=self.lr,
                              weight_decay=self.weight_decay, random_state=self.random_state)
        self.mean_pos_, self.mean_neg_, self.scale_ = fit.mean_pos[0], fit.mean_neg[0], fit.scale[0]
        self.restart_losses_ = fit.restart_losses[0]
        self.loss_ = float(self.restart_losses_.min())
        self.weight_ = fit.weight[0]                         # in normalised space
        self.bias_ = float(fit.bias[0])
        self.n_features_in_ = pairs.shape[2]
        return self

    def _truth_probability(self, pairs: np.ndarray) -> np.ndarray:
        x_pos, x_neg = self._normalise(pairs)
        return 0.5 * (sigmoid(x_pos @ self.weight_ + self.bias_) + 1 - sigmoid(x_neg @ self.weight_ + self.bias_))

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "weight_")
        p = self._truth_probability(as_contrast_pairs(X, self.n_features_in_))
        return np.stack([1 - p, p], axis=1)

    def decision_function(self, X) -> np.ndarray:
        return self.predict_proba(X)[:, 1] - 0.5

    def predict(self, X) -> np.ndarray:
        return self.classes_[(self.predict_proba(X)[:, 1] > 0.5).astype(int)]

    @property
    def coef_(self) -> np.ndarray:
        """Raw-space weights of either side (``weight_ / scale_``)."""
        check_is_fitted(self, "weight_")
        return self.weight_ / self.scale_

    @property
    def intercept_(self) -> float:
        """Raw-space intercept of the x+ side."""
        return float(self.bias_ - self.mean_pos_ @ self.coef_)

    @property
    def intercept_negated_(self) -> float:
        """Raw-space intercept of the x- side."""
        return float(self.bias_ - self.mean_neg_ @ self.coef_)

    @property
    def direction_(self) -> np.ndarray:
        """Unit direction in raw activation space (the sign is CCS's arbitrary choice unless fit with y)."""
        v = self.coef_
        return v / np.linalg.norm(v)
