"""The main job: world -> base model -> finetune per condition x seed -> evaluate every
checkpoint -> tidy tables -> report.

Every stage writes its outputs atomically and is skipped when they already exist, so a
killed run resumes where it stopped. The training stages also run data-parallel under torchrun
(``train_stages`` with a ``dist`` from experiments.training.distributed; ``neglect finetune``).
"""
from __future__ import annotations

import dataclasses
import json
import platform
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

import interp
from experiments.evaluation import belief, readout
from experiments.materials.conditions import condition_documents, template_words
from experiments.config import RunConfig, build_config, config_to_dict
from experiments.materials.corpus import CorpusSampler, all_words
from experiments.training.distributed import Single
from experiments.errors import UserError
from experiments.artifacts.rundir import (RunDir, atomic_save_pretrained, atomic_write_csv, atomic_write_json,
                                atomic_write_text, ensure_writable, hf_dir_problem, read_csv_or_none, warn)
from experiments.materials.statements import claim_statements, probe_statements
from experiments.training.toymodel import build_model, build_tokenizer
from experiments.training.lora import LoraSettings, add_lora
from experiments.training.loop import (OptimConfig, log_spaced_steps, packed_batches, padded_batches,
                                  tokenize_documents, train)
from experiments.materials.world import World, build_world

ID_COLUMNS = ["condition", "seed", "step", "layer", "claim", "metric", "value"]


