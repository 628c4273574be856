"""Is a person's attribute kept at their name, in one format for judged and held-out people?

In the testbed, a base model's truth judgement reads the attribute stored at the subject's last
token (a causal test: ``benchmarks/subject_steering.py``). Pretraining runs whose judgement
generalises to held-out people (only ever described, never judged) keep judged and held-out
people's cities in one linearly decodable format there; runs that memorised their verdicts keep
only the judged people's (``benchmarks/base_model_checks.md``, seventh session). This module
measures that, cheaply enough to run while pretraining (``pretrain.track_every``):

residuals at the name's last token (``attribute_steering.name_states``), a linear classifier (shrinkage LDA) fit per layer on
half of one group and scored on the other half of each group.
"""
from __future__ import annotations

import random
import warnings

import numpy as np
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from experiments.evaluation.attribute_steering import name_states
from experiments.materials.world import World


def _fit(x: np.ndarray, y: np.ndarray) -> list:
    """A shrinkage LDA per layer (closed form, Ledoit-Wolf covariance): x [n, layers, d], y [n]."""
    with warnings.catch_warnings():  # a class with one person warns; its estimate is still defined
        warnings.simplefilter("ignore", UserWarning)
        return [LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(x[:, layer], y)
                for layer in range(x.shape[1])]


def _accuracy(fits: list, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.array([fit.score(x[:, layer], y) for layer, fit in enumerate(fits)])


def name_attribute_profile(lm, world: World, relation: str = "lives_in", n: int = 400, seed: int = 0) -> dict:
    """How well ``relation``'s object is decoded at a person's name, within and across the judged
    and held-out people (``world.heldout_entities``), at the best layer of each.

    Parameters
    ----------
    lm:
        An ``interp.LoadedModel`` of a model of ``world``.
    world:
        A world with held-out entities (``world.heldout_entity_fraction`` > 0).
    relation:
        A relation of people ("lives_in" or "works_as").
    n:
        People of each group, a seeded sample (the same at every call).

    Returns
    -------
    dict
        ``judged_acc`` (fit and scored on judged people), ``transfer_acc`` (fit on judged people,
        scored on held-out ones) with its ``transfer_layer`` (residual index), ``heldout_acc``
        (fit and scored on held-out people) and ``chance`` (one over the number of objects);
        empty when the world holds out no entities (or too few people to fit on).
    """
    obj = {f.subject: f.obj for f in world.facts if f.relation == relation}
    people = sorted(set(obj) - world.claim_subjects())
    held = [p for p in people if p in world.heldout_entities]
    judged = [p for p in people if p not in world.heldout_entities]
    if len(held) < 4 or len(judged) < 4:
        return {}
    rng = random.Random(f"name-attribute-{seed}")
    judged, held = rng.sample(judged, min(n, len(judged))), rng.sample(held, min(n, len(held)))
    classes = sorted(set(obj.values()))
    label = {o: i for i, o in enumerate(classes)}
    x = name_states(lm, judged + held)
    y = np.array([label[obj[p]] for p in judged + held])
    hj, nj, hh = len(judged) // 2, len(judged), len(judged) + len(held) // 2
    if len(set(y[:hj])) < 2 or len(set(y[nj:hh])) < 2:
        return {}  # too few people to fit a classifier on
    on_judged, on_held = _fit(x[:hj], y[:hj]), _fit(x[nj:hh], y[nj:hh])
    within_judged = _accuracy(on_judged, x[hj:nj], y[hj:nj])
    transfer = _accuracy(on_judged, x[hh:], y[hh:])
    within_held = _accuracy(on_held, x[hh:], y[hh:])
    return {"judged_acc": round(float(within_judged.max()), 4), "transfer_acc": round(float(transfer.max()), 4),
            "transfer_layer": int(transfer.argmax()), "heldout_acc": round(float(within_held.max()), 4),
            "chance": round(1.0 / len(classes), 4)}
