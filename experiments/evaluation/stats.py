"""Statistics over a run's tidy tables: means with intervals, per-seed means, the best probe layer.

The plotting module draws what these compute; nothing here makes a figure.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from experiments.errors import UserError


def mean_ci(values, *, ci: str = "t", level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and a ``level`` confidence interval of ``values``.

    ``ci="t"``: Student-t interval; ``ci="bootstrap"``: percentile bootstrap of the mean
    (seeded, so figures are reproducible). With fewer than two values, or no spread, the
    interval collapses onto the mean.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (np.nan, np.nan, np.nan)
    mean = float(x.mean())
    if x.size < 2 or np.ptp(x) == 0:
        return (mean, mean, mean)
    if ci == "t":
        from scipy import stats

        half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
        return (mean, mean - half, mean + half)
    if ci == "bootstrap":
        rng = np.random.default_rng(seed)
        boots = rng.choice(x, size=(n_boot, x.size), replace=True).mean(axis=1)
        lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
        return (mean, float(lo), float(hi))
    raise UserError(f"ci must be 't' or 'bootstrap'; got {ci!r}")


def summarise(rows: pd.DataFrame, by: Sequence[str], *, ci: str = "t", level: float = 0.95,
              bounds: tuple[float, float] | None = None) -> pd.DataFrame:
    """Group ``rows`` by ``by`` and give ``mean, lo, hi, n`` of ``value`` per group (the
    units are whatever rows remain in a group, e.g. seeds x claims). ``bounds`` clips the
    interval to the metric's range (a t-interval of a rate can leave [0, 1] with few units)."""
    out = []
    for key, grp in rows.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        mean, lo, hi = mean_ci(grp.value, ci=ci, level=level)
        if bounds is not None:
            lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
        out.append(dict(zip(by, key), mean=mean, lo=lo, hi=hi, n=int(grp.value.notna().sum())))
    return pd.DataFrame(out, columns=[*by, "mean", "lo", "hi", "n"])


def require_metrics(table: pd.DataFrame, metrics: Iterable[str]) -> None:
    missing = [m for m in metrics if m not in set(table.metric)]
    if missing:
        raise UserError(f"the metrics table has no rows for {missing}; expected a table from `neglect run` "
                        f"(metrics present: {sorted(set(table.metric))})")


def best_layer(table: pd.DataFrame) -> int:
    """The layer whose refit probe is most accurate on held-out statements at step 0
    (ties go to the deeper layer: with last-token reading, shallow layers tie at chance)."""
    require_metrics(table, ["probe_acc_refit"])
    base = table[(table.metric == "probe_acc_refit") & (table.step == 0)]
    acc = base.groupby("layer").value.mean()
    return int(acc[acc == acc.max()].index.max())


def seed_means(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """One row per ``condition, seed, step, metric``: the mean over claims, so that intervals
    built from these rows are over seeds (claims are not independent replicates of a run)."""
    rows = table[table.metric.isin(metrics) & (table.claim != "all")]
    return rows.groupby(["condition", "seed", "step", "metric"], as_index=False).value.mean()
