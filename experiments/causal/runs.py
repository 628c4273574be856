"""Causal analyses over a run directory's checkpoints, each model's rows computed once, kept under
``RUN/evals/<analysis>/`` (a rerun reads them back) and gathered into ``RUN/results/``: belief
patching (:func:`patch_run`, ``results/patching.csv``) and steering along the fixed truth probe's
direction (:func:`steer_run`, ``results/steering.csv``)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from experiments.artifacts.atomic import atomic_write_csv
from experiments.artifacts.checksums import hf_dir_problem
from experiments.artifacts.provenance import load_run_config
from experiments.artifacts.rundir import RunDir
from experiments.causal.patching import belief_patching, default_sites, probe_patching
from experiments.causal.steering import ALPHAS, check_steering_layer, probe_direction, truth_steering
from experiments.evaluation.scoring import McqFormat
from experiments.errors import UserError, warn
from experiments.materials import load_materials
from experiments.training.stages import checkpoint_steps


def _fixed_probe_and_acts(base, materials, cfg, estimator: str | None = None):
    import interp
    from experiments.evaluation.readout import fit_probes

    statements = materials.probe_statements()
    acts = interp.residuals(base, [s.text for s in statements], position=cfg.eval.position,
                            batch_size=cfg.eval.batch_size).numpy()
    probe = fit_probes(acts, statements, estimator=estimator or cfg.eval.probe, C=cfg.eval.probe_C, device=base.device)
    return probe, acts


def fixed_probe(base, materials, cfg):
    """The run's fixed truth probes (one per layer), fit on the base model's probe statements as
    the evaluation fits them (``eval.position``, ``eval.probe``, ``eval.probe_C``).

    Returns
    -------
    probes.sweep.SweepResult with batch shape ``[n_layers + 1]``
    """
    return _fixed_probe_and_acts(base, materials, cfg)[0]


def steering_vectors(base, materials, cfg, layers, estimator: str | None = None) -> dict:
    """The fixed truth probe's steering vector at each of ``layers`` (:func:`probe_direction`: its
    unit direction times the true-false gap of its training statements in the base model), the
    probe fit with ``estimator`` (default the run's ``eval.probe``).

    Returns
    -------
    dict layer -> array ``[d_model]``, for the layers where the probe has a direction (the others
    are named in one warning line; none at all is a one-line error)
    """
    import numpy as np

    probe, acts = _fixed_probe_and_acts(base, materials, cfg, estimator)
    statements = materials.probe_statements()
    train = np.array([s.split == "train" for s in statements])
    labels = np.array([bool(s.label) for s in statements])
    vectors, missing = {}, []
    for layer in layers:
        try:
            vectors[layer] = probe_direction(probe[layer], acts[train, layer], labels[train])
        except UserError as err:
            missing.append((layer, err))
    if not vectors:
        raise UserError("; ".join(f"layer {layer}: {err}" for layer, err in missing))
    if missing:
        warn(f"no direction to steer along at layer(s) {[layer for layer, _ in missing]} (the probe's weights are "
             "zero there: its true and false statements do not differ along any direction); steering the others")
    return vectors


def controls_layer(run: RunDir, n_layers: int) -> int:
    """The layer whose fixed probe the run's controls read (``results/controls.json``), else the last."""
    path = run.path("results", "controls.json")
    layer = json.loads(path.read_text()).get("positive_control", {}).get("layer") if path.is_file() else None
    return int(layer) if isinstance(layer, int) else n_layers


def _checkpoint(run: RunDir, condition: str, seed: int, step: int) -> Path:
    path = run.checkpoint(condition, seed, step)
    if not path.exists() or hf_dir_problem(path):
        raise UserError(f"{str(path)!r} is missing or incomplete; finish the run with `neglect run --out {run.root}` "
                        "or choose another --step")
    return path


def _selection(run_dir, conditions, seeds, step, verb: str):
    """The run, its config, the checkpoint step (default the last) and the conditions and seeds
    chosen (default every one), each checked against the run: a bad one is one line."""
    run = RunDir(run_dir)
    cfg = load_run_config(run_dir)
    if cfg.worlds > 1:
        raise UserError(f"{str(run_dir)!r} holds {cfg.worlds} worlds; {verb} one of them: {str(run.world_dir(0))!r} ...")
    steps = checkpoint_steps(cfg)
    step = steps[-1] if step is None else step
    if step not in steps or step == 0:
        raise UserError(f"step {step} is not a finetuning checkpoint of this run; expected one of {steps[1:]}")
    conditions = list(conditions or cfg.conditions)
    unknown = [c for c in conditions if c not in cfg.conditions]
    if unknown:
        raise UserError(f"condition(s) {unknown} are not in this run; expected some of {list(cfg.conditions)}")
    return run, cfg, step, conditions, list(cfg.seeds if seeds is None else seeds)


def patch_run(run_dir: str | Path, *, conditions: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
              step: int | None = None, layers=None, sites: Sequence[str] | None = None,
              kind: str = "yesno", min_shift: float = 1.0, probe_layer: int | None = None) -> pd.DataFrame:
    """:func:`experiments.causal.patching.belief_patching` of the run's base model against its
    checkpoints, one condition and seed at a time (each kept under ``RUN/evals/patching/``, named
    by its checkpoint and settings, and read back by a rerun).

    Parameters
    ----------
    run_dir : str or Path
        A run directory of one world (for a run of several, one of its ``worlds/w<k>``).
    conditions, seeds : optional
        Default: every condition and seed of the run.
    step : int, optional
        The checkpoint step; default the last.
    layers, sites, kind, min_shift :
        As for ``belief_patching`` (sites: default every one the run's materials allow; a claim
        pack's items have no word sites); ``kind="probe"``: the fixed truth probe's reading of the claim
        statements (:func:`experiments.causal.patching.probe_patching`) instead of the answers.
    probe_layer : int, optional
        With ``kind="probe"``, the layer the probe reads; default the controls' layer.

    Returns
    -------
    DataFrame
        ``belief_patching``'s rows with ``condition, seed, step`` in front; also written to
        :func:`patching_table_path` (``RUN/results/patching.csv`` for yes/no questions).
    """
    import interp

    run, cfg, step, conditions, seeds = _selection(run_dir, conditions, seeds, step, "patch")
    materials = load_materials(cfg)
    sites = default_sites(materials) if sites is None else tuple(sites)
    settings = hashlib.sha1(json.dumps([layers, list(sites), kind, min_shift, probe_layer]).encode()).hexdigest()[:8]
    base = probe = None
    frames = []
    for condition in conditions:
        for seed in seeds:
            cache = run.path("evals", "patching", f"{condition}_seed{seed}_step{step:06d}_{settings}.csv")
            if cache.is_file():
                rows = pd.read_csv(cache)
            else:
                finetuned_path = _checkpoint(run, condition, seed, step)
                base = interp.load_model(str(cfg.base_model or run.base_model)) if base is None else base
                finetuned = interp.load_model(str(finetuned_path))
                if kind == "probe":
                    read_layer = controls_layer(run, base.n_layers) if probe_layer is None else probe_layer
                    probe = fixed_probe(base, materials, cfg) if probe is None else probe
                    rows = probe_patching(base, finetuned, materials, probe[read_layer], read_layer=read_layer,
                                          layers=layers, sites=sites, position=cfg.eval.position,
                                          min_shift=min_shift)
                else:
                    rows = belief_patching(base, finetuned, materials, layers=layers, sites=sites, kind=kind,
                                           min_shift=min_shift, mcq=McqFormat.from_config(cfg.eval))
                atomic_write_csv(cache, rows)
            frames.append(rows.assign(condition=condition, seed=seed, step=step))
    table = pd.concat(frames, ignore_index=True)
    table = table[["condition", "seed", "step", *[c for c in table.columns if c not in ("condition", "seed", "step")]]]
    atomic_write_csv(patching_table_path(run_dir, kind), table)
    return table


def patching_table_path(run_dir: str | Path, kind: str = "yesno") -> Path:
    """Where :func:`patch_run` gathers its rows: ``RUN/results/patching.csv`` for yes/no questions,
    ``patching_<kind>.csv`` for another kind."""
    return RunDir(run_dir).path("results", "patching.csv" if kind == "yesno" else f"patching_{kind}.csv")


BASE = "(base model)"  # the condition label of the base model's rows


def steer_run(run_dir: str | Path, *, conditions: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
              step: int | None = None, layers=None, alphas: Sequence[float] | None = None, n_random: int = 3,
              site: str = "statement", estimator: str | None = None, checkpoints: bool = True) -> pd.DataFrame:
    """:func:`experiments.causal.steering.truth_steering` of the run's base model and (``checkpoints``)
    of its finetuned checkpoints, along the run's fixed truth probe at each layer (the base model's
    probe, as every checkpoint's probe readings use it); each model's rows kept under
    ``RUN/evals/steering/`` and read back by a rerun.

    Parameters
    ----------
    run_dir : str or Path
        A run directory of one world (for a run of several, one of its ``worlds/w<k>``).
    conditions, seeds, step : optional
        The checkpoints steered: default every condition and seed at the last step.
    layers : int or list of int, optional
        Residual indices below the last (``0 <= layer < n_layers``); default the controls' layer
        (the one whose fixed probe the run's controls read), or the last block's input when that is
        the final residual.
    alphas, n_random, site :
        As for ``truth_steering`` (default alphas: :data:`~experiments.causal.steering.ALPHAS`).
    estimator : str, optional
        The probe whose direction is steered along (``eval.probe``'s choices); default the run's.
    checkpoints : bool
        False: the base model only.

    Returns
    -------
    DataFrame
        ``truth_steering``'s rows with ``condition`` (:data:`BASE` for the base model), ``seed``,
        ``step`` (0 for the base model) and ``layer`` in front; also written to
        ``RUN/results/steering.csv``.
    """
    import interp
    from interp.residuals import check_layers

    run, cfg, step, conditions, seeds = _selection(run_dir, conditions, seeds, step, "steer")
    materials = load_materials(cfg)
    base = interp.load_model(str(cfg.base_model or run.base_model))
    default = min(controls_layer(run, base.n_layers), base.n_layers - 1)  # the last block's input at the latest
    layers = check_layers([default] if layers is None else layers, base.n_layers)
    for layer in layers:
        check_steering_layer(layer, base.n_layers)
    alphas = sorted({float(a) for a in (ALPHAS if alphas is None else alphas)} | {0.0})
    estimator = estimator or cfg.eval.probe
    settings = hashlib.sha1(json.dumps([layers, alphas, n_random, site, estimator]).encode()).hexdigest()[:8]
    models = [(BASE, None, 0)] + ([(c, s, step) for c in conditions for s in seeds] if checkpoints else [])
    vectors = None
    frames = []
    for condition, seed, at in models:
        name = "base" if seed is None else f"{condition}_seed{seed}_step{at:06d}"
        cache = run.path("evals", "steering", f"{name}_{settings}.csv")
        if cache.is_file():
            rows = pd.read_csv(cache)
        else:
            lm = base if seed is None else interp.load_model(str(_checkpoint(run, condition, seed, at)))
            vectors = steering_vectors(base, materials, cfg, layers, estimator) if vectors is None else vectors
            rows = pd.concat([truth_steering(lm, materials, vector, layer=layer, alphas=alphas, n_random=n_random,
                                             site=site, per_cell=cfg.eval.control_per_cell,
                                             mcq=McqFormat.from_config(cfg.eval)).assign(layer=layer,
                                                                                                   estimator=estimator)
                              for layer, vector in vectors.items()], ignore_index=True)
            atomic_write_csv(cache, rows)
        frames.append(rows.assign(condition=condition, seed=seed, step=at))
    table = pd.concat(frames, ignore_index=True)
    front = ["condition", "seed", "step", "layer"]
    table = table[[*front, *[c for c in table.columns if c not in front]]]
    atomic_write_csv(run.path("results", "steering.csv"), table)
    return table
