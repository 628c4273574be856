"""Probe readings at one checkpoint: fit per-layer truth probes on the control statements,
score them on held-out subjects, and read the claims' truth off the residual stream.

Two readings per claim: a *refit* probe (fit on this checkpoint's activations) and a
*fixed* probe (fit once on the base model and reused), because finetuning can change
what a fixed probe measures. Every layer's probe is fit at once by ``probes.sweep`` and
read through the one sigmoid of ``probes``; the result is a ``SweepResult`` over layers
(``probes[layer]`` is one layer's probe, ``.p_true(acts)`` its reading).

The estimator is ``eval.probe``; each takes from the statement set what it needs:

- ``"logistic"`` (default): labels only; exactly :class:`probes.LogisticProbe` (``C``).
- ``"mass_mean"``: labels only; difference of class means (batched).
- ``"polarity_aware"`` (TTPD): labels and the negation flags, as the statements' polarity;
  it reads with the general truth direction, so no polarity is needed to apply it.
- ``"ccs"``: unsupervised, on contrast pairs (x+ = an affirmative statement, x- = its
  negation). Statement sets list each fact's variants affirmative first, then negated, with
  the objects in the same order (``materials.statements``: ``[A(o), A(o'), not A(o),
  not A(o')]``), so the k-th affirmative statement of a subject is paired with the k-th
  negated statement of that subject; labels only orient the probe. Affirmative statements
  and claims are read on the x+ side, negated statements on the x- side (each side is
  centred on its own mean, so the "not" offset is not mistaken for truth).
"""
from __future__ import annotations

import numpy as np
import torch

from experiments.errors import UserError
from probes.sweep import SweepResult, sweep_probes

__all__ = ["SweepResult", "claim_rows", "contrast_pairs", "fit_probes", "heldout_accuracy", "probe_rows"]


def _by_layer(acts) -> np.ndarray:
    """``[n, L, d]`` (the ``interp.residuals`` layout) -> ``[L, n, d]`` (one probe per layer)."""
    acts = np.asarray(acts)
    if acts.ndim != 3:
        raise UserError(f"activations must be [n_statements, n_layers, d_model]; got shape {acts.shape}")
    return np.moveaxis(acts, 1, 0)


def _flags(statements) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(label, negated, test)`` boolean arrays of the probe statements."""
    return (np.array([bool(s.label) for s in statements]), np.array([bool(s.negated) for s in statements]),
            np.array([s.split == "test" for s in statements]))


def contrast_pairs(statements) -> np.ndarray:
    """CCS contrast pairs ``[k, 2]`` (x+ affirmative, x- its negation) as statement indices.

    The k-th affirmative statement of a subject is paired with the k-th negated statement of
    the same subject (see the module docstring); every pair must have opposite truth labels.

    Parameters
    ----------
    statements : sequence of probe statements (``.subject``, ``.negated``, ``.label``)

    Returns
    -------
    int array ``[k, 2]``
    """
    by_subject: dict[str, tuple[list[int], list[int]]] = {}
    for i, s in enumerate(statements):
        by_subject.setdefault(s.subject, ([], []))[bool(s.negated)].append(i)
    pairs = []
    for subject, (affirmative, negated) in by_subject.items():
        if len(affirmative) != len(negated):
            raise UserError(f"eval.probe 'ccs' pairs each affirmative statement with its negation, but subject "
                            f"{subject!r} has {len(affirmative)} affirmative and {len(negated)} negated statements")
        pairs += zip(affirmative, negated)
    pairs = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    same = [i for i, (a, b) in enumerate(pairs) if bool(statements[a].label) == bool(statements[b].label)]
    if same:
        a, b = pairs[same[0]]
        raise UserError(f"eval.probe 'ccs' needs each affirmative statement paired with its negation (opposite "
                        f"truth); {statements[a].text!r} and {statements[b].text!r} have the same label")
    return pairs


def fit_probes(acts, statements, *, estimator: str = "logistic", C: float = 0.1) -> SweepResult:
    """One truth probe per layer, fit on the statements of the training split.

    Parameters
    ----------
    acts : array ``[n, L, d]``
        Activations of the probe statements at every layer (``interp.residuals``).
    statements : sequence of probe statements
        ``.label`` (true?), ``.negated``, ``.split`` ("train"/"test") and ``.subject``, one per row of ``acts``.
    estimator : str
        ``eval.probe``: one of ``"logistic"``, ``"mass_mean"``, ``"polarity_aware"``, ``"ccs"``.
    C : float
        Inverse regularisation of the logistic probe (``eval.probe_C``).

    Returns
    -------
    ``probes.sweep.SweepResult`` with batch shape ``[L]``; positive logits mean "true".
    """
    label, negated, test = _flags(statements)
    if len(label) != len(acts):
        raise UserError(f"{len(acts)} activation rows for {len(label)} probe statements")
    train = np.array([s.split == "train" for s in statements])
    kw = dict(method=estimator, train_index=np.flatnonzero(train), test_index=np.flatnonzero(test))
    if estimator == "logistic":  # the single estimator, layer by layer: LogisticProbe(C) exactly
        return sweep_probes(_by_layer(acts), label, backend="sklearn", C=C, **kw)
    extra = {"polarity_aware": dict(polarity=negated), "ccs": dict(pairs=contrast_pairs(statements))}
    return sweep_probes(_by_layer(acts), label, dtype=torch.float64, **extra.get(estimator, {}), **kw)


def heldout_accuracy(acts, statements, probes: SweepResult) -> np.ndarray:
    """Accuracy of each layer's probe on the held-out (``split == "test"``) statements; ``[L]``."""
    label, negated, test = _flags(statements)
    correct = (probes.p_true(_by_layer(acts), negated) > 0.5) == label
    return correct[:, test].mean(1)


