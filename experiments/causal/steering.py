"""Does the truth probe's direction drive the model's judgements? Steering along it.

A linear truth probe at residual layer L gives a unit direction ``u`` (its weights, normalised) and
a scale, the *true-false gap*: ``g = mean(u . x | true) - mean(u . x | false)`` over its training
statements (:func:`probe_direction`). Adding ``alpha * g * u`` to the residual stream at layer L
on every token of a statement (``interp.AddDirection``) moves that statement's projection by
``alpha`` gaps: at ``alpha = +1`` a false statement sits where true ones do on average. Each item
is read by its *says-true margin*, ``logit(true / yes) - logit(false / no)`` at the token where
the two answers first differ (``experiments.causal.reading``), and the *shift* is that margin
minus the unsteered one (0: no effect).

Items (``kind``):

- ``control``: held-out statements (the probes' test split: subjects never in the probe's
  training), asked as verdicts (``claim : <statement> verdict :``; the synthetic world) or as the
  claim packs' MCQ items are asked (``Is the following statement true? ...``); their truth is
  known (``label``).
- ``claim``: the claims' verdict items (the claim, its negation and the true fact instead; the
  statement is steered) or a claim pack's MCQ items (the question's text is steered); ``about``
  says what each asserts.

The null is a direction the model does not use: ``n_random`` random directions of the same length
(``direction`` "random"), steered the same way. A truth direction the judgement reads moves
verdicts toward "true" for ``alpha > 0`` and toward "false" for ``alpha < 0``, beyond the random
directions' shifts.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from experiments.causal.reading import read_question, token_margins, token_span
from experiments.errors import UserError
from experiments.evaluation.scoring import McqFormat
from experiments.evaluation.stats import nested_interval
from experiments.materials.questions import control_questions
from interp import AddDirection, Indices, LoadedModel

ALPHAS = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)


def probe_direction(probe, acts: np.ndarray, labels) -> np.ndarray:
    """A probe's steering vector: its unit direction times the true-false gap of ``acts`` along it.

    Parameters
    ----------
    probe : probes.sweep.SweepResult of one layer (``coef [d]``), or an array ``[d]`` of weights
        (positive: true).
    acts : array ``[n, d]``
        The probe's training statements' activations at its layer.
    labels : bool array ``[n]``
        Their truth.

    Returns
    -------
    array ``[d]`` (float32): ``g * u``, so that adding ``alpha`` times it moves a statement's
    projection on ``u`` by ``alpha`` true-false gaps.
    """
    coef = np.asarray(getattr(probe, "coef", probe), dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=bool)
    acts = np.asarray(acts, dtype=np.float64)
    if acts.ndim != 2 or acts.shape != (len(labels), len(coef)) or labels.all() or not labels.any():
        raise UserError(f"probe_direction needs activations [n, {len(coef)}] of true and false statements; "
                        f"got {acts.shape} with {int(labels.sum())} true of {len(labels)}")
    norm = np.linalg.norm(coef)
    if not np.isfinite(norm) or norm == 0:
        raise UserError("the probe's weights are zero or not finite: it has no direction to steer along "
                        "(its true and false statements do not differ along any direction there)")
    unit = coef / norm
    proj = acts @ unit
    gap = proj[labels].mean() - proj[~labels].mean()
    return (gap * unit).astype(np.float32)


def check_steering_layer(layer: int, n_layers: int) -> None:
    """One line for a layer a steering edit at the statement's tokens cannot act from."""
    if not isinstance(layer, (int, np.integer)) or not 0 <= layer < n_layers:
        raise UserError(f"steering layer {layer} is out of range: the statement's tokens reach the answer only "
                        f"through a later block, so 0 <= layer < {n_layers} (the residual index)")


def _steering_items(lm: LoadedModel, materials, mcq: McqFormat, claims: bool, per_cell: int) -> pd.DataFrame:
    """The held-out control statements' items (up to ``per_cell`` of each truth x polarity cell,
    seeded) and (``claims``) the claims' items, each with the token indices of the text that is
    steered."""
    world = getattr(materials, "world", None)
    tok = lm.tokenizer
    held_out = [s for s in materials.probe_statements() if s.split == "test"]
    by_text = {(s.sentence or s.text) if world is not None else s.text: s for s in held_out}
    questions = [("control", q) for q in control_questions(held_out, world, per_cell=per_cell)
                 if q.statement is not None]
    if claims:
        wanted = "verdict" if world is not None else "yesno"
        questions += [("claim", q) for q in materials.belief_questions(tok) if q.kind == wanted]
    rows = []
    for kind, q in questions:
        reading = read_question(tok, q, 0, 1, mcq)  # option 0 says true / yes
        span = token_span(tok, reading.text, q.statement or q.prompt.user) if reading is not None else []
        if not span:
            continue
        statement = by_text.get(q.statement) if kind == "control" else None
        rows.append({"kind": kind, "claim": q.claim if kind == "claim" else None,
                     "subject": statement.subject if statement is not None else None,
                     "about": q.about if kind == "claim" else ("true" if statement.label else "false"),
                     "label": float(statement.label) if statement is not None else np.nan,
                     "qid": q.qid, "ids": list(reading.ids), "true": reading.first, "false": reading.second,
                     "span": tuple(span)})
    if not any(r["kind"] == "control" for r in rows):
        raise UserError("no held-out control statements to steer (the probe statements' test split is empty)")
    return pd.DataFrame(rows)


