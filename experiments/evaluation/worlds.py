"""Several synthetic worlds in one run (config key ``worlds``): the outermost unit of its intervals.

The pipeline (``experiments.pipeline``) runs the worlds one after another; this module names
them, and gathers their tables.

World k (0..worlds-1) is the run's config with world seed ``world.seed + k`` and ``worlds = 1``
(:func:`world_config`): another world (other names, facts and claims) and its own base model,
pretrained on it (the toy model's initialisation and data order follow the world seed), on which
every condition x seed is finetuned and evaluated. Each world is a complete run directory,
``RUN/worlds/w<k>/`` (``RunDir.world_dir``), made and resumed by the one-world pipeline, with its
own ``results/check_base.json`` (a report of its own only on request: ``neglect report
RUN/worlds/w<k>``; the run's report at the top covers every world). The run's own
``results/metrics.csv`` stacks the worlds' tables with a ``world`` column (:func:`stack_world_tables`), so the intervals of
``experiments.evaluation.stats`` are over worlds > claims > seeds. Claim names repeat across
worlds (``claim0_won_by`` in each) but name different claims: a claim is (world, claim).

With ``worlds`` = 1 none of this applies: the run directory and its tables are as they always were.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from experiments.artifacts.atomic import atomic_write_csv
from experiments.artifacts.checksums import read_csv_or_none
from experiments.artifacts.rundir import RunDir
from experiments.config import RunConfig
from experiments.errors import UserError

WORLD_COLUMN = "world"


def world_seed(cfg: RunConfig, world: int) -> int:
    """The world seed of world ``world`` of a run: ``cfg.world.seed + world``."""
    return cfg.world.seed + world


def world_config(cfg: RunConfig, world: int) -> RunConfig:
    """The one-world config of world ``world`` (0-based) of a run of ``cfg``.

    Parameters
    ----------
    cfg : RunConfig
        The run's config (``worlds`` >= 1).
    world : int
        Which world, ``0 <= world < cfg.worlds``.

    Returns
    -------
    RunConfig
        ``cfg`` with ``world.seed`` = :func:`world_seed` and ``worlds`` = 1: what
        ``RUN/worlds/w<world>/config.json`` holds.
    """
    if not 0 <= world < cfg.worlds:
        raise UserError(f"world {world!r} is not in this run; expected 0..{cfg.worlds - 1}")
    return dataclasses.replace(cfg, world=dataclasses.replace(cfg.world, seed=world_seed(cfg, world)), worlds=1)


def world_runs(cfg: RunConfig, root: str | Path) -> list[tuple[int, RunConfig, RunDir]]:
    """``(world, its config, its run directory)`` for every world of a several-world run."""
    run = RunDir(root)
    return [(k, world_config(cfg, k), RunDir(run.world_dir(k))) for k in range(cfg.worlds)]


def worlds_index(cfg: RunConfig) -> list[dict]:
    """What ``RUN/worlds.json`` holds: each world's number, world seed and directory."""
    return [{"world": k, "seed": world_seed(cfg, k), "dir": f"worlds/w{k}"} for k in range(cfg.worlds)]


def stack_world_tables(run: RunDir, cfg: RunConfig, name: str, *, required: bool = True) -> pd.DataFrame | None:
    """Every world's ``results/<name>.csv`` as one table with a ``world`` column (first), written
    to the run's ``results/<name>.csv``; read back instead when that file is intact and newer
    than every world's.

    Parameters
    ----------
    run : RunDir
        The several-world run.
    cfg : RunConfig
        Its config (``worlds`` > 1).
    name : str
        The table (``"metrics"``, ``"incontext"``, ...).
    required : bool
        Whether every world must have the table (a missing one is then a UserError); otherwise
        None is returned when some world lacks it.

    Returns
    -------
    DataFrame or None
    """
    inputs = [wrun.table(name) for _, _, wrun in world_runs(cfg, run.root)]
    missing = [p for p in inputs if not p.is_file()]
    if missing:
        if required:
            raise UserError(f"table {str(missing[0])!r} is missing; rerun `neglect run --out {run.root}` to make it")
        return None
    out = run.table(name)
    if out.is_file() and out.stat().st_mtime_ns >= max(p.stat().st_mtime_ns for p in inputs):
        table = read_csv_or_none(out)
        if table is not None:
            return table
    frames = []
    for k, path in enumerate(inputs):
        frame = read_csv_or_none(path)
        if frame is None:
            raise UserError(f"table {str(path)!r} is damaged; rerun `neglect run --out {run.root}` to recompute it")
        frames.append(frame.assign(**{WORLD_COLUMN: k}))
    table = pd.concat(frames, ignore_index=True)
    table = table[[WORLD_COLUMN] + [c for c in table.columns if c != WORLD_COLUMN]]
    atomic_write_csv(out, table)
    return pd.read_csv(out)  # exactly what a resumed run reads back
