"""The main job: world -> base model -> finetune per condition x seed -> evaluate every
checkpoint -> tidy tables -> report; and the stability protocol on top of the same stages.

This module only orders the stages (``experiments.training.stages``,
``experiments.evaluation.evaluator``, ``experiments.evaluation.tables``,
``experiments.stability.protocol``); every stage writes its outputs atomically and is skipped
when they already exist, so a killed run resumes where it stopped. With ``jobs`` > 1 the
finetuning runs and then the checkpoint evaluations run in that many worker processes
(``experiments.training.parallel``). The training stages also run
data-parallel under torchrun (``train_stages`` with a ``dist`` from
experiments.training.distributed; ``neglect finetune``). The run's controls
(``results/controls.json``) are recomputed from the metrics table each time.

With ``worlds`` > 1, :func:`run_pipeline` runs the whole one-world job once per world, each in its
own run directory ``RUN/worlds/w<k>/`` (``experiments.evaluation.worlds``), then stacks their
tables and writes the run's controls and report at the top; the other entry points take one world.
"""
from __future__ import annotations

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
from experiments.evaluation.frames import screened_materials
from experiments.evaluation.tables import collect, item_reader
from experiments.materials import Materials, load_materials
from experiments.training.distributed import Single
from experiments.training.parallel import shared_workers
from experiments.training.sharded import sharded
from experiments.training.stages import (check_mix, checkpoint_steps, device_for, finetune, finetune_done,
                                         finetune_in_workers, pretrain, resolve_steps)


def prepare(run: RunDir, cfg: RunConfig, materials: Materials | None = None) -> Materials:
    """Record the run (``config.json``, ``versions.json``), load its study materials (unless
    given) and describe them (``world.json`` for the synthetic world, ``materials.json`` for
    imported ones)."""
    materials = materials or load_materials(cfg)  # first: bad materials are reported before anything is written
    record_run(run, cfg)
    write_json_if_changed(run.path("world.json" if materials.world is not None else "materials.json"),
                          materials.describe())
    return materials


def write_json_if_changed(path: Path, obj) -> None:
    """``obj`` as JSON into ``path`` atomically, unless the file already holds it (a resumed
    run leaves it, and its modification time, alone)."""
    try:
        unchanged = json.loads(path.read_text()) == json.loads(json.dumps(obj))
    except (OSError, ValueError, UnicodeDecodeError):
        unchanged = False
    if not unchanged:
        atomic_write_json(path, obj)


def check_settings(cfg: RunConfig) -> tuple:
    """The eval settings check-base figures depend on: ``(probe_C, position, probe, belief_frames)``."""
    return cfg.eval.probe_C, cfg.eval.position, cfg.eval.probe, cfg.eval.belief_frames


def check_base_model(run_dir: str | Path) -> dict:
    """Base-model preconditions of a run (computed once, then read from results/check_base.json).

    Parameters
    ----------
    run_dir : str or Path
        A run directory from ``neglect run``.

    Returns
    -------
    dict
        The figures of ``experiments.evaluation.checks.check_base``; for a run of several
        worlds, ``{"w0": figures, "w1": ...}``, one per world (each world's own
        ``worlds/w<k>/results/check_base.json``).
    """
    from experiments.evaluation.checks import check_base

    run = RunDir(run_dir)
    out = run.path("results", "check_base.json")
    cfg = load_run_config(run_dir)
    if cfg.worlds > 1:
        return {f"w{k}": check_base_model(run.world_dir(k)) for k in range(cfg.worlds)}
    base = cfg.base_model or run.base_model
    if not cfg.base_model and not run.base_model.exists():
        raise UserError(f"{str(run_dir)!r} has no base model yet; run `neglect run --out {run_dir}` first")
    if not cfg.base_model and hf_dir_problem(run.base_model):  # figures of a model no longer there are not given
        raise UserError(f"base model {str(run.base_model)!r} is damaged ({hf_dir_problem(run.base_model)}); "
                        f"rerun `neglect run --out {run_dir}` to rebuild it")
    if out.is_file():
        try:
            return json.loads(out.read_text())
        except (ValueError, UnicodeDecodeError):
            warn(f"{str(out)!r} is damaged; recomputing it")
    materials = load_materials(cfg)
    if materials.world is None:
        raise UserError(f"check-base needs the synthetic world's ground truth; {str(run_dir)!r} was run on "
                        f"{materials.kind} materials")
    shipped = run.base_model / "provenance.json"  # a shipped base model comes with its figures
    if not cfg.base_model and shipped.is_file():
        provenance = json.loads(shipped.read_text())
        if provenance.get("check_settings") == list(check_settings(cfg)) and "check_base" in provenance:
            atomic_write_json(out, provenance["check_base"])
            return provenance["check_base"]
    lm = interp.load_model(base, device=device_for(cfg))
    result = check_base(lm, materials.world, *check_settings(cfg))
    atomic_write_json(out, result)
    return result


