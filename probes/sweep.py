"""Fit one probe per layer x checkpoint at once.

``acts`` has shape ``[*batch, n, d]`` (e.g. ``[C, L, n, d]`` for C checkpoints and L layers;
from ``interp.residuals`` output ``[n, L, d]`` use ``einops.rearrange(r, "n l d -> l n d")``),
and ``y`` holds one label per statement, shared by every probe. The same train/test split is
used for every probe, so their accuracies are comparable.

Methods: ``"logistic"`` (:class:`LogisticProbe`), ``"mass_mean"`` (:class:`MassMeanProbe`),
``"polarity_aware"`` (:class:`PolarityAwareProbe`, needs ``polarity``) and ``"ccs"``
(:class:`CCSProbe`, needs ``pairs``: which statements form contrast pairs). Two backends give
the same accuracies: ``"torch"`` solves all problems together as batched tensor operations
(batched L-BFGS for logistic probes, batched means/solves for mass-mean and polarity-aware,
batched restarts for CCS), on CPU or GPU; ``"sklearn"`` loops the single estimators as the
reference. The result (:class:`SweepResult`) is a stack of linear probes that reads any
statements: ``result.p_true(acts)``.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from probes._batched_logistic import batched_matvec, fit_logistic_batched
from probes._validation import ProbeInputError, as_binary_labels, as_polarity, to_numpy
from probes.ccs import CCSProbe, fit_ccs_batched
from probes.linear import LogisticProbe, MassMeanProbe, linear_logits, projection_spread, sigmoid
from probes.polarity import PolarityAwareProbe, check_polarity_classes

METHODS = ("logistic", "mass_mean", "polarity_aware", "ccs")
BACKENDS = ("torch", "sklearn")


@dataclass
class SweepResult:
    """Fitted probes of a sweep. Arrays have the batch shape of ``acts`` in front.

    A stack of linear probes: the logit of a statement ``x`` is ``x @ coef + intercept``
    (positive -> ``classes[1]``). CCS probes read statements on the x- side of their contrast
    pairs (the negated ones) with ``intercept_negated`` instead. Indexing (``result[layer]``)
    selects probes along the first batch axis.
    """
    method: str
    backend: str
    classes: np.ndarray
    coef: np.ndarray            # [*batch, d]; logit = x @ coef + intercept, positive -> classes[1]
    intercept: np.ndarray       # [*batch]
    train_accuracy: np.ndarray  # [*batch]
    test_accuracy: np.ndarray   # [*batch] (NaN when there is no test split)
    test_logits: np.ndarray     # [*batch, n_test]
    train_index: np.ndarray
    test_index: np.ndarray
    seconds: float
    params: dict = field(default_factory=dict)
    intercept_negated: np.ndarray | None = None  # [*batch]; CCS only: intercept of the x- (negated) side

    @property
    def direction(self) -> np.ndarray:
        return self.coef / np.linalg.norm(self.coef, axis=-1, keepdims=True)

    def __len__(self) -> int:
        if not self.intercept.shape:
            raise TypeError("a single probe has no length; index a sweep with batch axes")
        return self.intercept.shape[0]

    def __getitem__(self, index) -> "SweepResult":
        """The probes at ``index`` of the first batch axis (e.g. one layer), as a SweepResult."""
        if not self.intercept.shape:
            raise TypeError("a single probe cannot be indexed further")
        pick = lambda a: None if a is None else a[index]
        return dataclasses.replace(self, coef=self.coef[index], intercept=self.intercept[index],
                                   train_accuracy=self.train_accuracy[index], test_accuracy=self.test_accuracy[index],
                                   test_logits=self.test_logits[index], intercept_negated=pick(self.intercept_negated))

    def logits(self, acts, negated=None) -> np.ndarray:
        """Logits of ``m`` statements under every probe.

        Parameters
        ----------
        acts : array ``[*batch, m, d]``
            The statements' activations where each probe reads them (``[m, d]`` after
            selecting one probe).
        negated : bool array ``[m]``, optional
            Which statements are negated; only CCS probes use it (the x- side of their pairs).

        Returns
        -------
        array ``[*batch, m]`` (float64)
        """
        out = linear_logits(acts, self.coef, self.intercept)
        if self.intercept_negated is None or negated is None:
            return out
        negated = np.asarray(negated, dtype=bool)
        if negated.shape != out.shape[-1:]:
            raise ProbeInputError(f"negated must be 1-D with {out.shape[-1]} entries; got shape {negated.shape}")
        return np.where(negated, linear_logits(acts, self.coef, self.intercept_negated), out)

    def p_true(self, acts, negated=None) -> np.ndarray:
        """Probability of ``classes[1]`` (P(true) for truth labels): ``sigmoid(logits(acts, negated))``."""
        return sigmoid(self.logits(acts, negated))

    def rows(self, dims: tuple[str, ...] = ("checkpoint", "layer")) -> list[dict]:
        """Tidy rows, one per probe: ``{dims...: index, method, train_accuracy, test_accuracy}``."""
        shape = self.intercept.shape
        if len(dims) != len(shape):
            raise ProbeInputError(f"dims {dims} name {len(dims)} axes but the sweep has batch shape {shape}")
        return [dict(zip(dims, idx), method=self.method, train_accuracy=float(self.train_accuracy[idx]),
                     test_accuracy=float(self.test_accuracy[idx])) for idx in np.ndindex(*shape)]


def stratified_split(t: np.ndarray, test_size: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split keeping the class balance; returns sorted (train_index, test_index)."""
    if not 0 <= test_size < 1:
        raise ProbeInputError(f"test_size must be in [0, 1); got {test_size}")
    rng = np.random.default_rng(seed)
    test = []
    for c in (0, 1):
        idx = rng.permutation(np.flatnonzero(t == c))
        test.append(idx[: int(round(test_size * len(idx)))])
    test = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(t)), test), test


