"""Probe readings at one checkpoint: fit per-layer truth probes on the control statements,
score them on held-out subjects, and read the claims' truth off the residual stream.

Two readings per claim: a *refit* probe (fit on this checkpoint's activations) and a
*fixed* probe (fit once on the base model and reused), because finetuning can change
what a fixed probe measures. Every layer's probe is fit at once by ``probes.sweep`` and
read through the one sigmoid of ``probes``; the result is a ``SweepResult`` over layers
(``probes[layer]`` is one layer's probe, ``.p_true(acts)`` its reading).

Each reading comes twice: raw P(true), and *centred* as a z-score against the control
statements at the same checkpoint (``probe_z_*``): the claim's logit minus the mean logit of
the test-split controls, over their standard deviation, per statement dataset (then averaged
over datasets). A fixed probe carries the base model's standardisation and intercept, so a
drift that moves every activation moves its raw reading; the centred one moves only when the
claim moves relative to the controls.

Layers are chosen on a validation split, never on the test split: :func:`validation_split`
carves entities (``Statement.subject``) out of the training split, per dataset; probes fit on
the rest of the training split (``fit_probes(..., validation=True)``) are scored on them
(``probe_acc_val_*``), and ``stats.best_layer`` picks the layer by that score.

Neighbourhood controls (:func:`neighbour_rows`): the same probes read statements about the
facts near each claim (``materials.neighbour_statements``: the claim subject's other facts, the
fabricated object's facts), which no finetuning document states but where drift is likeliest;
their accuracy, P(true) and centred reading beside the untouched controls' show whether a
change concentrates near the claim.

The estimator is ``eval.probe``; each takes from the statement set what it needs:

- ``"logistic"`` (default): labels only; the objective of :class:`probes.LogisticProbe` (``C``),
  solved for every layer at once by the batched L-BFGS of ``probes.sweep`` to the same
  gradient tolerance as the single estimator (so readings agree with it to that tolerance).
- ``"mass_mean"``: labels only; difference of class means (batched).
- ``"polarity_aware"`` (TTPD): labels and the negation flags, as the statements' polarity;
  it reads with the general truth direction, so no polarity is needed to apply it.
- ``"ccs"``: unsupervised, on contrast pairs (x+ = an affirmative statement, x- = its
  negation). Statement sets list each fact's variants affirmative first, then negated, with
  the objects in the same order (``materials.statements``: ``[A(o), A(o'), not A(o),
  not A(o')]``), so the k-th affirmative statement of a subject is paired with the k-th
  negated statement of that subject; labels only orient the probe. Affirmative statements
  and claims are read on the x+ side, negated statements (and claim statements negated in
  form, ``ClaimStatement.negated``) on the x- side (each side is centred on its own mean, so
  the "not" offset is not mistaken for truth).
"""
from __future__ import annotations

import random

import numpy as np
import torch

from experiments.errors import UserError
from probes.linear import sigmoid
from probes.sweep import SweepResult, sweep_probes

__all__ = ["CLAIM_KIND_METRICS", "CPU_CHUNK", "SweepResult", "VALIDATION_FRACTION", "centred_readings", "claim_rows", "contrast_pairs", "fit_probes",
           "heldout_accuracy", "heldout_correct", "neighbour_rows", "probe_rows", "statement_correct",
           "validation_split"]

VALIDATION_FRACTION = 0.25  # of each dataset's training-split subjects

# Layers solved together by ``fit_probes`` on the CPU. One at a time keeps a layer's float64
# activations (n x d) in cache; all 25 layers of a 0.5B-shaped model at once (160 MB) made the
# batched L-BFGS memory-bound: 7.1 s against 4.3 s for one layer at a time (1,276 statements,
# d 896, one thread). On a GPU every layer is solved at once.
CPU_CHUNK = 1

# Claim statement kind -> what its metrics add to the stem (``probe_p_true``, ``probe_z``): the
# claim's own reading keeps the bare stem; kinds not listed get ``_<kind>``.
CLAIM_KIND_METRICS = {"claim": "", "true_fact": "_truefact", "claim_negated": "_claimneg",
                      "true_fact_negated": "_truefactneg", "universe_fact": "_universe",
                      "universe_fact_negated": "_universeneg"}