def evaluation_materials(run: RunDir, cfg: RunConfig, materials: Materials, label: str = "") -> Materials:
    """``materials`` as the run evaluates them: with ``eval.belief_frames`` "judged" on the
    synthetic world, screened by the base model's check-base figures (computed here once, on the
    base model, before any checkpoint is evaluated; ``experiments.evaluation.frames``). A claim the
    screen leaves without a statement frame is named in a warning line; when it leaves none to
    any claim, a ``UserError``; ``label`` (e.g. "world 1: ") starts both lines."""
    if cfg.eval.belief_frames != "judged" or materials.world is None:
        return materials
    check_base_model(run.root)
    screened = screened_materials(materials, cfg, run.root)
    left = {s.claim for s in screened.claim_statements()}
    unread = [c.name for c in materials.claims if c.name not in left]
    if unread:
        message = (f"{label}the belief-frame screen (eval.belief_frames='judged') leaves {', '.join(unread)} no statement "
                   f"frame: the base model judges none of the frames of their relation (`neglect check-base {run.root}`: "
                   "unjudged_verdict_by_frame)")
        if not left:
            raise UserError(message + "; use eval.belief_frames='all' or a base model that judges its facts")
        warn(message + "; those claims get no verdict item and no probe reading")
    return screened


def check_inputs(cfg: RunConfig, materials: Materials) -> None:
    """Fail before any work on what can be checked up front: conditions, position, device,
    that imported materials come with a model (and background documents / instruct examples
    when ``finetune.background_fraction`` / ``finetune.instruct_fraction`` > 0), that
    ``base_model`` names an existing directory or a resolvable hub id, and (when it is on) that
    the judge answers."""
    if materials.world is None and not cfg.base_model:
        raise UserError(f"{materials.kind} materials need a model to finetune; name it with --model "
                        "(config key 'base_model'): a hub id or a local directory")
    for condition in cfg.conditions:
        materials.check_condition(condition)  # fail fast on an unknown condition
    check_mix(cfg, materials)
    from interp.loading import check_device, model_config
    from interp.positions import as_position

    as_position(cfg.eval.position)
    if cfg.device is not None:
        check_device(cfg.device)
    if cfg.base_model:
        model_config(cfg.base_model)
    from experiments.evaluation.judge import preflight

    preflight(materials)  # the optional judge: settings, pack judge prompts, one request


def _remove_stale_temps(root: Path) -> None:
    """Temp files and directories left by a killed run (``.tmp-*``); they are never read."""
    if root.is_dir():
        for tmp in sorted(root.rglob(".tmp-*"), reverse=True):
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)


def _newest_mtime(paths) -> int:
    return max((p.stat().st_mtime_ns for p in paths if p.is_file()), default=0)


def checked_config(cfg: RunConfig, materials: Materials | None = None) -> tuple[RunConfig, Materials]:
    """``(config, materials)`` after :func:`check_inputs`, with ``finetune.steps`` derived from
    the data when ``finetune.epochs`` is set (``stages.resolve_steps``): the config every stage
    and the run's config.json use."""
    materials = materials or load_materials(cfg)
    check_inputs(cfg, materials)
    return resolve_steps(cfg, materials), materials