def group_split(groups, test_size: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split that keeps every group (e.g. every statement about one entity) on one side:
    whole groups go to the test split until it holds about ``test_size`` of the statements.
    Returns sorted (train_index, test_index)."""
    if not 0 <= test_size < 1:
        raise ProbeInputError(f"test_size must be in [0, 1); got {test_size}")
    groups = np.asarray(groups)
    names = np.unique(groups)
    if len(names) < 2 and test_size > 0:
        raise ProbeInputError(f"a group split needs at least 2 groups; got {len(names)}")
    order = np.random.default_rng(seed).permutation(names)
    target, test = test_size * len(groups), []
    taken = 0
    for name in order[:-1]:  # the training split keeps at least one group
        if taken >= target:
            break
        members = np.flatnonzero(groups == name)
        test.append(members)
        taken += len(members)
    test = np.sort(np.concatenate(test)) if test else np.array([], dtype=np.int64)
    return np.setdiff1d(np.arange(len(groups)), test), test


def _check_acts(acts):
    if not hasattr(acts, "shape") or len(acts.shape) < 2:
        raise ProbeInputError(f"acts must have shape [*batch, n, d]; got {getattr(acts, 'shape', type(acts))}")
    if 0 in tuple(acts.shape):
        raise ProbeInputError(f"acts is empty (shape {tuple(acts.shape)})")
    return tuple(acts.shape[:-2]), acts.shape[-2], acts.shape[-1]


def _check_pairs(pairs, n: int, train_index: np.ndarray) -> np.ndarray:
    """Contrast pairs as ``[k, 2]`` statement indices (x+, x-); returns those inside the training split."""
    if pairs is None:
        raise ProbeInputError("method 'ccs' needs pairs: [k, 2] indices of contrast pairs (x+ then x-)")
    pairs = to_numpy(pairs)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.dtype.kind not in "iu":
        raise ProbeInputError(f"pairs must be integer indices of shape [k, 2]; got {pairs.dtype} {pairs.shape}")
    if pairs.size and (pairs.min() < 0 or pairs.max() >= n):
        raise ProbeInputError(f"pairs must index the {n} statements")
    train = np.isin(pairs, train_index).all(1)
    if train.sum() < 2:
        raise ProbeInputError(f"method 'ccs' needs at least 2 contrast pairs inside the training split; "
                              f"got {int(train.sum())}")
    return pairs[train].astype(np.int64)


def sweep_probes(acts, y, *, method: str = "logistic", backend: str = "torch", C: float = 1.0,
                 lda: bool = False, shrinkage: float = 1e-3, test_size: float = 0.25,
                 train_index=None, test_index=None, seed: int = 0, device=None,
                 dtype: torch.dtype = torch.float32, chunk_size: int | None = None,
                 max_iter: int = 1000, tol: float = 1e-4, polarity=None, pairs=None, groups=None) -> SweepResult:
    """Fit a ``method`` probe on every ``acts[*batch]`` and score it on a held-out split.

    The split: with ``groups`` (one key per statement, e.g. the entity it is about), whole
    groups are held out (:func:`group_split`), so no entity is on both sides; without, a seeded
    stratified split of statements. ``train_index``/``test_index`` override either.
    ``chunk_size`` bounds how many probes are moved to ``device`` and solved together.
    ``C``, ``lda`` and ``shrinkage`` mean what they mean for the single estimators.
    ``polarity`` (``"polarity_aware"``): one entry per statement, as
    :class:`PolarityAwareProbe` takes it. ``pairs`` (``"ccs"``): ``[k, 2]`` indices of
    contrast pairs, x+ then x-; pairs inside the training split train the probe (``y`` of
    x+ only orients it, ``max_iter`` counts its optimiser steps, ``seed`` draws its restarts),
    and statements that are the x- of a pair are scored with ``intercept_negated``.
    """
    if method not in METHODS:
        raise ProbeInputError(f"method must be one of {METHODS}; got {method!r}")
    if backend not in BACKENDS:
        raise ProbeInputError(f"backend must be one of {BACKENDS}; got {backend!r}")
    batch, n, d = _check_acts(acts)
    classes, t = as_binary_labels(y, n)
    if train_index is None and test_index is None and groups is not None:
        if len(groups) != n:
            raise ProbeInputError(f"groups must have one key per statement ({n}); got {len(groups)}")
        train_index, test_index = group_split(groups, test_size, seed)
    elif train_index is None and test_index is None:
        train_index, test_index = stratified_split(t, test_size, seed)
    else:
        train_index = np.asarray(train_index if train_index is not None
                                 else np.setdiff1d(np.arange(n), test_index), dtype=np.int64)
        test_index = np.asarray(test_index if test_index is not None else [], dtype=np.int64)
        if train_index.size and (train_index.min() < 0 or train_index.max() >= n):
            raise ProbeInputError(f"train_index must index the {n} statements")
        if test_index.size and (test_index.min() < 0 or test_index.max() >= n):
            raise ProbeInputError(f"test_index must index the {n} statements")
    if len(np.unique(t[train_index])) != 2:
        raise ProbeInputError("the training split must contain both classes; got one class only")
    pol, train_pairs, negated = None, None, np.zeros(n, dtype=bool)
    if method == "polarity_aware":
        pol = as_polarity(polarity, n)
        check_polarity_classes(t[train_index], pol[train_index])
    if method == "ccs":
        train_pairs = _check_pairs(pairs, n, train_index)
        negated[to_numpy(pairs)[:, 1]] = True

    n_probes = math.prod(batch)
    flat = acts.reshape(n_probes, n, d)
    chunk = n_probes if chunk_size is None else max(1, int(chunk_size))
    fit_one = _fit_chunk_torch if backend == "torch" else _fit_chunk_sklearn
    opts = dict(method=method, C=C, lda=lda, shrinkage=shrinkage, max_iter=max_iter, tol=tol,
                device=device, dtype=dtype, polarity=pol, pairs=train_pairs, seed=seed)
    start = time.perf_counter()
    parts = []
    for i in range(0, n_probes, chunk):
        fitted, logits = fit_one(flat[i:i + chunk], t, train_index, test_index, **opts)
        if logits is None:                                  # scored here: numpy, each side with its intercept
            X = to_numpy(flat[i:i + chunk], dtype=np.float64)
            logits = [_side_logits(X[:, idx], *fitted, negated[idx]) for idx in (train_index, test_index)]
        parts.append((*fitted, *logits))
    seconds = time.perf_counter() - start
    coef, intercept, intercept_neg, train_logits, test_logits = (np.concatenate(p) for p in zip(*parts))
    return SweepResult(
        method=method, backend=backend, classes=classes,
        coef=coef.reshape(*batch, d), intercept=intercept.reshape(batch),
        train_accuracy=_accuracy(train_logits, t[train_index]).reshape(batch),
        test_accuracy=_accuracy(test_logits, t[test_index]).reshape(batch),
        test_logits=test_logits.reshape(*batch, len(test_index)),
        train_index=train_index, test_index=test_index, seconds=seconds,
        params=dict(C=C, lda=lda, shrinkage=shrinkage, test_size=test_size, seed=seed),
        intercept_negated=intercept_neg.reshape(batch) if method == "ccs" else None)


def _side_logits(X, coef, intercept, intercept_neg, negated) -> np.ndarray:
    """``[B, m]`` logits of a chunk's probes on ``X`` ``[B, m, d]``; rows ``negated`` use ``intercept_neg``."""
    out = linear_logits(X, coef, intercept)
    return np.where(negated, linear_logits(X, coef, intercept_neg), out) if negated.any() else out


def _accuracy(logits: np.ndarray, t: np.ndarray) -> np.ndarray:
    if logits.shape[-1] == 0:
        return np.full(logits.shape[:-1], np.nan)
    return ((logits > 0) == t.astype(bool)).mean(-1)


def _fit_chunk_torch(X, t, train_index, test_index, *, method, C, lda, shrinkage, max_iter, tol, device, dtype,
                     polarity, pairs, seed):
    """Batched fits of one chunk ``[B, n, d]``: raw-space ``(coef [B, d], intercept [B], intercept_negated [B])``
    and, except for CCS, the train and test logits computed on ``device``."""
    if method == "ccs":
        X = to_numpy(X, dtype=np.float64)
        _check_finite(X)
        fit = fit_ccs_batched(np.stack([X[:, pairs[:, 0]], X[:, pairs[:, 1]]], axis=2), t[pairs[:, 0]],
                              max_iter=max_iter, random_state=seed)
        coef = fit.weight / fit.scale
        return (coef, fit.bias - (fit.mean_pos * coef).sum(-1), fit.bias - (fit.mean_neg * coef).sum(-1)), None
    X = torch.as_tensor(X).to(device=device).to(dtype=dtype)  # moved as given (float32: half the bytes), then cast
    if not bool(torch.isfinite(X).all()):
        raise ProbeInputError("acts contains NaN or infinite values; expected finite activations")
    dev = X.device
    tr = torch.as_tensor(train_index, device=dev)
    X_train = X.index_select(1, tr)
    t_train = torch.as_tensor(t[train_index], device=dev, dtype=dtype)
    with torch.no_grad():
        if method == "logistic":
            fit = fit_logistic_batched(X_train, t_train, C=C, max_iter=max_iter, tol=tol)
            coef, intercept = fit.coef, fit.intercept
        elif method == "mass_mean":
            coef, intercept = _mass_mean_batched(X_train, t_train, lda, shrinkage, max_iter, tol)
        else:
            p_train = torch.as_tensor(polarity[train_index], device=dev, dtype=dtype)
            coef, intercept = _polarity_aware_batched(X_train, t_train, p_train, max_iter, tol)
        train_logits = batched_matvec(X_train, coef) + intercept.unsqueeze(-1)
        te = torch.as_tensor(test_index, device=dev, dtype=torch.long)
        test_logits = batched_matvec(X.index_select(1, te), coef) + intercept.unsqueeze(-1)
    coef, intercept, train_logits, test_logits = (a.double().cpu().numpy()
                                                  for a in (coef, intercept, train_logits, test_logits))
    return (coef, intercept, intercept), (train_logits, test_logits)


def _mass_mean_batched(X, t, lda, shrinkage, max_iter, tol):
    """Batched twin of :class:`MassMeanProbe.fit`: mean gap (or LDA), then a 1-D logistic scale."""
    w1 = (t / t.sum()).to(X.dtype)
    w0 = ((1 - t) / (1 - t).sum()).to(X.dtype)
    mu1 = torch.einsum("n,bnd->bd", w1, X)
    mu0 = torch.einsum("n,bnd->bd", w0, X)
    theta = mu1 - mu0
    if lda:
        centred = X - torch.where(t.bool()[None, :, None], mu1[:, None], mu0[:, None])
        cov = torch.bmm(centred.transpose(1, 2), centred) / max(X.shape[1] - 2, 1)
        ridge = shrinkage * torch.diagonal(cov, dim1=1, dim2=2).mean(-1)
        cov = cov + ridge[:, None, None] * torch.eye(X.shape[2], dtype=X.dtype, device=X.device)
        theta = torch.linalg.solve(cov, theta)
    midpoint = (mu0 + mu1) / 2
    proj = (batched_matvec(X, theta) - (midpoint * theta).sum(-1)[:, None]).unsqueeze(-1)
    spread = projection_spread(proj)
    scale = fit_logistic_batched(proj / spread[:, None], t, C=1e4, standardize=False, max_iter=max_iter, tol=tol)
    coef = theta * (scale.coef / spread)
    return coef, scale.intercept - (midpoint * coef).sum(-1)


def _polarity_aware_batched(X, t, p, max_iter, tol):
    """Batched twin of :class:`PolarityAwareProbe.fit` (default settings): the general truth
    direction t_G by least squares on ``[1, p, tau, tau p]``, then a 1-D logistic scale."""
    tau = 2 * t - 1
    design = torch.stack([torch.ones_like(tau), p, tau, tau * p], dim=1)          # [n, 4]
    t_general = torch.einsum("n,bnd->bd", torch.linalg.pinv(design)[2], X)
    unit = t_general / t_general.norm(dim=-1, keepdim=True).clamp(min=1e-30)   # a zero t_G reads nothing
    scale = fit_logistic_batched(batched_matvec(X, unit).unsqueeze(-1), t, C=1e4, standardize=False,
                                 max_iter=max_iter, tol=tol)
    return unit * scale.coef, scale.intercept


def _check_finite(X: np.ndarray) -> None:
    if not np.isfinite(X).all():
        raise ProbeInputError("acts contains NaN or infinite values; expected finite activations")


def _fit_chunk_sklearn(X, t, train_index, test_index, *, method, C, lda, shrinkage, max_iter, tol, device, dtype,
                       polarity, pairs, seed):
    """The reference: one single estimator per probe of the chunk."""
    X = to_numpy(X, dtype=np.float64)
    _check_finite(X)
    coefs, intercepts, negated = [], [], []
    for Xk in X:
        if method == "ccs":
            probe = CCSProbe(max_iter=max_iter, random_state=seed).fit(
                np.stack([Xk[pairs[:, 0]], Xk[pairs[:, 1]]], axis=1), t[pairs[:, 0]])
        elif method == "polarity_aware":
            probe = PolarityAwareProbe().fit(Xk[train_index], t[train_index], polarity=polarity[train_index])
        else:
            probe = (LogisticProbe(C=C, max_iter=max_iter) if method == "logistic"
                     else MassMeanProbe(lda=lda, shrinkage=shrinkage))
            probe.fit(Xk[train_index], t[train_index])
        coefs.append(probe.coef_)
        intercepts.append(probe.intercept_)
        negated.append(getattr(probe, "intercept_negated_", probe.intercept_))
    return (np.stack(coefs), np.asarray(intercepts), np.asarray(negated)), None


def sweep_selectivity(acts, y, *, n_controls: int = 1, seed: int = 0, **sweep_kwargs) -> dict:
    """Test accuracy on the real labels minus on shuffled (control) labels, per probe.

    The control shuffles the labels of all statements (train and test together), so a
    probe that only memorises scores ~0.5 on held-out control labels; a large gap means the
    accuracy reflects the activations, not the probe's capacity.
    """
    real = sweep_probes(acts, y, seed=seed, **sweep_kwargs)
    rng = np.random.default_rng(seed + 1)
    y = to_numpy(y)
    control = np.mean([sweep_probes(acts, rng.permutation(y), seed=seed, **sweep_kwargs).test_accuracy
                       for _ in range(n_controls)], axis=0)
    return dict(accuracy=real.test_accuracy, control_accuracy=control,
                selectivity=real.test_accuracy - control, result=real)