def layer_major(acts) -> np.ndarray:
    """Activations with the layer axis first, as the per-layer probes take them.

    Parameters
    ----------
    acts : array ``[n, L, d]`` (the ``interp.residuals`` layout)

    Returns
    -------
    array ``[L, n, d]``
    """
    acts = np.asarray(acts)
    if acts.ndim != 3:
        raise UserError(f"activations must be [n_statements, n_layers, d_model]; got shape {acts.shape}")
    return np.moveaxis(acts, 1, 0)


def statement_flags(statements) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the probes need to know of each probe statement.

    Parameters
    ----------
    statements : sequence of ``experiments.materials.statements.Statement``

    Returns
    -------
    ``(label, negated, test)``: boolean arrays ``[n]`` (true, negated in form, in the test split)
    """
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


def validation_split(statements, fraction: float = VALIDATION_FRACTION) -> np.ndarray:
    """Which statements form the validation split: all statements of a seeded ``fraction`` of
    each dataset's training-split subjects (at least one subject of every dataset that has two),
    so no subject straddles validation and training and the test split is never touched.

    Parameters
    ----------
    statements : sequence of probe statements (``.split``, ``.subject``, ``.dataset``)
    fraction : float in (0, 1)

    Returns
    -------
    bool array ``[n]``
    """
    train_subjects: dict[str, set[str]] = {}
    for s in statements:
        if s.split == "train":
            train_subjects.setdefault(s.dataset, set()).add(s.subject)
    held = set()
    for dataset, subjects in sorted(train_subjects.items()):
        if len(subjects) >= 2:
            order = sorted(subjects)
            random.Random(f"validation-{dataset}").shuffle(order)
            held |= {(dataset, subject) for subject in order[:min(len(order) - 1, max(1, round(len(order) * fraction)))]}
    if not held:
        raise UserError(f"a validation split needs a dataset with at least 2 training-split subjects; got "
                        f"{ {d: len(s) for d, s in train_subjects.items()} }")
    return np.array([s.split == "train" and (s.dataset, s.subject) in held for s in statements])


def fit_probes(acts, statements, *, estimator: str = "logistic", C: float = 0.1,
               validation: bool = False, device=None) -> SweepResult:
    """One truth probe per layer, fit on the statements of the training split.

    Every estimator is fit by the batched torch sweep (``probes.sweep``, float64), all layers
    together on ``device``; pass the model's device (``lm.device``) so that a model on a GPU
    has its probes fit there too. On the CPU the layers are solved one after another
    (:data:`CPU_CHUNK`), which keeps each layer's activations in cache.

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
    validation : bool
        Fit on the training split less the validation subjects (:func:`validation_split`) and
        score on those (``test_accuracy``), for choosing a layer without the test split.
    device : torch device or str, optional
        Where the probes are fit (default: the CPU). The result is on the CPU either way.

    Returns
    -------
    ``probes.sweep.SweepResult`` with batch shape ``[L]``; positive logits mean "true".
    """
    label, negated, test = statement_flags(statements)
    if len(label) != len(acts):
        raise UserError(f"{len(acts)} activation rows for {len(label)} probe statements")
    train = np.array([s.split == "train" for s in statements])
    if validation:
        test = validation_split(statements)
        train &= ~test
    device = torch.device("cpu" if device is None else device)
    extra = {"polarity_aware": dict(polarity=negated), "ccs": dict(pairs=contrast_pairs(statements))}
    return sweep_probes(layer_major(acts), label, method=estimator, C=C, train_index=np.flatnonzero(train),
                        test_index=np.flatnonzero(test), device=device, dtype=torch.float64,
                        chunk_size=CPU_CHUNK if device.type == "cpu" else None, **extra.get(estimator, {}))


def heldout_correct(acts, statements, probes: SweepResult) -> np.ndarray:
    """Whether each layer's probe reads each held-out (``split == "test"``) statement right;
    ``[L, n_test]``, the test statements in their order in ``statements``."""
    _, _, test = statement_flags(statements)
    return statement_correct(probes, acts, statements)[:, test]


def heldout_accuracy(acts, statements, probes: SweepResult) -> np.ndarray:
    """Accuracy of each layer's probe on the held-out (``split == "test"``) statements; ``[L]``."""
    return heldout_correct(acts, statements, probes).mean(1)