def device_for(cfg: RunConfig) -> torch.device:
    return torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def library_versions() -> dict:
    """Versions of Python and of every library whose numbers can change the results."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("torch", "transformers", "numpy", "scikit-learn", "peft", "safetensors", "pandas", "tokenizers"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    out["torch"] = torch.__version__
    return out


def _read_json_artefact(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{str(path)!r} ({what}) is corrupt or truncated ({type(exc).__name__}); "
                        "restore it or start a new run directory") from exc


def prepare(run: RunDir, cfg: RunConfig) -> World:
    """Write config, versions and world description; refuse to mix configs in one run dir.

    ``versions.json`` records the seeds and library versions of the first invocation; a resume
    under other versions is appended to its ``resumed_with`` list (and warned about)."""
    ensure_writable(run.root)
    config = config_to_dict(cfg)
    config_path = run.path("config.json")
    if config_path.is_file():
        previous = _read_json_artefact(config_path, "the run's config")
        # Compared as configs, not dicts: keys added to the config since the run began
        # count as their defaults.
        if build_config(previous) != cfg:
            raise UserError(f"run directory {str(run.root)!r} holds a run with a different config; "
                            "use another --out or delete it")
    else:
        atomic_write_json(config_path, config)
    versions = library_versions()
    seeds = {"world": cfg.world.seed, "finetune": list(cfg.seeds), "torch_global": 0}
    versions_path = run.path("versions.json")
    try:
        recorded = json.loads(versions_path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        recorded = None  # missing, or damaged: written anew
    if not isinstance(recorded, dict) or "libraries" not in recorded:
        atomic_write_json(versions_path, {"libraries": versions, "seeds": seeds, "resumed_with": []})
    elif recorded["libraries"] != versions and versions not in recorded["resumed_with"]:
        changed = sorted(k for k in versions if recorded["libraries"].get(k) != versions[k])
        warn(f"resuming under other library versions than this run started with ({', '.join(changed)}); "
             "see versions.json")
        atomic_write_json(versions_path, {**recorded, "resumed_with": recorded["resumed_with"] + [versions]})
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


def pretrain(run: RunDir, cfg: RunConfig, world: World, *, dist: Single | None = None) -> Path:
    """Pretrain the toy model on the world's corpus (or use ``cfg.base_model``). ``dist``: train
    data-parallel (rank 0 writes)."""
    dist = dist or Single()
    if cfg.base_model:
        return Path(cfg.base_model) if Path(cfg.base_model).exists() else cfg.base_model
    if run.base_model.exists():
        problem = hf_dir_problem(run.base_model)
        if problem is None:
            return run.base_model
        warn(f"base model {str(run.base_model)!r} is damaged ({problem}); pretraining it again")
    torch.manual_seed(cfg.world.seed)
    tokenizer = build_tokenizer(all_words(world) | template_words())
    model = build_model(cfg.model, len(tokenizer), seed=cfg.world.seed).to(device_for(cfg))
    p = cfg.pretrain
    n_docs = max(2000, p.steps * p.batch_size * p.seq_len // 20)
    docs = CorpusSampler(world, seed=cfg.world.seed, mix=dataclasses.asdict(cfg.corpus)).documents(n_docs)
    batches = packed_batches(tokenize_documents(tokenizer, docs, cfg.model.max_len), p.batch_size, p.seq_len,
                             seed=cfg.world.seed)
    log = train(model, batches, OptimConfig(p.steps, p.lr, p.warmup, p.weight_decay, p.grad_clip), desc="pretrain",
                state_dir=run.path("train_state", "pretrain"), save_every=max(1, p.steps // 10), dist=dist)

    def finish() -> None:
        atomic_write_csv(run.path("results", "pretrain_log.csv"), pd.DataFrame(log))
        atomic_save_pretrained(run.base_model, model, tokenizer)  # written last: its presence means "done"
        shutil.rmtree(run.path("train_state", "pretrain"), ignore_errors=True)

    dist.on_writer(finish)
    return run.base_model


def checkpoint_steps(cfg: RunConfig) -> list[int]:
    return log_spaced_steps(cfg.finetune.steps, cfg.finetune.n_checkpoints)


def _save_checkpoint(path: Path, model, tokenizer) -> None:
    """Step 0 is the base model; an intact checkpoint from before a kill is kept (a resumed
    run reaches the same weights)."""
    if path.name != f"step_{0:06d}" and (not path.exists() or hf_dir_problem(path) is not None):
        atomic_save_pretrained(path, model, tokenizer)


def finetune(run: RunDir, cfg: RunConfig, world: World, base: Path | str, condition: str, seed: int, *,
             dist: Single | None = None) -> None:
    """Finetune a fresh copy of the base model on one condition's documents, saving every
    checkpoint (step 0 is the base model itself and is not copied). ``dist``: train
    data-parallel (rank 0 writes)."""
    dist = dist or Single()
    steps = [s for s in checkpoint_steps(cfg) if s > 0]
    log_path = run.path("results", "train_logs", f"{condition}_seed{seed}.csv")
    damaged = {s: hf_dir_problem(run.checkpoint(condition, seed, s)) for s in steps
               if run.checkpoint(condition, seed, s).exists()}
    damaged = {s: why for s, why in damaged.items() if why is not None}
    for s, why in damaged.items():
        warn(f"checkpoint {str(run.checkpoint(condition, seed, s))!r} is damaged ({why}); finetuning again")
    if (not damaged and read_csv_or_none(log_path) is not None
            and all(run.checkpoint(condition, seed, s).is_dir() for s in steps)):
        return
    f = cfg.finetune
    docs = condition_documents(world, condition, f.docs_per_claim, seed=seed)
    docs_path, docs_text = run.path("docs", f"{condition}.jsonl"), "".join(
        json.dumps({"text": d, "condition": condition}) + "\n" for d in docs)

    def write_docs() -> None:  # decided by the writer: another rank may look after it wrote
        if not docs_path.is_file() or docs_path.read_bytes() != docs_text.encode("utf-8"):
            atomic_write_text(docs_path, docs_text)

    dist.on_writer(write_docs)
    lm = interp.load_model(base, device=device_for(cfg))
    torch.manual_seed(seed)
    model, tokenizer = lm.model, lm.tokenizer
    token_docs = tokenize_documents(tokenizer, docs, cfg.model.max_len if not cfg.base_model else 512)
    batches = padded_batches(token_docs, f.batch_size, tokenizer.pad_token_id, seed=seed)
    if f.lora_rank > 0:
        model = add_lora(model, LoraSettings(rank=f.lora_rank, alpha=f.lora_alpha))
    state_dir = run.path("train_state", f"{condition}_seed{seed}")
    log = train(model, batches, OptimConfig(f.steps, f.lr, f.warmup, f.weight_decay, f.grad_clip),
                checkpoint_steps=steps, desc=f"finetune {condition} seed{seed}", state_dir=state_dir,
                save_every=max(1, f.steps // 10), dist=dist,
                on_checkpoint=lambda step, m: _save_checkpoint(run.checkpoint(condition, seed, step), m, tokenizer))

    def finish() -> None:
        atomic_write_csv(log_path, pd.DataFrame(log).assign(condition=condition, seed=seed))
        shutil.rmtree(state_dir, ignore_errors=True)

    dist.on_writer(finish)


class Evaluator:
    """Evaluates one checkpoint: behavioural belief plus per-layer probe readings."""

    def __init__(self, cfg: RunConfig, world: World):
        self.cfg, self.world = cfg, world
        self.statements = probe_statements(world)
        self.claim_stmts = claim_statements(world)
        self.fixed: list[readout.LayerProbe] | None = None

    def activations(self, lm) -> tuple[np.ndarray, np.ndarray]:
        kw = dict(position=self.cfg.eval.position, batch_size=self.cfg.eval.batch_size)
        acts = interp.residuals(lm, [s.text for s in self.statements], **kw).numpy()
        claim_acts = interp.residuals(lm, [c.text for c in self.claim_stmts], **kw).numpy()
        return acts, claim_acts

    def fit_fixed(self, lm) -> None:
        acts, _ = self.activations(lm)
        self.fixed = readout.fit_layer_probes(acts, self.statements, self.cfg.eval.probe_C)

    @property
    def incontext_condition(self) -> str:
        """Whose documents the base model's in-context rows use: ``negated`` (the paper's
        in-context control) when the run has it, else the first condition that is not ``plain``."""
        conds = self.cfg.conditions
        return "negated" if "negated" in conds else next((c for c in conds if c != "plain"), conds[0])

    def belief_rows(self, lm) -> list[dict]:
        """Per-claim and pooled belief rates of every question kind (``experiments.evaluation.belief``)."""
        questions = [q for claim in self.world.claims
                     for q in belief.world_questions(self.world, claim, tokenizer=lm.tokenizer)]
        return belief.belief_rows(belief.score_questions(lm, questions, self.cfg.eval.batch_size))

    def evaluate(self, lm, *, with_model_checks: bool = False) -> pd.DataFrame:
        """Rows for one checkpoint. ``with_model_checks`` (the base model) adds the in-context
        k sweep with its control questions (``incontext_<measure>_k<k>`` per claim)."""
        from experiments.evaluation import incontext

        rows = self.belief_rows(lm)
        rows.append({"metric": "heldout_qa", "value": belief.heldout_qa_accuracy(lm, self.world)})
        if with_model_checks:
            rows.append({"metric": "in_context_true_answer", "value": belief.in_context_true_answer(lm, self.world)})
            sweep = incontext.incontext_sweep(lm, self.world, self.incontext_condition, seed=self.cfg.seeds[0],
                                              batch_size=self.cfg.eval.batch_size)
            rows += incontext.incontext_rows(sweep)
        acts, claim_acts = self.activations(lm)
        refit = readout.fit_layer_probes(acts, self.statements, self.cfg.eval.probe_C)
        rows += readout.probe_rows(acts, self.statements, claim_acts, self.claim_stmts, refit, self.fixed)
        return pd.DataFrame(rows)


def evaluate_all(run: RunDir, cfg: RunConfig, world: World, base: Path | str) -> None:
    """Evaluate the base model (step 0 of every condition) and every saved checkpoint."""
    device = device_for(cfg)
    ev = Evaluator(cfg, world)
    base_lm = interp.load_model(base, device=device)
    ev.fit_fixed(base_lm)
    if read_csv_or_none(run.eval_file(None)) is None:
        atomic_write_csv(run.eval_file(None), ev.evaluate(base_lm, with_model_checks=True))
    todo = [(c, s, st) for s in cfg.seeds for c in cfg.conditions for st in checkpoint_steps(cfg) if st > 0
            and read_csv_or_none(run.eval_file(c, s, st)) is None]
    for condition, seed, step in tqdm(todo, desc="evaluate checkpoints", leave=False):
        lm = interp.load_model(run.checkpoint(condition, seed, step), device=device)
        atomic_write_csv(run.eval_file(condition, seed, step), ev.evaluate(lm))
    # The in-context control for every condition x seed (documents of that condition drawn with
    # that seed), on the base model (step 0) and on the last checkpoint of the same condition
    # and seed; one file per unit under evals/incontext/ (resume points), all in results/.
    from experiments.evaluation.incontext import incontext_sweep

    frames = []
    for seed in cfg.seeds:
        for condition in cfg.conditions:
            for step in sorted({0, checkpoint_steps(cfg)[-1]}):
                path = run.path("evals", "incontext", condition, f"seed{seed}", f"step_{step:06d}.csv")
                frame = read_csv_or_none(path)
                if frame is None:
                    lm = base_lm if step == 0 else interp.load_model(run.checkpoint(condition, seed, step), device=device)
                    frame = incontext_sweep(lm, world, condition, seed=seed,
                                            batch_size=cfg.eval.batch_size).assign(step=step)
                    atomic_write_csv(path, frame)
                frames.append(frame)
    atomic_write_csv(run.path("results", "incontext.csv"), pd.concat(frames, ignore_index=True))
    # Optional: free-text answers judged by an LLM (off unless NEGLECT_JUDGE_URL is set; see
    # experiments/judge.py), on the base model and each condition x seed's last checkpoint.
    from experiments.evaluation import judge

    judge_cfg = judge.judge_config_from_env()
    if judge_cfg is not None:
        client, judged = judge.ChatClient(judge_cfg), []
        last = checkpoint_steps(cfg)[-1]
        units = [(None, 0, 0)] + [(c, s, last) for s in cfg.seeds for c in cfg.conditions]
        for condition, seed, step in tqdm(units, desc="judge", leave=False):
            audit = run.path("judge", "base.jsonl" if condition is None else f"{condition}_seed{seed}_step{step}.jsonl")
            if audit.is_file():
                frame = pd.read_json(audit, lines=True)
            else:
                lm = base_lm if condition is None else interp.load_model(run.checkpoint(condition, seed, step),
                                                                          device=device)
                frame = judge.judge_belief(lm, judge.world_open_questions(world), client, audit)
            judged.append(frame.assign(condition=condition or "(base model)", seed=seed, step=step))
        atomic_write_csv(run.path("results", "judge.csv"), pd.concat(judged, ignore_index=True))


def _eval_table(run: RunDir, condition: str | None, seed: int = 0, step: int = 0) -> pd.DataFrame:
    frame = read_csv_or_none(run.eval_file(condition, seed, step))
    if frame is None:
        raise UserError(f"evaluation table {str(run.eval_file(condition, seed, step))!r} is missing or damaged; "
                        f"rerun `neglect run --out {run.root}` to recompute it")
    return frame


def collect(run: RunDir, cfg: RunConfig) -> pd.DataFrame:
    """All per-checkpoint rows as one tidy table (step 0 = the base model, repeated per
    condition and seed so every curve starts from it). Skipped (the table is read back) when
    ``results/metrics.csv`` is intact and newer than every evaluation table."""
    inputs = [run.eval_file(None)] + [run.eval_file(c, s, st) for s in cfg.seeds for c in cfg.conditions
                                      for st in checkpoint_steps(cfg) if st > 0]
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
    table = pd.concat(frames, ignore_index=True)
    for col in ID_COLUMNS:
        if col not in table:
            table[col] = None
    table = table[ID_COLUMNS]
    atomic_write_csv(run.metrics, table)
    return pd.read_csv(run.metrics)  # exactly what a resumed run reads back


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The config a run directory was made with."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"{str(run_dir)!r} is not a run directory (no config.json); make one with `neglect run --out`")
    return build_config(_read_json_artefact(path, "the run's config"))


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
    report = run.path("report.html")
    inputs = [run.metrics, run.path("results", "pretrain_log.csv"), *run.path("results", "train_logs").glob("*.csv")]
    if not report.is_file() or report.stat().st_mtime_ns < _newest_mtime(inputs):
        write_report(run.root)
    return table