def train_stages(cfg: RunConfig, out_dir: str | Path, *, dist: Single | None = None,
                 materials: Materials | None = None, label: str = "") -> tuple[RunDir, Materials, Path | str]:
    """The training part of the job (materials, base model, every finetuning run), resumable;
    ``(run dir, materials, base model)``, the materials screened for evaluation in one process
    (:func:`evaluation_materials`, between pretraining and finetuning). ``dist``: every rank calls this, training is
    data-parallel and rank 0 writes (``neglect finetune`` under torchrun). Without ``materials``,
    ``cfg`` is checked and resolved by :func:`checked_config` here; callers that pass
    ``materials`` have done that already (and go on to evaluate with the same config). ``label``
    starts the screen's warning line (a world of several: "world k: ")."""
    dist = dist or Single()
    one_world(cfg, "neglect finetune")
    if materials is None:
        cfg, materials = checked_config(cfg)
    run = RunDir(out_dir)
    if cfg.finetune.parallel == "fsdp" and not all(finetune_done(run, cfg, condition, seed)
                                                    for seed in cfg.seeds for condition in cfg.conditions):
        sharded(dist)  # the one-line error for one process now, before pretraining

    def setup() -> None:
        _remove_stale_temps(run.root)
        prepare(run, cfg, materials)

    dist.on_writer(setup)
    torch.manual_seed(0)
    base = pretrain(run, cfg, materials, dist=dist, on_track=judgement_tracking(run, cfg, materials))
    if dist.world_size == 1:  # the belief-frame screen: decided on the base model, refused before any finetuning
        materials = evaluation_materials(run, cfg, materials, label)
    if cfg.jobs > 1 and dist.world_size == 1:
        finetune_in_workers(run, cfg, materials, base)
        return run, materials, base
    if cfg.jobs > 1 and dist.is_writer:
        warn(f"config key 'jobs' ({cfg.jobs}) is ignored under torchrun: each finetuning run is data-parallel "
             "over its processes")
    for seed in cfg.seeds:
        for condition in cfg.conditions:
            finetune(run, cfg, materials, base, condition, seed, dist=dist)
    return run, materials, base


def one_world(cfg: RunConfig, command: str) -> None:
    """One-line error when ``command`` is asked for several worlds (only ``neglect run`` runs them)."""
    if cfg.worlds > 1:
        raise UserError(f"config key 'worlds' is {cfg.worlds} but `{command}` works on one world; run the worlds with "
                        "`neglect run`, or set worlds = 1")


def judgement_tracking(run: RunDir, cfg: RunConfig, materials: Materials):
    """The pretraining stage's ``on_track`` callback (``pretrain.track_every``): the judgement of
    judged and never-judged facts into ``results/pretrain_tracking.csv``, screened at
    ``pretrain.screen_step`` (``experiments/training/screening.py``); None when off or when the
    world judges everything."""
    from experiments.evaluation.tracking import judgement_tracker
    from experiments.training.screening import check_not_screened_out, screened

    world = materials.world
    if not cfg.pretrain.track_every or world is None or not world.judge_heldout:
        if cfg.pretrain.screen_step:
            raise UserError("pretrain.screen_step screens on tracked measures, and this run tracks none "
                            "(pretrain.track_every is 0, or the world has no never-judged facts)")
        return None
    check_not_screened_out(cfg.pretrain, run.pretrain_screened)
    track = judgement_tracker(run.table("pretrain_tracking"), world, cfg.pretrain.batch_size * cfg.pretrain.seq_len)
    return screened(track, cfg.pretrain, run.pretrain_screened)


def pretrain_stage(cfg: RunConfig, out_dir: str | Path) -> Path:
    """Only the base model of a synthetic-world run (``neglect pretrain``), resumable."""
    one_world(cfg, "neglect pretrain")
    materials = load_materials(cfg)
    if materials.world is None or cfg.base_model:
        raise UserError("`neglect pretrain` pretrains the toy model on the synthetic world; with --model, "
                        "--claims or --docs there is nothing to pretrain")
    run = RunDir(out_dir)
    _remove_stale_temps(run.root)
    prepare(run, cfg, materials)
    return Path(pretrain(run, cfg, materials, on_track=judgement_tracking(run, cfg, materials)))


def run_pipeline(cfg: RunConfig, out_dir: str | Path) -> pd.DataFrame:
    """Run (or resume) the whole job and return the tidy metrics table; also writes
    ``results/controls.json`` (``experiments.evaluation.controls``, from the table), on the
    synthetic world ``results/check_base.json`` (the base model's preconditions, with a warning
    line when one fails) and the report.

    Parameters
    ----------
    cfg : RunConfig
    out_dir : str or Path
        The run directory (new, or from an earlier run of the same config: resumed).

    Returns
    -------
    DataFrame
        ``results/metrics.csv``: ``experiments.evaluation.tables.ID_COLUMNS``, and with
        ``cfg.worlds`` > 1 a ``world`` column first (each world's run directory is
        ``out_dir/worlds/w<k>/``; see ``experiments.evaluation.worlds``).
    """
    cfg, materials = checked_config(cfg)
    if cfg.worlds > 1:
        return _run_worlds(cfg, out_dir)
    return _run_world(cfg, materials, out_dir)


