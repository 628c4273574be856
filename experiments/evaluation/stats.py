"""Statistics over a run's tidy tables: means with intervals over nested units, the best probe layer.

Units are nested: worlds (each with its own base model) > claims (within a world) > finetuning
seeds (within a claim); a table may have any of the three columns ``world``, ``claim``, ``seed``.
An interval is over the outermost level that has more than one unit: each of those units is
summarised by the mean of its sub-units (recursively), and the interval is a Student-t interval
over those unit means (``ci="t"``, the default) or a hierarchical bootstrap that resamples units
at every level, each within its parent (``ci="bootstrap"``). Levels above the top one have a
single unit: the interval is conditional on it (``n_worlds == 1`` says so). With one unit in all
there is no interval (NaN), never a zero-width one. Seeds that agree within a claim do not make
an interval collapse when claims differ, and seeds x claims are never pooled as if independent.

The plotting module draws what these compute; nothing here makes a figure.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from experiments.errors import UserError

UNIT_LEVELS = ("world", "claim", "seed")  # outermost first
CI_METHODS = ("t", "bootstrap")
INTERVAL_COLUMNS = ["mean", "lo", "hi", "n", "units", "n_worlds", "n_claims", "n_seeds"]


def _check_method(ci: str) -> None:
    if ci not in CI_METHODS:
        raise UserError(f"ci must be 't' or 'bootstrap'; got {ci!r}")


def _unit_means(a: np.ndarray, stop: int) -> np.ndarray:
    """Means of the units of axis ``stop``: NaN-padded axes after it are averaged innermost
    first, so every unit weighs the same within its parent (a unit with no values is NaN)."""
    for axis in range(a.ndim - 1, stop, -1):
        ok = ~np.isnan(a)
        count = ok.sum(axis)
        total = np.where(ok, a, 0.0).sum(axis)
        a = np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)
    return a


def _present(units: np.ndarray, axis: int) -> np.ndarray:
    """Which units of ``axis`` exist (hold any value), ``units.shape[:axis + 1]``."""
    return ~np.isnan(units).all(axis=tuple(range(axis + 1, units.ndim)))


def _resample(units: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` hierarchical resamples ``[n_boot, *units.shape]`` of a NaN-padded array whose
    axis 0 holds the top-level units (all present) and whose inner axes hold sub-units packed at
    the front of their parent: units are drawn with replacement at every level, within their parent."""
    out = units[rng.integers(0, units.shape[0], size=(n_boot, units.shape[0]))]
    for axis in range(2, out.ndim):
        present = _present(out, axis)
        count = present.sum(axis)[..., None]                                   # sub-units of each parent
        draw = np.floor(rng.random(present.shape) * count).astype(np.int64)    # [..., n_axis]
        keep = np.arange(out.shape[axis]) < count
        expand = (...,) + (None,) * (out.ndim - axis - 1)
        out = np.take_along_axis(out, draw[expand], axis=axis)
        out = np.where(keep[expand], out, np.nan)
    return out


def _interval(units: np.ndarray, ci: str, level: float, n_boot: int, seed: int) -> tuple[float, float, float, int]:
    """``(mean, lo, hi, n)`` of a NaN-padded array whose axis 0 holds the interval's units."""
    means = _unit_means(units, 0)
    n = int(means.size)
    if n == 0:
        return (np.nan, np.nan, np.nan, 0)
    mean = float(means.mean())
    if n < 2:
        return (mean, np.nan, np.nan, n)
    if ci == "t":
        from scipy import stats

        half = float(stats.t.ppf(0.5 + level / 2, n - 1) * means.std(ddof=1) / np.sqrt(n))
        return (mean, mean - half, mean + half, n)
    boots = _unit_means(_resample(units, n_boot, np.random.default_rng(seed)), 1).mean(axis=1)
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return (mean, min(float(lo), mean), max(float(hi), mean), n)