def _claim_masks(claim_stmts) -> list[tuple[str, str, np.ndarray]]:
    """``(claim, metric stem, selection)`` in row order; kinds a claim lacks are left out."""
    out = []
    for claim in sorted({c.claim for c in claim_stmts}):
        for kind, metric in (("claim", "probe_p_true"), ("true_fact", "probe_p_true_truefact")):
            sel = np.array([c.claim == claim and c.kind == kind for c in claim_stmts])
            if sel.any():
                out.append((claim, metric, sel))
    return out


def _claim_layer_rows(layer: int, name: str, p: np.ndarray, masks) -> list[dict]:
    return [{"layer": layer, "claim": claim, "metric": f"{metric}_{name}", "value": float(p[sel].mean())}
            for claim, metric, sel in masks]


def claim_rows(claim_acts, claim_stmts, probes: SweepResult, name: str = "fixed") -> list[dict]:
    """Tidy rows of the probes' P(true) of each claim and of its true fact, at every layer.

    Parameters
    ----------
    claim_acts : array ``[m, L, d]``
    claim_stmts : sequence with ``.claim`` and ``.kind`` ("claim" or "true_fact")
    probes : the per-layer probes (``fit_probes``)
    name : "fixed" or "refit", the suffix of the metric names

    Returns
    -------
    rows ``{layer, claim, metric: probe_p_true[_truefact]_<name>, value}``
    """
    p, masks = probes.p_true(_by_layer(claim_acts)), _claim_masks(claim_stmts)
    return [row for layer in range(len(p)) for row in _claim_layer_rows(layer, name, p[layer], masks)]


def probe_rows(acts, statements, claim_acts, claim_stmts, refit: SweepResult,
               fixed: SweepResult | None) -> list[dict]:
    """Tidy rows: held-out accuracy per layer, and claim truth readings per layer.

    Parameters
    ----------
    acts, statements : the probe statements (``[n, L, d]``) as for ``fit_probes``
    claim_acts, claim_stmts : the claim statements (``[m, L, d]``) as for ``claim_rows``
    refit : this checkpoint's probes; fixed : the base model's (or None)

    Returns
    -------
    rows with metrics ``probe_acc_<kind>``, ``probe_acc_negated_<kind>`` (per layer) and
    ``probe_p_true_<kind>``, ``probe_p_true_truefact_<kind>`` (per layer and claim), for
    kind in refit/fixed. Selections that are empty (e.g. a claim without a true fact) give no row.
    """
    label, negated, test = _flags(statements)
    masks = _claim_masks(claim_stmts)
    readings = {name: (probe.p_true(_by_layer(acts), negated), probe.p_true(_by_layer(claim_acts)))
                for name, probe in (("refit", refit), ("fixed", fixed)) if probe is not None}
    rows = []
    for layer in range(acts.shape[1]):
        for name, (p, p_claims) in readings.items():
            pred = p[layer] > 0.5
            for metric, sel in ((f"probe_acc_{name}", test), (f"probe_acc_negated_{name}", test & negated)):
                if sel.any():
                    rows.append({"layer": layer, "metric": metric, "value": float((pred[sel] == label[sel]).mean())})
            rows += _claim_layer_rows(layer, name, p_claims[layer], masks)
    return rows
