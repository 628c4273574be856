"""The training stages of a run: pretrain the toy base model, finetune it per condition x seed.

Each stage writes its outputs atomically and returns early when they already exist, so a killed
run resumes; both also run data-parallel under torchrun (``dist`` from
``experiments.training.distributed``).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import torch

import interp
from experiments.artifacts.atomic import atomic_write_csv, atomic_write_text
from experiments.artifacts.checksums import hf_dir_problem, read_csv_or_none
from experiments.artifacts.rundir import RunDir
from experiments.config import RunConfig
from experiments.errors import UserError, warn
from experiments.materials.base import Materials
from experiments.materials.conditions import template_words
from experiments.materials.corpus import CorpusSampler, all_words
from experiments.training import checkpoints
from experiments.training.distributed import Single
from experiments.training.lora import LoraSettings, add_lora
from experiments.training.loop import (OptimConfig, log_spaced_steps, packed_batches, padded_batches,
                                       tokenize_documents, train)
from experiments.training.toymodel import build_model, build_tokenizer


def device_for(cfg: RunConfig) -> torch.device:
    return torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def pretrain(run: RunDir, cfg: RunConfig, materials: Materials, *, dist: Single | None = None) -> Path | str:
    """The base model: ``cfg.base_model`` when set, else the toy model pretrained on the
    synthetic world's corpus. ``dist``: train data-parallel (rank 0 writes)."""
    dist = dist or Single()
    if cfg.base_model:
        return Path(cfg.base_model) if Path(cfg.base_model).exists() else cfg.base_model
    world = materials.world
    if world is None:
        raise UserError(f"{materials.kind} materials have no world to pretrain a toy model on; name the model to "
                        "finetune with --model (config key 'base_model')")
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
                state_dir=run.pretrain_state, save_every=max(1, p.steps // 10), dist=dist)

    def finish() -> None:
        atomic_write_csv(run.pretrain_log, pd.DataFrame(log))
        checkpoints.save_checkpoint(run.base_model, model, tokenizer)  # written last: its presence means "done"
        shutil.rmtree(run.pretrain_state, ignore_errors=True)

    dist.on_writer(finish)
    return run.base_model


def checkpoint_steps(cfg: RunConfig) -> list[int]:
    return log_spaced_steps(cfg.finetune.steps, cfg.finetune.n_checkpoints)


def save_checkpoint(path: Path, model, tokenizer) -> None:
    """Step 0 is the base model; an intact checkpoint from before a kill is kept (a resumed
    run reaches the same weights)."""
    if path.name != f"step_{0:06d}" and (not path.exists() or hf_dir_problem(path) is not None):
        checkpoints.save_checkpoint(path, model, tokenizer)


def finetune(run: RunDir, cfg: RunConfig, materials: Materials, base: Path | str, condition: str, seed: int, *,
             dist: Single | None = None) -> None:
    """Finetune a fresh copy of the base model on one condition's documents, saving every
    checkpoint (step 0 is the base model itself and is not copied). ``dist``: train
    data-parallel (rank 0 writes)."""
    dist = dist or Single()
    steps = [s for s in checkpoint_steps(cfg) if s > 0]
    log_path = run.train_log(condition, seed)
    damaged = {s: hf_dir_problem(run.checkpoint(condition, seed, s)) for s in steps
               if run.checkpoint(condition, seed, s).exists()}
    damaged = {s: why for s, why in damaged.items() if why is not None}
    for s, why in damaged.items():
        warn(f"checkpoint {str(run.checkpoint(condition, seed, s))!r} is damaged ({why}); finetuning again")
    if (not damaged and read_csv_or_none(log_path) is not None
            and all(run.checkpoint(condition, seed, s).is_dir() for s in steps)):
        return
    f = cfg.finetune
    docs = [d.text for d in materials.documents(condition, f.docs_per_claim, seed=seed)]
    docs_text = "".join(json.dumps({"text": d, "condition": condition}) + "\n" for d in docs)
    dist.on_writer(atomic_write_text, run.docs(condition), docs_text)  # left alone when unchanged
    lm = interp.load_model(base, device=device_for(cfg))
    torch.manual_seed(seed)
    model, tokenizer = lm.model, lm.tokenizer
    token_docs = tokenize_documents(tokenizer, docs, cfg.model.max_len if not cfg.base_model else 512)
    batches = padded_batches(token_docs, f.batch_size, tokenizer.pad_token_id, seed=seed)
    if f.lora_rank > 0:
        model = add_lora(model, LoraSettings(rank=f.lora_rank, alpha=f.lora_alpha))
    state_dir = run.finetune_state(condition, seed)
    log = train(model, batches, OptimConfig(f.steps, f.lr, f.warmup, f.weight_decay, f.grad_clip),
                checkpoint_steps=steps, desc=f"finetune {condition} seed{seed}", state_dir=state_dir,
                save_every=max(1, f.steps // 10), dist=dist,
                on_checkpoint=lambda step, m: save_checkpoint(run.checkpoint(condition, seed, step), m, tokenizer))

    def finish() -> None:
        atomic_write_csv(log_path, pd.DataFrame(log).assign(condition=condition, seed=seed))
        shutil.rmtree(state_dir, ignore_errors=True)

    dist.on_writer(finish)