def mean_ci(values, *, ci: str = "t", level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and a ``level`` confidence interval of independent ``values`` (non-finite ones dropped).

    Parameters
    ----------
    values : array-like of numbers, each one unit (e.g. one seed's rate)
    ci : ``"t"`` (Student-t) or ``"bootstrap"`` (percentile bootstrap, seeded by ``seed``)
    level : float
        Coverage of the interval.
    n_boot, seed : bootstrap resamples and their seed

    Returns
    -------
    ``(mean, lo, hi)``; with fewer than two values the interval is ``(nan, nan)`` (one unit
    says nothing about spread), and with no values everything is NaN.
    """
    _check_method(ci)
    x = np.asarray(values, dtype=float).ravel()
    return _interval(x[np.isfinite(x)], ci, level, n_boot, seed)[:3]


def unit_levels(rows: pd.DataFrame, exclude: Iterable[str] = ()) -> list[str]:
    """The unit levels (of :data:`UNIT_LEVELS`, outermost first) that ``rows`` has: a column
    that exists, is not in ``exclude``, and names at least one unit (a claim of ``"all"`` is
    pooled over claims, not a claim)."""
    out = []
    for name in UNIT_LEVELS:
        if name in rows.columns and name not in set(exclude):
            labels = rows[name].dropna()
            if name == "claim":
                labels = labels[labels.astype(str) != "all"]
            if len(labels):
                out.append(name)
    return out


def _codes(labels: pd.Series, pooled: str | None) -> np.ndarray:
    """Sorted integer codes of unit labels; -1 for a missing label or the ``pooled`` one."""
    codes, uniques = pd.factorize(labels, sort=True)
    if pooled is not None:
        codes[np.isin(codes, np.flatnonzero(uniques.astype(str) == pooled))] = -1
    return codes


def _padded(rows: pd.DataFrame, levels: list[str]) -> np.ndarray:
    """NaN-padded array ``[n_level0, n_level1, ...]`` of the innermost units' mean values,
    sub-units packed at the front of their parent, units in sorted order (rows with a missing
    value or unit label, or pooled over claims, are left out)."""
    values = rows.value.to_numpy(float)
    if not levels:
        return values[np.isfinite(values)]
    codes = np.stack([_codes(rows[name], pooled="all" if name == "claim" else None) for name in levels], axis=1)
    keep = (codes >= 0).all(axis=1) & np.isfinite(values)
    if not keep.any():
        return np.full([0] * len(levels), np.nan)
    cells, cell = np.unique(codes[keep], axis=0, return_inverse=True)    # lexicographic: parents contiguous
    means = np.bincount(cell, weights=values[keep]) / np.bincount(cell)
    pos, parent = [], np.zeros(len(cells), dtype=np.int64)
    for i in range(len(levels)):
        changed = (cells[1:, :i + 1] != cells[:-1, :i + 1]).any(axis=1)
        path = np.concatenate([[0], np.cumsum(changed)])                  # unit id of each cell at level i
        pos.append(path - path[np.searchsorted(parent, parent)])          # its place within its parent
        parent = path
    out = np.full([int(p.max()) + 1 for p in pos], np.nan)
    out[tuple(pos)] = means
    return out


def _per_parent(units: np.ndarray, axis: int) -> int:
    """Fewest units of ``axis`` under one parent (0 when there are none)."""
    counts = _present(units, axis).sum(axis)
    counts = counts[counts > 0] if axis else counts
    return int(counts.min()) if counts.size else 0


def nested_interval(rows: pd.DataFrame, *, levels: Sequence[str] | None = None, ci: str = "t",
                    level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean of ``rows.value`` over nested units and a ``level`` interval over the top-level units.

    Parameters
    ----------
    rows : tidy rows with ``value`` and unit columns (``world``, ``claim``, ``seed``; any subset)
    levels : the unit columns, outermost first; default :func:`unit_levels` of ``rows``.
        Rows sharing every unit label are averaged into one innermost unit; with no levels,
        every row is a unit.
    ci : ``"t"`` (default: a Student-t interval over the top-level units' means) or
        ``"bootstrap"`` (percentile interval of a hierarchical bootstrap resampling the units at
        every level, each within its parent; seeded by ``seed``, ``n_boot`` resamples)
    level : float
        Coverage of the interval.

    Returns
    -------
    dict ``mean, lo, hi, n, units, n_worlds, n_claims, n_seeds``: ``n`` top-level units (the
    outermost level with more than one), ``units`` the levels the interval is over (e.g.
    ``"claim>seed"``), ``n_<level>`` the units of each level under one parent (the fewest, if
    unbalanced; None for a level the rows lack). With one unit in all, ``lo`` and ``hi`` are NaN.
    """
    _check_method(ci)
    levels = unit_levels(rows) if levels is None else list(levels)
    units = _padded(rows, levels)
    counts = {name: (_per_parent(units, levels.index(name)) if name in levels else None) for name in UNIT_LEVELS}
    top = 0
    while top < len(levels) - 1 and units.shape[0] == 1:  # a single unit is fixed: the interval is within it
        units, top = units[0], top + 1
    mean, lo, hi, n = _interval(units, ci, level, n_boot, seed)
    return dict(mean=mean, lo=lo, hi=hi, n=n, units=">".join(levels[top:]) or "row",
                **{f"n_{name}s": counts[name] for name in UNIT_LEVELS})


def summarise(rows: pd.DataFrame, by: Sequence[str], *, ci: str = "t", level: float = 0.95,
              bounds: tuple[float, float] | None = None) -> pd.DataFrame:
    """Mean and interval of ``value`` per group of ``by``, over the nested units in each group.

    Parameters
    ----------
    rows : tidy rows with ``value``, the ``by`` columns and unit columns (``world``, ``claim``,
        ``seed``: whichever are present and not in ``by``; see :func:`nested_interval`)
    by : columns that define the groups (e.g. ``["condition", "step"]``)
    ci, level : as for :func:`nested_interval`
    bounds : ``(low, high)`` to clip the interval to the metric's range (a t interval of a
        rate can leave [0, 1] with few units)

    Returns
    -------
    DataFrame ``[*by, mean, lo, hi, n, units, n_worlds, n_claims, n_seeds]``, one row per group.
    """
    by = list(by)
    out = []
    for key, grp in rows.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        stats = nested_interval(grp, levels=unit_levels(grp, exclude=by), ci=ci, level=level)
        if bounds is not None:
            stats["lo"], stats["hi"] = np.clip([stats["lo"], stats["hi"]], *bounds)
        out.append(dict(zip(by, key), **stats))
    frame = pd.DataFrame(out, columns=[*by, *INTERVAL_COLUMNS])
    for name in ("n_worlds", "n_claims", "n_seeds"):
        frame[name] = frame[name].astype("Int64")
    return frame


def units_line(table: pd.DataFrame) -> str:
    """One line saying how many units a run's table has at each level (worlds, claims per
    world, seeds per claim; the fewest under one parent) and which levels its intervals are over,
    counted on the per-claim rows of one condition and measure at the last step.

    Parameters
    ----------
    table : a run's tidy metrics table (``results/metrics.csv``)

    Returns
    -------
    str, e.g. ``"n: 2 worlds, 3 claims per world, 2 seeds per claim; intervals over world>claim>seed"``
    """
    rows = table[(table.step == table.step.max()) & table.claim.notna() & (table.claim.astype(str) != "all")]
    if rows.empty:
        return "n: no per-claim rows at the last step"
    rows = rows[(rows.metric == rows.metric.iloc[0]) & (rows.condition == rows.condition.iloc[0])]
    stats = nested_interval(rows)
    n = {name: stats[f"n_{name}s"] if stats[f"n_{name}s"] is not None else 1 for name in UNIT_LEVELS}
    plural = {name: "" if n[name] == 1 else "s" for name in UNIT_LEVELS}
    return (f"n: {n['world']} world{plural['world']}, {n['claim']} claim{plural['claim']} per world, {n['seed']} "
            f"seed{plural['seed']} per claim; intervals over {stats['units']}")


def base_model_once(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the base model's rows counted once: step-0 rows are the base model, which
    ``tables.collect`` repeats for every seed (so every curve starts from it); identical copies are
    not independent seeds, so only the lowest seed's copy is kept."""
    if "step" not in table.columns or "seed" not in table.columns:
        return table
    base = table.step == 0
    if not base.any():
        return table
    return table[~base | (table.seed == table.seed[base].min())]


def require_metrics(table: pd.DataFrame, metrics: Iterable[str]) -> None:
    missing = [m for m in metrics if m not in set(table.metric)]
    if missing:
        raise UserError(f"the metrics table has no rows for {missing}; expected a table from `neglect run` "
                        f"(metrics present: {sorted(set(table.metric))})")


def best_layer(table: pd.DataFrame, metric: str | None = None) -> int:
    """The layer whose refit probe is most accurate at step 0 on the validation statements
    (``probe_acc_val_refit``: entities carved out of the training split), never on the test
    split; tables written before that metric existed fall back to ``probe_acc_refit``. Ties go
    to the deeper layer (with last-token reading, shallow layers tie at chance). ``metric``
    names another per-layer step-0 score to choose by (e.g. ``probe_acc_val_fixed``)."""
    if metric is None:
        metric = "probe_acc_val_refit" if "probe_acc_val_refit" in set(table.metric) else "probe_acc_refit"
    require_metrics(table, [metric])
    base = table[(table.metric == metric) & (table.step == 0)]
    acc = base.groupby("layer").value.mean()
    return int(acc[acc == acc.max()].index.max())


def subject_interval(correct, subjects, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> dict:
    """A probe's held-out accuracy with a percentile bootstrap interval over held-out subjects:
    each resample draws subjects with replacement, every statement of a drawn subject with it
    (its statements are not independent), and takes the accuracy over the drawn statements, so
    the interval is for the same accuracy over statements that the point estimate is.

    Parameters
    ----------
    correct : sequence of bool
        Whether each held-out statement is read right.
    subjects : sequence of str
        Each statement's subject.

    Returns
    -------
    dict
        ``acc`` (over statements), ``lo``, ``hi`` (the interval), ``n_subjects``.
    """
    correct = np.asarray(correct, float)
    _, unit = np.unique(np.asarray(subjects), return_inverse=True)
    right, total = np.bincount(unit, correct), np.bincount(unit)
    draws = np.random.default_rng(seed).integers(0, len(total), size=(n_boot, len(total)))
    accs = right[draws].sum(1) / total[draws].sum(1)
    lo, hi = np.quantile(accs, [(1 - level) / 2, (1 + level) / 2])
    return {"acc": float(correct.mean()), "lo": float(lo), "hi": float(hi), "n_subjects": int(len(total))}