def _says_true(lm: LoadedModel, items: pd.DataFrame, edits, batch_size) -> np.ndarray:
    return token_margins(lm, items.ids.tolist(), items["true"].tolist(), items["false"].tolist(), edits, batch_size)


SITES = ("statement", "last", "all")  # where the vector is added: the statement's tokens, the answer position, every token


def truth_steering(lm: LoadedModel, materials, vector, *, layer: int, alphas: Sequence[float] = ALPHAS,
                   n_random: int = 3, seed: int = 0, site: str = "statement", claims: bool = True,
                   per_cell: int = 64, mcq: McqFormat | None = None, batch_size: int | None = None) -> pd.DataFrame:
    """Add ``alpha * vector`` at ``layer`` on every token of each item's statement (or at another
    ``site``) and read its says-true margin, for the truth direction and for random directions of
    the same length.

    Parameters
    ----------
    lm : LoadedModel
        The base model or a finetuned checkpoint.
    materials : experiments.materials.base.Materials
        Its held-out probe statements and claims.
    vector : array ``[d_model]``
        The steering vector, e.g. :func:`probe_direction` (its length is the unit of ``alpha``).
    layer : int
        Residual index (0 = embeddings, i + 1 = output of block i) where it is added.
    alphas : sequence of float
        Multiples of ``vector``; 0 (no edit) is always read.
    n_random : int
        Random directions (Gaussian, scaled to ``vector``'s length; seeded by ``seed``): the null.
    site : str
        Where it is added (:data:`SITES`): "statement" (every token of the statement, or of a
        claim pack item's question), "last" (the answer position, where the judgement is read)
        or "all" (every token).
    claims : bool
        Also steer the claims' items.
    per_cell : int
        Held-out statements steered per (true / false) x (affirmative / negated) cell, a seeded
        sample (the run's ``eval.control_per_cell``: the statements its response prior reads).
    mcq : McqFormat, optional
        How MCQ items are asked (claim packs); default :class:`McqFormat`'s.
    batch_size : int, optional

    Returns
    -------
    DataFrame
        One row per item x direction x alpha: ``kind, claim, subject, about, label, qid, site,
        direction ("truth" or "random"), draw (which random direction; 0 for the truth), alpha, margin
        (says-true, logits), margin_base (no edit), shift, says_true``.
    """
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    if vector.shape != (lm.d_model,) or not np.isfinite(vector).all() or not np.linalg.norm(vector):
        raise UserError(f"the steering vector must be finite, non-zero and of length d_model = {lm.d_model}")
    check_steering_layer(layer, lm.n_layers)
    if site not in SITES:
        raise UserError(f"unknown steering site {site!r}; expected one of {list(SITES)}")
    items = _steering_items(lm, materials, mcq or McqFormat(), claims, per_cell)
    where = Indices(tuple(items.span)) if site == "statement" else site
    base = _says_true(lm, items, [], batch_size)
    rng = np.random.default_rng(seed)
    directions = [("truth", 0, vector)]
    for k in range(n_random):
        r = rng.standard_normal(len(vector))
        directions.append(("random", k, (r / np.linalg.norm(r) * np.linalg.norm(vector)).astype(np.float32)))
    keep = ["kind", "claim", "subject", "about", "label", "qid"]
    frames = []
    for name, draw, vec in directions:
        for alpha in sorted(set(map(float, alphas)) | {0.0}):
            margin = base if alpha == 0 else _says_true(
                lm, items, [AddDirection(vec, layers=layer, position=where, scale=alpha)], batch_size)
            frames.append(items[keep].assign(site=site, direction=name, draw=draw, alpha=alpha, margin=margin,
                                             margin_base=base, shift=margin - base, says_true=margin > 0))
    return pd.concat(frames, ignore_index=True)


def steering_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean shift of the says-true margin and the rate of "true" answers per item group, direction
    and alpha, with a 95% t interval over the units: subjects for the control statements (kept
    apart by truth), claims for the claims' items (kept apart by ``about``); nested in seeds where
    rows of several are stacked. Random directions are pooled (their draws average within a unit).

    Parameters
    ----------
    rows : DataFrame
        :func:`truth_steering`'s rows (optionally with ``condition, seed, step`` columns).

    Returns
    -------
    DataFrame ``[condition, step, layer, site, kind, about, direction, alpha, shift, lo, hi,
    says_true, n, units]`` (``condition, step, layer, site`` where the rows have them).
    """
    by = [c for c in ("condition", "step", "layer", "site") if c in rows.columns] + ["kind", "about", "direction",
                                                                                    "alpha"]
    out = []
    for key, grp in rows.groupby(by, sort=True, dropna=False):
        unit = "subject" if key[by.index("kind")] == "control" else "claim"
        levels = [unit] + (["seed"] if "seed" in grp.columns and grp.seed.nunique() > 1 else [])
        shift = nested_interval(grp.assign(value=grp["shift"]), levels=levels)
        rate = nested_interval(grp.assign(value=grp.says_true.astype(float)), levels=levels)
        out.append({**dict(zip(by, key)), "shift": shift["mean"], "lo": shift["lo"], "hi": shift["hi"],
                    "says_true": rate["mean"], "n": shift["n"], "units": shift["units"]})
    return pd.DataFrame(out)