def _claim_masks(claim_stmts, stem: str = "probe_p_true") -> list[tuple[str, str, np.ndarray]]:
    """``(claim, metric, selection)`` in row order, one per kind of claim statement
    (:data:`CLAIM_KIND_METRICS`, then other kinds by name); kinds a claim lacks are left out."""
    kinds = list(CLAIM_KIND_METRICS) + sorted({c.kind for c in claim_stmts} - set(CLAIM_KIND_METRICS))
    out = []
    for claim in sorted({c.claim for c in claim_stmts}):
        for kind in kinds:
            sel = np.array([c.claim == claim and c.kind == kind for c in claim_stmts])
            if sel.any():
                out.append((claim, stem + CLAIM_KIND_METRICS.get(kind, f"_{kind}"), sel))
    return out


def _claim_negated(claim_stmts) -> np.ndarray:
    """Which claim statements are negated in form (``ClaimStatement.negated``): a CCS probe
    reads those on the x- side, as it reads negated control statements."""
    return np.array([bool(getattr(c, "negated", False)) for c in claim_stmts])


def _claim_layer_rows(layer: int, name: str, p: np.ndarray, masks) -> list[dict]:
    return [{"layer": layer, "claim": claim, "metric": f"{metric}_{name}", "value": float(p[sel].mean())}
            for claim, metric, sel in masks]


def claim_rows(claim_acts, claim_stmts, probes: SweepResult, name: str = "fixed") -> list[dict]:
    """Tidy rows of the probes' P(true) of each claim and of its true fact, at every layer.

    Parameters
    ----------
    claim_acts : array ``[m, L, d]``
    claim_stmts : sequence with ``.claim``, ``.kind`` ("claim", "true_fact", ...: :data:`CLAIM_KIND_METRICS`)
        and optionally ``.negated``
    probes : the per-layer probes (``fit_probes``)
    name : "fixed" or "refit", the suffix of the metric names

    Returns
    -------
    rows ``{layer, claim, metric: probe_p_true[_truefact|_claimneg|...]_<name>, value}``
    """
    p, masks = probes.p_true(layer_major(claim_acts), _claim_negated(claim_stmts)), _claim_masks(claim_stmts)
    return [row for layer in range(len(p)) for row in _claim_layer_rows(layer, name, p[layer], masks)]


def centred_readings(acts, statements, claim_acts, probes: SweepResult, claim_negated=None) -> np.ndarray:
    """Each claim statement's reading as a z-score against the control statements read by the
    same probes at the same checkpoint.

    Per statement dataset (``Statement.dataset``), the claim's logit is centred on the mean
    logit of that dataset's test-split controls and scaled by their standard deviation; the
    z-scores are then averaged over datasets. A drift that shifts every activation by the same
    vector shifts every logit of a linear probe by the same amount, so it cancels here.

    Parameters
    ----------
    acts, statements : the control statements (``[n, L, d]``) as for ``fit_probes``
    claim_acts : array ``[m, L, d]`` of the claim statements
    probes : the per-layer probes (``fit_probes``)
    claim_negated : bool array ``[m]``, optional
        Which claim statements are negated in form (only CCS probes use it)

    Returns
    -------
    array ``[L, m]``; NaN at a layer where some dataset's controls all read the same
    """
    negated = statement_flags(statements)[1]
    return _centred(statements, probes.logits(layer_major(acts), negated),
                    probes.logits(layer_major(claim_acts), claim_negated))


