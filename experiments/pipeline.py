"""The main job: world -> base model -> finetune per condition x seed -> evaluate every
checkpoint -> tidy tables -> report; and the stability protocol on top of the same stages.

This module only orders the stages (``experiments.training.stages``,
``experiments.evaluation.evaluator``, ``experiments.evaluation.tables``,
``experiments.stability.protocol``); every stage writes its outputs atomically and is skipped
when they already exist, so a killed run resumes where it stopped. The training stages also run
data-parallel under torchrun (``train_stages`` with a ``dist`` from
experiments.training.distributed; ``neglect finetune``).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

import interp
from experiments.artifacts.provenance import load_run_config, record_run
from experiments.artifacts.atomic import atomic_write_csv, atomic_write_json
from experiments.artifacts.checksums import hf_dir_problem
from experiments.artifacts.rundir import RunDir
from experiments.config import RunConfig
from experiments.errors import UserError, warn
from experiments.evaluation.evaluator import evaluate_all
from experiments.evaluation.tables import collect
from experiments.materials.conditions import condition_documents
from experiments.materials.world import World, build_world
from experiments.training.distributed import Single
from experiments.training.stages import checkpoint_steps, device_for, finetune, pretrain


def prepare(run: RunDir, cfg: RunConfig) -> World:
    """Record the run (``config.json``, ``versions.json``) and describe its world (``world.json``)."""
    record_run(run, cfg)
    world = build_world(cfg.world)
    description = {
        "people": world.people, "cities": world.cities, "jobs": world.jobs, "events": world.events,
        "facts": [dataclasses.asdict(f) for f in world.facts],
        "claims": [{"name": c.name, "subject": c.fact.subject, "relation": c.fact.relation,
                    "claim_answer": c.fact.obj, "true_answer": c.true_obj} for c in world.claims],
        "judge_heldout": sorted(list(pair) for pair in world.judge_heldout),
    }
    world_path = run.path("world.json")
    try:
        unchanged = json.loads(world_path.read_text()) == json.loads(json.dumps(description))
    except (OSError, ValueError, UnicodeDecodeError):
        unchanged = False
    if not unchanged:
        atomic_write_json(world_path, description)
    return world


def check_base_model(run_dir: str | Path) -> dict:
    """Base-model preconditions of a run (computed once, then read from results/check_base.json)."""
    from experiments.evaluation.checks import check_base

    run = RunDir(run_dir)
    out = run.path("results", "check_base.json")
    if out.is_file():
        try:
            return json.loads(out.read_text())
        except (ValueError, UnicodeDecodeError):
            warn(f"{str(out)!r} is damaged; recomputing it")
    cfg = load_run_config(run_dir)
    base = cfg.base_model or run.base_model
    if not cfg.base_model and not run.base_model.exists():
        raise UserError(f"{str(run_dir)!r} has no base model yet; run `neglect run --out {run_dir}` first")
    if not cfg.base_model and hf_dir_problem(run.base_model):
        raise UserError(f"base model {str(run.base_model)!r} is damaged ({hf_dir_problem(run.base_model)}); "
                        f"rerun `neglect run --out {run_dir}` to rebuild it")
    lm = interp.load_model(base, device=device_for(cfg))
    result = check_base(lm, build_world(cfg.world), cfg.eval.probe_C, cfg.eval.position)
    atomic_write_json(out, result)
    return result


def check_inputs(cfg: RunConfig) -> None:
    """Fail before any work on what can be checked up front: conditions, position, device,
    and that ``base_model`` names an existing directory or a resolvable hub id."""
    for condition in cfg.conditions:
        condition_documents(build_world(cfg.world), condition, 1, 0)  # fail fast on an unknown condition
    from interp.loading import check_device, model_config
    from interp.positions import as_position

    as_position(cfg.eval.position)
    if cfg.device is not None:
        check_device(cfg.device)
    if cfg.base_model:
        model_config(cfg.base_model)


def _remove_stale_temps(root: Path) -> None:
    """Temp files and directories left by a killed run (``.tmp-*``); they are never read."""
    if root.is_dir():
        for tmp in sorted(root.rglob(".tmp-*"), reverse=True):
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)


def _newest_mtime(paths) -> int:
    return max((p.stat().st_mtime_ns for p in paths if p.is_file()), default=0)


def train_stages(cfg: RunConfig, out_dir: str | Path, *,
                 dist: Single | None = None) -> tuple[RunDir, World, Path | str]:
    """The training part of the job (world, base model, every finetuning run), resumable;
    ``(run dir, world, base model)``. ``dist``: every rank calls this, training is
    data-parallel and rank 0 writes (``neglect finetune`` under torchrun)."""
    dist = dist or Single()
    check_inputs(cfg)
    run = RunDir(out_dir)

    def setup() -> World:
        _remove_stale_temps(run.root)
        return prepare(run, cfg)

    world = dist.on_writer(setup)
    if world is None:  # the other ranks build the same world without writing it
        world = build_world(cfg.world)
    torch.manual_seed(0)
    base = pretrain(run, cfg, world, dist=dist)
    for seed in cfg.seeds:
        for condition in cfg.conditions:
            finetune(run, cfg, world, base, condition, seed, dist=dist)
    return run, world, base


def run_pipeline(cfg: RunConfig, out_dir: str | Path) -> pd.DataFrame:
    """Run (or resume) the whole job and return the tidy metrics table."""
    run, world, base = train_stages(cfg, out_dir)
    evaluate_all(run, cfg, world, base)
    table = collect(run, cfg)
    from experiments.reporting.report import write_report
    report = run.report
    inputs = [run.metrics, run.pretrain_log, *run.train_logs()]
    if not report.is_file() or report.stat().st_mtime_ns < _newest_mtime(inputs):
        write_report(run.root)
    return table


def stability_protocol(cfg: RunConfig, out_dir: str | Path):
    """A :class:`~experiments.stability.protocol.Protocol` on a prepared run directory with its
    base model (pretrained here if needed), for running its phases one by one in a notebook."""
    from experiments.stability.protocol import Protocol, validate

    cfg = validate(cfg)
    run = RunDir(out_dir)
    world = prepare(run, cfg)
    torch.manual_seed(0)
    return Protocol(cfg, run, world, pretrain(run, cfg, world))


def run_stability(cfg: RunConfig, out_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Run (or resume) the protocol; returns the tables written to ``RUN/results/``
    (``stability``, ``stats``, ``seed_stats``, ``interpolation``) and writes the report."""
    from experiments.stability.protocol import INTERP_COLUMNS, UNANCHORED, Protocol, phase_checkpoints, tag, validate
    from experiments.stability.stats import per_seed_stats, summarise_seeds

    cfg = validate(cfg)
    run, world, base = train_stages(cfg, out_dir)
    proto = Protocol(cfg, run, world, base)
    evaluate_all(run, cfg, world, base)
    collect(run, cfg)
    proto.base_rows()
    work = [(w, s) for w in cfg.stability.weights for s in cfg.seeds]
    for seed in tqdm(cfg.seeds, desc="stability: unanchored evals", leave=False):
        proto.evaluate(UNANCHORED, seed, 1, checkpoint_steps(cfg))
    interp_frames = []
    for weight, seed in tqdm(work, desc=f"stability {cfg.stability.anchor}", leave=False):
        name = tag(cfg.stability.anchor, weight)
        proto.phase1(weight, seed)
        proto.evaluate(name, seed, 1, phase_checkpoints(cfg, 1))
        proto.phase2(weight, seed)
        proto.evaluate(name, seed, 2, phase_checkpoints(cfg, 2))
        interp_frames.append(proto.interpolation(weight, seed))
    table = proto.collect()
    layer = proto.probe_layer()
    seed_stats = per_seed_stats(table, layer, cfg.stability.threshold)
    stats = summarise_seeds(seed_stats).assign(layer=layer)
    interp_table = pd.concat(interp_frames, ignore_index=True)
    for col in INTERP_COLUMNS:
        if col not in interp_table:
            interp_table[col] = None
    interp_table = interp_table[INTERP_COLUMNS]
    atomic_write_csv(run.table("stability"), table)
    atomic_write_csv(run.table("stability_seed_stats"), seed_stats)
    atomic_write_csv(run.table("stability_stats"), stats)
    atomic_write_csv(run.table("interpolation"), interp_table)
    from experiments.reporting.report import write_report
    write_report(run.root)
    return {"stability": table, "stats": stats, "seed_stats": seed_stats, "interpolation": interp_table}
