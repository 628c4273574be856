"""Item-level outcomes of the probe-validity measures, and the interval of their drop.

Probe validity (``experiments.evaluation.controls``) asks how far the fixed probe's accuracy on
the control statements (``probe_acc_fixed``) and the answer accuracy on control questions about
untouched facts (``control_acc_<kind>``) fall from the base model to the last checkpoint. The
metrics table holds only those accuracies; each evaluated checkpoint also keeps which item was
right (``RUN/evals/items/...``, :func:`validity_items`), so the drop can carry an interval.

The interval (:func:`drop_interval`) is a paired percentile bootstrap over *units*: a held-out
subject for the probe statements (every statement of a drawn subject comes with it, as in
``experiments.evaluation.stats.subject_interval``), a question for the control verdicts and a
fact (its true and its false question) for the control yes/no questions. Each resample draws
units with replacement and takes, with the same draw before and after finetuning, the base
model's accuracy minus the checkpoint's (the mean over seeds): the seeds are the run's
finetuning runs, held fixed; the interval is over the items they are read on.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from experiments.evaluation.readout import statement_flags

COLUMNS = ["measure", "layer", "unit", "item", "correct"]
PROBE_MEASURE = "probe_acc_fixed"


def validity_items(statements, fixed_correct: np.ndarray | None, scored_controls: pd.DataFrame) -> pd.DataFrame:
    """Which validity item one checkpoint got right.

    Parameters
    ----------
    statements : sequence of ``experiments.materials.statements.Statement``
        The probe statements (only the test split's are kept: those ``probe_acc_fixed`` reads).
    fixed_correct : bool array ``[L, n_test]`` or None
        Whether the base model's probe reads each test-split statement right at each layer
        (``readout.heldout_correct``); None when there is no fixed probe.
    scored_controls : DataFrame
        ``belief.score_questions`` of the control questions (``kind``, ``qid``, ``truthful``).

    Returns
    -------
    DataFrame
        :data:`COLUMNS`: ``measure`` (``probe_acc_fixed`` or ``control_acc_<kind>``), ``layer``
        (the probe's; -1 for questions), ``unit`` (what the bootstrap draws: the statement's
        subject, the verdict question, the yes/no question's fact), ``item`` (the statement's
        index or the question's id) and ``correct`` (0 or 1).
    """
    frames = []
    if fixed_correct is not None:
        _, _, test = statement_flags(statements)
        index = np.flatnonzero(test)
        subjects = np.array([statements[i].subject for i in index], dtype=object)
        correct = np.asarray(fixed_correct)
        layers = correct.shape[0]
        frames.append(pd.DataFrame({"measure": PROBE_MEASURE, "layer": np.repeat(np.arange(layers), len(index)),
                                    "unit": np.tile(subjects, layers), "item": np.tile(index.astype(str), layers),
                                    "correct": correct.reshape(-1).astype(int)}))
    asked = scored_controls[scored_controls.truthful.notna()]
    if len(asked):
        frames.append(pd.DataFrame({"measure": "control_acc_" + asked.kind.astype(str), "layer": -1,
                                    "unit": [q.split(".")[0] for q in asked.qid], "item": asked.qid.astype(str),
                                    "correct": asked.truthful.astype(int)}))
    return pd.concat(frames, ignore_index=True)[COLUMNS] if frames else pd.DataFrame(columns=COLUMNS)


def _select(items: pd.DataFrame, measure: str, layer: int | None) -> pd.DataFrame:
    rows = items[(items.measure == measure) & (items.layer == (-1 if layer is None else layer))]
    return rows.set_index(rows.item.astype(str))


def _in_world(items: pd.DataFrame, world) -> pd.DataFrame:
    return items if world is None else items[items.world == world]


def _stratum(base: pd.DataFrame, seeds: list[pd.Series], n_boot: int, rng) -> tuple[float, np.ndarray, int] | None:
    """One world's drop and its ``n_boot`` resampled drops (units drawn with replacement, the
    same draw before and after), and its number of units; None when a seed lacks an item."""
    if any(s.isna().any() or len(s) != len(base) for s in seeds):
        return None
    _, unit = np.unique(base.unit.astype(str).to_numpy(), return_inverse=True)
    total = np.bincount(unit)
    right_before = np.bincount(unit, base.correct.to_numpy(float))
    right_after = np.stack([np.bincount(unit, s.to_numpy(float)) for s in seeds])
    draws = rng.integers(0, len(total), size=(n_boot, len(total)))
    n = total[draws].sum(1)
    drops = right_before[draws].sum(1) / n - (right_after[:, draws].sum(2) / n).mean(0)
    drop = right_before.sum() / total.sum() - (right_after.sum(1) / total.sum()).mean()
    return float(drop), drops, len(total)


def drop_interval(before: pd.DataFrame, after: list[pd.DataFrame], measure: str, layer: int | None = None, *,
                  level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict | None:
    """The drop of one validity measure from the base model to a checkpoint, with a paired
    bootstrap interval over units (the module docstring).

    Parameters
    ----------
    before : DataFrame
        The base model's items (:func:`validity_items`); with a ``world`` column (a run of
        several worlds), every world's, and the drop is the mean of the worlds' drops, each
        world's units resampled within it (the worlds, like the seeds, held fixed).
    after : list of DataFrame
        One seed's items at its last checkpoint each (the same items).
    measure : str
        ``probe_acc_fixed`` or ``control_acc_<kind>``.
    layer : int, optional
        The probe's layer (probe_acc_fixed only).

    Returns
    -------
    dict or None
        ``drop`` (base accuracy minus the mean over seeds of the checkpoint's), ``lo``, ``hi``,
        ``level``, ``n_units`` (over every world), ``unit`` ("subject", "question" or "fact": what a
        unit is); None when a table lacks the measure or the checkpoints were read on other items
        than the base model.
    """
    base = _select(before, measure, layer)
    if base.empty or not after:
        return None
    seeds = [_select(a, measure, layer) for a in after]
    worlds = sorted(base.world.unique()) if "world" in base.columns else [None]
    if worlds != [None] and any("world" not in s.columns for s in seeds):
        return None
    rng = np.random.default_rng(seed)
    strata = []
    for world in worlds:
        base_w = _in_world(base, world)
        strata.append(_stratum(base_w, [_in_world(s, world).correct.reindex(base_w.index) for s in seeds], n_boot, rng))
        if strata[-1] is None:
            return None
    drops = np.mean([s[1] for s in strata], axis=0)
    lo, hi = np.quantile(drops, [(1 - level) / 2, (1 + level) / 2])
    kind = "subject" if measure == PROBE_MEASURE else "fact" if (base.unit != base.index).any() else "question"
    return {"drop": float(np.mean([s[0] for s in strata])), "lo": float(lo), "hi": float(hi), "level": level,
            "n_units": int(sum(s[2] for s in strata)), "unit": kind}


__all__ = ["COLUMNS", "drop_interval", "validity_items"]