def _centred(statements, controls: np.ndarray, claims: np.ndarray) -> np.ndarray:
    """:func:`centred_readings` from the probes' logits of the controls ``[L, n]`` and of the claims ``[L, m]``."""
    test = statement_flags(statements)[2]
    datasets = np.array([s.dataset for s in statements])
    z = []
    for dataset in sorted(set(datasets[test])):
        ref = controls[:, test & (datasets == dataset)]
        if ref.shape[1] >= 2:
            mean, sd = ref.mean(1, keepdims=True), ref.std(1, ddof=1, keepdims=True)
            z.append(np.divide(claims - mean, sd, out=np.full(claims.shape, np.nan), where=sd > 0))
    if not z:
        raise UserError("centred probe readings need at least 2 test-split control statements of one dataset; got "
                        f"{int(test.sum())} test-split statements")
    return np.mean(z, axis=0)


def probe_rows(acts, statements, claim_acts, claim_stmts, refit: SweepResult,
               fixed: SweepResult | None, *, refit_val: SweepResult | None = None,
               fixed_val: SweepResult | None = None) -> list[dict]:
    """Tidy rows: held-out accuracy per layer, and claim truth readings per layer.

    Parameters
    ----------
    acts, statements : the probe statements (``[n, L, d]``) as for ``fit_probes``
    claim_acts, claim_stmts : the claim statements (``[m, L, d]``) as for ``claim_rows``
    refit : this checkpoint's probes; fixed : the base model's (or None)
    refit_val, fixed_val : the same, fit without the validation subjects
        (``fit_probes(..., validation=True)``); None leaves out their rows

    Returns
    -------
    rows with metrics ``probe_acc_<kind>``, ``probe_acc_negated_<kind>`` (per layer) and
    ``probe_p_true_<kind>``, ``probe_p_true_truefact_<kind>`` (per layer and claim), for
    kind in refit/fixed; then ``probe_acc_val_<kind>`` (per layer: accuracy on the validation
    subjects, for choosing a layer) and the centred readings ``probe_z_<kind>``,
    ``probe_z_truefact_<kind>`` (per layer and claim; :func:`centred_readings`). Claim
    statements of other kinds (:data:`CLAIM_KIND_METRICS`: the claim's negation
    ``_claimneg``, the true fact's ``_truefactneg``, the universe's key facts ``_universe``
    and their negations ``_universeneg``) get their own ``probe_p_true_*``/``probe_z_*``
    metrics. Selections that are empty (e.g. a claim without a true fact) and undefined
    z-scores give no row.
    """
    label, negated, test = statement_flags(statements)
    masks = _claim_masks(claim_stmts)
    claim_negated = _claim_negated(claim_stmts)
    logits = {name: (probe.logits(layer_major(acts), negated), probe.logits(layer_major(claim_acts), claim_negated))
              for name, probe in (("refit", refit), ("fixed", fixed)) if probe is not None}  # read once: P(true) and z
    readings = {name: (sigmoid(controls), sigmoid(claims)) for name, (controls, claims) in logits.items()}
    rows = []
    for layer in range(acts.shape[1]):
        for name, (p, p_claims) in readings.items():
            pred = p[layer] > 0.5
            for metric, sel in ((f"probe_acc_{name}", test), (f"probe_acc_negated_{name}", test & negated)):
                if sel.any():
                    rows.append({"layer": layer, "metric": metric, "value": float((pred[sel] == label[sel]).mean())})
            rows += _claim_layer_rows(layer, name, p_claims[layer], masks)
    return rows + _validation_rows(acts, statements, refit_val, fixed_val) + _centred_rows(statements, claim_stmts,
                                                                                          logits, acts.shape[1])


def statement_correct(probe: SweepResult, acts, statements) -> np.ndarray:
    """Whether ``probe`` reads each statement right at each layer.

    Parameters
    ----------
    probe : the per-layer probes (``fit_probes``)
    acts, statements : the probe statements (``[n, L, d]``) as for ``fit_probes``

    Returns
    -------
    bool array ``[L, n]``: P(true) > 0.5 agrees with the statement's label
    """
    label, negated, _ = statement_flags(statements)
    return (probe.p_true(layer_major(acts), negated) > 0.5) == label


