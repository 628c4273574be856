"""Statistics of the stability protocol: pure functions of curves, then summaries over seeds.

A *curve* is one seed's value of one metric (mean over claims) at the checkpoints of one
phase: ``steps`` (phase-local, starting at 0) and ``values``. Per seed and metric:

- ``phase1_end``, ``phase2_end``, ``phase2_peak``: levels;
- ``rebound`` = phase2_end - phase1_end, ``rebound_peak`` = phase2_peak - phase1_end;
- ``rebound_half_time``: Phase-2 steps until half of ``rebound_peak`` is reached (speed;
  NaN when there is no rebound);
- ``cross_time``: Phase-2 steps until the value first reaches ``threshold`` (0 if it starts
  there; NaN if never), linearly interpolated between checkpoints; for the unanchored run
  the same within its only phase;
- ``held`` (phase1_end < threshold) and ``collapsed`` (held, and phase2_end >= threshold).

Over seeds: the mean with a 95% t-interval for levels and times (times over the seeds that
reached the level; ``n`` says how many), clipped to the stat's possible range, and a Wilson
interval for the fractions.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from experiments.evaluation.stats import mean_ci

BELIEF_STAT_METRICS = ("belief_forced_choice", "belief_yesno", "belief_verdict", "belief_association",
                       "belief_propositional")  # the last two where the evaluator reports them
PROBE_STAT_METRICS = ("probe_p_true_fixed", "probe_p_true_refit")
LOSS_STAT_METRICS = ("heldout_loss", "heldout_loss_claim", "heldout_loss_warning")
FRACTION_STATS = ("held", "collapsed", "crossed")


def first_crossing(steps, values, threshold: float) -> float:
    """The first step at which the piecewise-linear curve reaches ``threshold`` (NaN if never)."""
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    if values.size == 0:
        return float("nan")
    if values[0] >= threshold:
        return float(steps[0])
    for i in range(1, len(values)):
        if values[i] >= threshold:
            v0, v1 = values[i - 1], values[i]
            return float(steps[i - 1] + (threshold - v0) / (v1 - v0) * (steps[i] - steps[i - 1]))
    return float("nan")


def rebound_stats(p1_end: float, p2_steps, p2_values, threshold: float) -> dict[str, float]:
    """Rebound of one seed's Phase-2 curve (which starts at the Phase-1 end, ``p1_end``)."""
    p2_values = np.asarray(p2_values, float)
    end, peak = float(p2_values[-1]), float(p2_values.max())
    rise = peak - p1_end
    half = first_crossing(p2_steps, p2_values, p1_end + rise / 2) if rise > 0 else float("nan")
    held = p1_end < threshold
    cross = first_crossing(p2_steps, p2_values, threshold)
    return {"phase1_end": p1_end, "phase2_end": end, "phase2_peak": peak, "rebound": end - p1_end,
            "rebound_peak": rise, "rebound_half_time": half, "cross_time": cross,
            "held": float(held), "collapsed": float(held and end >= threshold), "crossed": float(not math.isnan(cross))}


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    from scipy import stats

    z = float(stats.norm.ppf(0.5 + level / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def seed_curves(stab: pd.DataFrame, layer: int) -> pd.DataFrame:
    """``anchor, weight, seed, phase, step, metric, value``: each stat metric averaged over claims
    (probe readings at ``layer``; pooled rows, claim "all", are left out)."""
    stab = stab[stab.claim.fillna("") != "all"]
    keep = stab.metric.isin(BELIEF_STAT_METRICS + LOSS_STAT_METRICS) | (
        stab.metric.isin(PROBE_STAT_METRICS) & (stab.layer == layer))
    return (stab[keep].groupby(["anchor", "weight", "seed", "phase", "step", "metric"], as_index=False).value.mean())


def per_seed_stats(stab: pd.DataFrame, layer: int, threshold: float) -> pd.DataFrame:
    """One row per anchor x weight x seed x metric x stat (see module doc)."""
    curves = seed_curves(stab, layer)
    rows = []
    for (anchor, weight, seed, metric), grp in curves.groupby(["anchor", "weight", "seed", "metric"]):
        p1 = grp[grp.phase == 1].sort_values("step")
        p2 = grp[grp.phase == 2].sort_values("step")
        bounded = metric not in LOSS_STAT_METRICS
        if len(p2):
            stats = rebound_stats(float(p1.value.iloc[-1]), p2.step, p2.value, threshold)
            if not bounded:
                stats = {k: stats[k] for k in ("phase1_end", "phase2_end", "phase2_peak", "rebound")}
        else:  # the unanchored run: one phase
            stats = {"phase1_end": float(p1.value.iloc[-1])}
            if bounded:
                cross = first_crossing(p1.step, p1.value, threshold)
                stats |= {"cross_time": cross, "crossed": float(not math.isnan(cross))}
        for stat, value in stats.items():
            rows.append({"anchor": anchor, "weight": weight, "seed": seed, "metric": metric, "stat": stat,
                         "value": value})
    return pd.DataFrame(rows, columns=["anchor", "weight", "seed", "metric", "stat", "value"])


LEVEL_STATS = ("phase1_end", "phase2_end", "phase2_peak")
CHANGE_STATS = ("rebound", "rebound_peak")


def _floor(metric: str, stat: str) -> float:
    """Lowest possible value of a stat (a t-interval over few seeds can leave the range)."""
    if stat in ("rebound_half_time", "cross_time"):
        return 0.0
    if metric in LOSS_STAT_METRICS:
        return 0.0 if stat in LEVEL_STATS else -np.inf
    return 0.0 if stat in LEVEL_STATS else -1.0


def _ceiling(metric: str, stat: str) -> float:
    if metric in LOSS_STAT_METRICS or stat not in LEVEL_STATS + CHANGE_STATS:
        return np.inf
    return 1.0


def summarise_seeds(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% interval over seeds of every stat (``n``: seeds with a finite value,
    ``n_seeds``: seeds in all; with one finite value there is no interval: NaN)."""
    rows = []
    for (anchor, weight, metric, stat), grp in per_seed.groupby(["anchor", "weight", "metric", "stat"]):
        values = grp.value.to_numpy(float)
        finite = values[np.isfinite(values)]
        if stat in FRACTION_STATS:
            k = int(finite.sum())
            mean = k / len(finite) if len(finite) else float("nan")
            lo, hi = wilson_interval(k, len(finite))
        else:
            mean, lo, hi = mean_ci(finite)
            lo, hi = max(lo, _floor(metric, stat)), min(hi, _ceiling(metric, stat))
        rows.append({"anchor": anchor, "weight": weight, "metric": metric, "stat": stat, "mean": mean, "lo": lo,
                     "hi": hi, "n": len(finite), "n_seeds": len(values)})
    return pd.DataFrame(rows, columns=["anchor", "weight", "metric", "stat", "mean", "lo", "hi", "n", "n_seeds"])
