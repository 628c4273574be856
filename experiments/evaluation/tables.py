"""The run's tidy metrics table, gathered from the per-checkpoint evaluation tables."""
from __future__ import annotations

import functools

import pandas as pd

from experiments.artifacts.atomic import atomic_write_csv
from experiments.artifacts.checksums import read_csv_or_none
from experiments.artifacts.rundir import RunDir
from experiments.config import RunConfig
from experiments.errors import UserError
from experiments.training.stages import checkpoint_steps

ID_COLUMNS = ["condition", "seed", "step", "layer", "claim", "metric", "value"]


def _eval_table(run: RunDir, condition: str | None, seed: int = 0, step: int = 0) -> pd.DataFrame:
    frame = read_csv_or_none(run.eval_file(condition, seed, step))
    if frame is None:
        raise UserError(f"evaluation table {str(run.eval_file(condition, seed, step))!r} is missing or damaged; "
                        f"rerun `neglect run --out {run.root}` to recompute it")
    return frame


def judged_frames(run: RunDir, cfg: RunConfig) -> list[pd.DataFrame]:
    """The judged belief rows of ``results/judge_metrics.csv`` (written when the optional judge
    is on: the base model and each condition x seed's last checkpoint), placed like the
    evaluation tables' rows: the base model's at step 0 of every condition and seed. Empty
    without that file."""
    judged = read_csv_or_none(run.judge_metrics)
    if judged is None or judged.empty:
        return []
    last = checkpoint_steps(cfg)[-1]
    base = judged[judged.step == 0].drop(columns=["condition", "seed", "step"])
    frames = []
    for seed in cfg.seeds:
        for condition in cfg.conditions:
            frames.append(base.assign(condition=condition, seed=seed, step=0))
            if last > 0:
                frames.append(judged[(judged.condition == condition) & (judged.seed == seed) & (judged.step == last)])
    return frames


def item_reader(run: RunDir, worlds: int = 1):
    """``items(condition, seed, step)`` -> that checkpoint's validity items
    (``RUN/evals/items/...``; ``condition`` None: the base model's), or None where a run made
    before they were kept has none: what ``controls.compute_controls`` takes. With ``worlds`` > 1
    (a run of several worlds), every world's items with a ``world`` column, or None when a world
    lacks them. Each table is read once."""
    dirs = [RunDir(run.world_dir(k)) for k in range(worlds)] if worlds > 1 else [run]

    @functools.lru_cache(maxsize=None)
    def items(condition: str | None, seed: int = 0, step: int = 0) -> pd.DataFrame | None:
        frames = [read_csv_or_none(d.items_file(condition, seed, step)) for d in dirs]
        if any(f is None for f in frames):
            return None
        return frames[0] if worlds <= 1 else pd.concat([f.assign(world=k) for k, f in enumerate(frames)],
                                                       ignore_index=True)
    return items


def collect(run: RunDir, cfg: RunConfig) -> pd.DataFrame:
    """All per-checkpoint rows as one tidy table (step 0 = the base model, repeated per
    condition and seed so every curve starts from it), then the judged belief rows
    (:func:`judged_frames`) when the judge was on. Skipped (the table is read back) when
    ``results/metrics.csv`` is intact and newer than every evaluation table and judged rates."""
    inputs = [run.eval_file(None)] + [run.eval_file(c, s, st) for s in cfg.seeds for c in cfg.conditions
                                      for st in checkpoint_steps(cfg) if st > 0]
    inputs += [run.judge_metrics] if run.judge_metrics.is_file() else []
    if run.metrics.is_file() and all(p.is_file() for p in inputs):
        newest = max(p.stat().st_mtime_ns for p in inputs)
        if run.metrics.stat().st_mtime_ns >= newest:
            table = read_csv_or_none(run.metrics)
            if table is not None:
                return table
    base = _eval_table(run, None)
    frames = []
    for seed in cfg.seeds:
        for condition in cfg.conditions:
            frames.append(base.assign(condition=condition, seed=seed, step=0))
            for step in checkpoint_steps(cfg):
                if step > 0:
                    frames.append(_eval_table(run, condition, seed, step).assign(condition=condition, seed=seed,
                                                                                 step=step))
    table = pd.concat(frames + judged_frames(run, cfg), ignore_index=True)
    for col in ID_COLUMNS:
        if col not in table:
            table[col] = None
    table = table[ID_COLUMNS]
    atomic_write_csv(run.metrics, table)
    return pd.read_csv(run.metrics)  # exactly what a resumed run reads back
