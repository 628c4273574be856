"""How probe directions move over layers and training.

Directions are arrays ``[..., d]`` (e.g. ``SweepResult.coef`` of shape ``[C, L, d]``); a
linear probe is ``(coef, intercept)`` with logit ``x @ coef + intercept``.
"""
from __future__ import annotations

import numpy as np

from probes._validation import ProbeInputError, to_numpy
from probes.linear import linear_logits, sigmoid


def _unit(v: np.ndarray, zero_norm: str = "raise") -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    if zero_norm == "raise" and (norm == 0).any():
        raise ProbeInputError("a direction has zero norm; cannot compare it by angle")
    return np.divide(v, norm, out=np.full_like(v, np.nan), where=norm > 0)


def cosine_similarity(a, b) -> np.ndarray:
    """Cosine of matching directions: ``a``, ``b`` broadcast over ``[..., d]`` -> ``[...]``."""
    a, b = to_numpy(a, dtype=np.float64), to_numpy(b, dtype=np.float64)
    if a.shape[-1] != b.shape[-1]:
        raise ProbeInputError(f"directions have different widths: {a.shape[-1]} vs {b.shape[-1]}")
    return (_unit(a) * _unit(b)).sum(-1)


def cosine_matrix(a, b=None, *, zero_norm: str = "raise") -> np.ndarray:
    """All pairwise cosines.

    Parameters
    ----------
    a, b : arrays ``[K, d]`` and ``[M, d]`` (``b`` defaults to ``a``)
    zero_norm : ``"raise"`` (default) or ``"nan"``
        What a direction of zero norm (a degenerate probe) gives: an error, or NaN cosines.

    Returns
    -------
    array ``[K, M]``
    """
    if zero_norm not in ("raise", "nan"):
        raise ProbeInputError(f"zero_norm must be 'raise' or 'nan'; got {zero_norm!r}")
    a = to_numpy(a, dtype=np.float64)
    b = a if b is None else to_numpy(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ProbeInputError(f"cosine_matrix needs [K, d] and [M, d]; got {a.shape} and {b.shape}")
    return _unit(a, zero_norm) @ _unit(b, zero_norm).T


def cosine_to_reference(directions, axis: int = 0, reference: int = 0) -> np.ndarray:
    """Cosine of every direction to the one at index ``reference`` along ``axis``
    (e.g. ``[C, L, d]`` with axis 0: each layer's drift from checkpoint ``reference``)."""
    dirs = to_numpy(directions, dtype=np.float64)
    n_batch = dirs.ndim - 1
    if not -n_batch <= axis < n_batch:
        raise ProbeInputError(f"axis {axis} is not a batch axis of directions with shape {dirs.shape}")
    ref = np.take(dirs, [reference], axis=axis % n_batch)
    return cosine_similarity(dirs, ref)


def adjacent_cosine(directions, axis: int = 0) -> np.ndarray:
    """Cosine between neighbours along ``axis`` (layer l vs l+1, or checkpoint c vs c+1)."""
    dirs = np.moveaxis(to_numpy(directions, dtype=np.float64), axis, 0)
    return np.moveaxis(cosine_similarity(dirs[:-1], dirs[1:]), 0, axis)


def transfer_matrix(coef, intercept, acts, y) -> np.ndarray:
    """Accuracy of the probe fit at checkpoint i applied to activations of checkpoint j.

    ``coef`` [C, d], ``intercept`` [C], ``acts`` [C, n, d] (same statements at every
    checkpoint), ``y`` [n] 0/1 -> ``[C_fit, C_apply]``. The diagonal is each probe on its own
    checkpoint; off-diagonal decay shows the representation moving.
    """
    coef, intercept = to_numpy(coef, dtype=np.float64), to_numpy(intercept, dtype=np.float64)
    acts, y = to_numpy(acts, dtype=np.float64), to_numpy(y).astype(bool)
    if coef.ndim != 2 or acts.ndim != 3 or acts.shape[2] != coef.shape[1] or intercept.shape != coef.shape[:1]:
        raise ProbeInputError(f"transfer_matrix needs coef [C, d], intercept [C], acts [C, n, d]; got "
                              f"{coef.shape}, {intercept.shape}, {acts.shape}")
    if y.shape != (acts.shape[1],):
        raise ProbeInputError(f"y must be 1-D with {acts.shape[1]} labels; got shape {y.shape}")
    logits = np.einsum("jnd,id->ijn", acts, coef) + intercept[:, None, None]
    return ((logits > 0) == y).mean(-1)


def fixed_vs_refit(acts, coef, intercept, *, fixed_at: int = 0) -> dict[str, np.ndarray]:
    """Readings of statements over training by a frozen probe and by per-checkpoint refits.

    Parameters
    ----------
    acts : array ``[C, *batch, m, d]``
        Activations of ``m`` statements at ``C`` checkpoints (``*batch``: e.g. layers);
        ``[C, *batch, d]`` for one statement.
    coef, intercept : arrays ``[C, *batch, d]`` and ``[C, *batch]``
        Each checkpoint's own probe (e.g. ``SweepResult.coef`` / ``.intercept``).
    fixed_at : int
        The checkpoint whose probe is frozen.

    Returns
    -------
    dict with probabilities ``fixed`` (the probe of checkpoint ``fixed_at`` at every
    checkpoint) and ``refit`` (each checkpoint's own probe), both ``[C, *batch, m]``. When
    they diverge, the fixed probe no longer measures what it measured when it was fit.
    """
    acts = to_numpy(acts, dtype=np.float64)
    coef, intercept = to_numpy(coef, dtype=np.float64), to_numpy(intercept, dtype=np.float64)
    if acts.ndim == coef.ndim:
        acts = acts[..., None, :]
    if coef.ndim < 2 or acts.shape[:-2] != coef.shape[:-1] or acts.shape[-1] != coef.shape[-1] \
            or intercept.shape != coef.shape[:-1]:
        raise ProbeInputError(f"fixed_vs_refit needs acts [C, m, d], coef [C, d], intercept [C] (optionally with "
                              f"batch axes after C); got {acts.shape}, {coef.shape}, {intercept.shape}")
    if not -len(coef) <= fixed_at < len(coef):
        raise ProbeInputError(f"fixed_at={fixed_at} is not a checkpoint index (0..{len(coef) - 1})")
    frozen = np.broadcast_to(coef[fixed_at], coef.shape), np.broadcast_to(intercept[fixed_at], intercept.shape)
    return dict(fixed=sigmoid(linear_logits(acts, *frozen)), refit=sigmoid(linear_logits(acts, coef, intercept)))


def orthonormal_basis(vectors, rank: int | None = None, tol: float = 1e-10) -> np.ndarray:
    """Orthonormal basis ``[d, r]`` of the span of ``vectors`` [k, d] (top ``rank`` singular directions)."""
    v = to_numpy(vectors, dtype=np.float64)
    if v.ndim == 1:
        v = v[None]
    if v.ndim != 2:
        raise ProbeInputError(f"vectors must be [k, d]; got shape {v.shape}")
    u, s, _ = np.linalg.svd(v.T, full_matrices=False)
    r = int((s > tol * max(s.max(), 1e-300)).sum()) if rank is None else rank
    if r == 0 or r > len(s):
        raise ProbeInputError(f"rank {r} is not available from {len(s)} vectors")
    return u[:, :r]


def principal_angles(a, b) -> np.ndarray:
    """Principal angles (radians, ascending) between span(a) and span(b); ``a`` [k1, d], ``b`` [k2, d].

    0 means a shared direction; pi/2 an orthogonal one. Use it to ask whether the truth
    subspace (e.g. t_G and t_P, or directions over several layers) is the same at two checkpoints.
    """
    qa, qb = orthonormal_basis(a), orthonormal_basis(b)
    if qa.shape[0] != qb.shape[0]:
        raise ProbeInputError(f"subspaces live in different widths: {qa.shape[0]} vs {qb.shape[0]}")
    s = np.linalg.svd(qa.T @ qb, compute_uv=False)
    return np.arccos(np.clip(s, -1.0, 1.0))