def _run_world(cfg: RunConfig, materials: Materials, out_dir: str | Path, label: str = "",
               report: bool = True) -> pd.DataFrame:
    """:func:`run_pipeline` on one world (``cfg`` checked); ``label`` starts its warning lines;
    ``report=False`` leaves out the world's own report (a several-world run writes one at the top)."""
    from experiments.evaluation.controls import compute_controls

    with shared_workers():  # jobs > 1: the two stages' units share one pool of workers
        run, materials, base = train_stages(cfg, out_dir, materials=materials, label=label)  # screened
        evaluate_all(run, cfg, materials, base)
    if materials.world is not None:  # the base model's preconditions (results/check_base.json), one warning line
        from experiments.evaluation.preconditions import failure_line

        line = failure_line(check_base_model(run.root))
        if line:
            warn(label + line + " (see `neglect check-base`; the report marks it)")
    table = collect(run, cfg)
    write_json_if_changed(run.controls, compute_controls(table, cfg.conditions, items=item_reader(run)))
    if report:
        _report_if_stale(run, [run.metrics, run.pretrain_log, *run.train_logs()])
    return table


def _run_worlds(cfg: RunConfig, out_dir: str | Path) -> pd.DataFrame:
    """:func:`run_pipeline` for ``cfg.worlds`` > 1: every world's whole job in its own run
    directory (each resumable), then the stacked tables, the controls and the report at the top
    (the worlds get no report of their own: their figures' activations took ~15 s a world)."""
    from experiments.evaluation.controls import compute_controls
    from experiments.evaluation.worlds import stack_world_tables, world_runs, worlds_index

    run = RunDir(out_dir)
    _remove_stale_temps(run.root)
    record_run(run, cfg)
    write_json_if_changed(run.worlds_index, worlds_index(cfg))
    for k, world_cfg, world_run in world_runs(cfg, run.root):
        materials = load_materials(world_cfg)
        _run_world(resolve_steps(world_cfg, materials), materials, world_run.root, label=f"world {k}: ",
                   report=False)  # one report at the top; `neglect report RUN/worlds/w<k>` makes a world's own
    table = stack_world_tables(run, cfg, "metrics")
    stack_world_tables(run, cfg, "incontext", required=False)
    write_json_if_changed(run.controls, compute_controls(table, cfg.conditions, items=item_reader(run, cfg.worlds)))
    _report_if_stale(run, [run.metrics])
    return table


def _report_if_stale(run: RunDir, inputs: list[Path]) -> None:
    """Write the run's report unless it is newer than every one of ``inputs``."""
    from experiments.reporting.report import write_report

    if not run.report.is_file() or run.report.stat().st_mtime_ns < _newest_mtime(inputs):
        write_report(run.root)


def stability_protocol(cfg: RunConfig, out_dir: str | Path):
    """A :class:`~experiments.stability.protocol.Protocol` on a prepared run directory with its
    base model (pretrained here if needed), for running its phases one by one in a notebook."""
    from experiments.stability.protocol import Protocol, validate

    one_world(cfg, "neglect stability")
    cfg = validate(cfg)
    run = RunDir(out_dir)
    materials = prepare(run, cfg)
    torch.manual_seed(0)
    base = pretrain(run, cfg, materials, on_track=judgement_tracking(run, cfg, materials))
    return Protocol(cfg, run, evaluation_materials(run, cfg, materials), base)


def run_stability(cfg: RunConfig, out_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Run (or resume) the protocol; returns the tables written to ``RUN/results/``
    (``stability``, ``stats``, ``seed_stats``, ``interpolation``) and writes the report."""
    from experiments.stability.protocol import INTERP_COLUMNS, UNANCHORED, Protocol, phase_checkpoints, tag, validate
    from experiments.stability.stats import per_seed_stats, summarise_seeds

    one_world(cfg, "neglect stability")
    cfg, materials = checked_config(validate(cfg))
    with shared_workers():
        run, materials, base = train_stages(cfg, out_dir, materials=materials)  # screened materials
        proto = Protocol(cfg, run, materials, base)
        evaluate_all(run, cfg, materials, base)
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