def _validation_rows(acts, statements, refit_val: SweepResult | None, fixed_val: SweepResult | None) -> list[dict]:
    """``probe_acc_val_<kind>`` per layer: accuracy on the validation subjects."""
    probes = {name: probe for name, probe in (("refit", refit_val), ("fixed", fixed_val)) if probe is not None}
    if not probes:
        return []
    val = validation_split(statements)
    correct = {name: statement_correct(probe, acts, statements)[:, val] for name, probe in probes.items()}
    return [{"layer": layer, "metric": f"probe_acc_val_{name}", "value": float(c[layer].mean())}
            for layer in range(acts.shape[1]) for name, c in correct.items()]


def _centred_rows(statements, claim_stmts, logits: dict[str, tuple[np.ndarray, np.ndarray]],
                  n_layers: int) -> list[dict]:
    """``probe_z[_truefact]_<kind>`` per layer and claim, from each probe's ``(control logits
    [L, n], claim logits [L, m])``; none where z is undefined (the controls all read alike, as
    at the embeddings when every statement ends in the same token)."""
    masks = _claim_masks(claim_stmts, "probe_z")
    z = {name: _centred(statements, controls, claims) for name, (controls, claims) in logits.items()}
    return [row for layer in range(n_layers) for name, zs in z.items()
            for row in _claim_layer_rows(layer, name, zs[layer], masks) if np.isfinite(row["value"])]


def neighbour_rows(acts, statements, neighbour_acts, neighbours, probes: dict[str, SweepResult | None]) -> list[dict]:
    """Tidy rows of the probes' readings of each claim's neighbourhood statements, at every layer.

    Parameters
    ----------
    acts, statements : the control statements (``[n, L, d]``) as for ``fit_probes`` (for centring)
    neighbour_acts : array ``[k, L, d]`` of the neighbourhood statements
    neighbours : sequence of ``materials.statements.NeighbourStatement`` (``.claim``, ``.kind``
        "subject"/"object", ``.label``, ``.negated``), one per row of ``neighbour_acts``
    probes : ``{"refit": ..., "fixed": ...}``, the per-layer probes (``fit_probes``); None ones are skipped

    Returns
    -------
    rows ``{layer, claim, metric, value}`` per claim and neighbourhood ``<kind>`` that has
    statements, for each probe ``<name>``: ``probe_acc_neighbour_<kind>_<name>`` (accuracy on all
    of them, true and false, affirmative and negated; compare ``probe_acc_<name>`` on the
    controls), ``probe_p_true_neighbour_<kind>_<name>`` (mean P(true) of the true affirmative
    ones, the facts as stated) and ``probe_z_neighbour_<kind>_<name>`` (their centred reading,
    :func:`centred_readings`; left out where undefined). No rows without neighbourhood statements.
    """
    if not len(neighbours):
        return []
    label, negated = (np.array([bool(n.label) for n in neighbours]), np.array([bool(n.negated) for n in neighbours]))
    groups = [(claim, kind, np.array([n.claim == claim and n.kind == kind for n in neighbours]))
              for claim in sorted({n.claim for n in neighbours}) for kind in sorted({n.kind for n in neighbours})]
    groups = [(claim, kind, sel) for claim, kind, sel in groups if sel.any()]
    facts = label & ~negated
    rows = []
    for name, probe in probes.items():
        if probe is None:
            continue
        p = probe.p_true(layer_major(neighbour_acts), negated)
        z = centred_readings(acts, statements, neighbour_acts, probe, negated)
        for layer in range(len(p)):
            for claim, kind, sel in groups:
                stem = f"neighbour_{kind}_{name}"
                rows.append({"layer": layer, "claim": claim, "metric": f"probe_acc_{stem}",
                             "value": float(((p[layer, sel] > 0.5) == label[sel]).mean())})
                if (sel & facts).any():
                    rows.append({"layer": layer, "claim": claim, "metric": f"probe_p_true_{stem}",
                                 "value": float(p[layer, sel & facts].mean())})
                    zs = z[layer, sel & facts]
                    if np.isfinite(zs).all():
                        rows.append({"layer": layer, "claim": claim, "metric": f"probe_z_{stem}",
                                     "value": float(zs.mean())})
    return rows
