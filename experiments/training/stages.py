"""The training stages of a run: pretrain the toy base model, finetune it per condition x seed.

Each stage writes its outputs atomically and returns early when they already exist, so a killed
run resumes; both also run data-parallel under torchrun (``dist`` from
``experiments.training.distributed``), finetuning also sharded (FSDP2, ``finetune.parallel``).
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

import interp
from experiments.artifacts.atomic import atomic_write_csv, atomic_write_json, atomic_write_text, write_dir
from experiments.artifacts.checksums import hf_dir_problem, read_csv_or_none
from experiments.artifacts.rundir import RunDir
from experiments.config import RunConfig, pretraining_seed
from experiments.errors import UserError, warn
from experiments.materials.base import Materials
from experiments.materials.conditions import LabelledDocument, template_words
from experiments.materials.corpus import all_words
from experiments.training import checkpoints
from experiments.training.corpus_tokens import cached_corpus_tokens
from experiments.training.distributed import Single
from experiments.training.sharded import sharded
from experiments.training.lora import LoraSettings, add_lora
from experiments.training.trainable import restrict_trainable
from experiments.training.batches import fit_context, tokenize_rows
from experiments.training.loop import OptimConfig, log_spaced_steps, padded_batches, train
from experiments.training.schedules import log_spaced_from
from experiments.training.shipped import shipped_base_for
from experiments.training.stream_batches import StreamBatches
from experiments.training.determinism import use_deterministic_kernels
from experiments.training.toymodel import build_model, build_tokenizer


def device_for(cfg: RunConfig) -> torch.device:
    return torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))


# On one H200 (benchmarks/training_speed.md) a step of the standard toy model at batch 128 took
# 26 ms eager, 12 ms compiled and 5 ms compiled with CUDA graphs, against 12-25 s of compilation:
# compiling pays for itself only after about 1,000-1,500 steps.
COMPILE_MIN_STEPS = 2000


def compile_setting(wanted: bool | None, device: torch.device, steps: int, world_size: int = 1) -> bool | str:
    """What ``train(compile=...)`` gets: False on CPU or for short runs when ``wanted`` is None;
    when compiling on CUDA in one process, the "reduce-overhead" mode (CUDA graphs: the toy
    model's steps are bound by kernel launches); plain ``torch.compile`` under DDP or on CPU."""
    if wanted is None:
        wanted = device.type == "cuda" and steps >= COMPILE_MIN_STEPS
    if wanted and device.type == "cuda" and world_size == 1:
        return "reduce-overhead"
    return bool(wanted)


def pretraining_documents(cfg: RunConfig) -> int:
    """How many corpus documents pretraining draws from: about 1.2 epochs of its tokens, times
    ``pretrain.corpus_fraction`` (a smaller corpus is generated faster and seen more often)."""
    p = cfg.pretrain
    return max(2000, int(p.steps * p.batch_size * p.seq_len // 20 * p.corpus_fraction))


def tracking_steps(steps: int, every: int) -> list[int]:
    """The pretraining steps at which ``on_track`` runs: every ``every`` steps and the last."""
    return sorted(set(range(every, steps + 1, every)) | {steps}) if every > 0 else []


def pretrain(run: RunDir, cfg: RunConfig, materials: Materials, *, dist: Single | None = None,
             on_track: Callable[[int, object], None] | None = None) -> Path | str:
    """The base model: ``cfg.base_model`` when set, else the toy model pretrained on the
    synthetic world's corpus. ``dist``: train data-parallel (rank 0 writes). ``on_track(step,
    model)`` runs every ``pretrain.track_every`` steps (``experiments.evaluation.tracking``).

    The corpus is generated and tokenized once into a token array in ``RUN/corpus/`` (reused
    by a resumed run); batches are cut from it on the device (``StreamBatches``), so a step
    waits for no host work. ``cfg.pretrain.compile`` compiles the forward + loss (None: on CUDA
    when there are at least ``COMPILE_MIN_STEPS`` steps, where compiling pays; see ``compile_setting``)."""
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
    shipped = shipped_base_for(cfg)
    if shipped is not None:
        dist.on_writer(copy_shipped, shipped, run.base_model)
        return run.base_model
    seed = pretraining_seed(cfg)
    torch.manual_seed(seed)
    device = device_for(cfg)
    use_deterministic_kernels(cfg.deterministic and device.type == "cuda")
    tokenizer = build_tokenizer(all_words(world) | template_words())
    p = cfg.pretrain
    corpus = (run, world, dataclasses.asdict(cfg.corpus), seed, pretraining_documents(cfg), tokenizer,
              cfg.model.max_len)
    written = dist.on_writer(cached_corpus_tokens, *corpus)  # rank 0 writes it, the others then map it
    tokens, offsets = written if written is not None else cached_corpus_tokens(*corpus)
    model = build_model(cfg.model, len(tokenizer), seed=seed)
    if p.init_from:
        load_initial_weights(model, tokenizer, p.init_from)
    model = model.to(device)
    batches = StreamBatches(tokens, offsets, p.batch_size, p.seq_len, seed=seed, device=device)
    if p.screen_step and dist.world_size > 1:
        raise UserError("pretrain.screen_step works in a one-process pretraining run (it stops on rank 0's tracking)")
    compile = compile_setting(p.compile, device, p.steps, dist.world_size)
    saves = -(-max(1, p.steps // 10) // p.log_every) * p.log_every  # a multiple of log_every
    track = tracking_steps(p.steps, p.track_every) if on_track is not None else []
    log = train(model, batches, OptimConfig(p.steps, p.lr, p.warmup, p.weight_decay, p.grad_clip), desc="pretrain",
                state_dir=run.pretrain_state, save_every=saves, dist=dist, compile=compile,
                log_every=p.log_every, checkpoint_steps=track, on_checkpoint=on_track)

    def finish() -> None:
        atomic_write_csv(run.pretrain_log, pd.DataFrame(log))
        checkpoints.save_checkpoint(run.base_model, model, tokenizer)  # written last: its presence means "done"
        shutil.rmtree(run.pretrain_state, ignore_errors=True)

    dist.on_writer(finish)
    return run.base_model


def load_initial_weights(model, tokenizer, path: str) -> None:
    """Load the weights of a saved base model into ``model`` (``pretrain.init_from``): one
    pretrained on the same world (the same vocabulary) with the same model shape, else a
    UserError naming what differs."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    where = f"pretrain.init_from {path!r}"
    problem = hf_dir_problem(Path(path)) if Path(path).is_dir() else "no such directory"
    if problem:
        raise UserError(f"{where} is not a saved base model ({problem})")
    if AutoTokenizer.from_pretrained(path).get_vocab() != tokenizer.get_vocab():
        raise UserError(f"{where} was pretrained on another world (its vocabulary differs); continue only a "
                        "base model of this run's world")
    saved = AutoConfig.from_pretrained(path)
    shape = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings")
    differs = [f"{k} {getattr(saved, k, None)} there, {getattr(model.config, k)} here" for k in shape
               if getattr(saved, k, None) != getattr(model.config, k)]
    if differs:
        raise UserError(f"{where} has another model shape ({'; '.join(differs)}); set model.* to match it")
    model.load_state_dict(AutoModelForCausalLM.from_pretrained(path).state_dict())


def copy_shipped(shipped: Path, dest: Path) -> None:
    """Copy a shipped base model into the run (atomically: a complete copy or none)."""
    print(f"base model: the shipped {shipped.name!r} (pretrained as its provenance.json says), copied to {dest}")
    write_dir(dest, lambda staging: shutil.copytree(shipped, staging, dirs_exist_ok=True,
                                                    ignore=shutil.ignore_patterns(".neglect_checksums.json")))


def checkpoint_steps(cfg: RunConfig) -> list[int]:
    """The finetuning checkpoint steps, step 0 (the base model) first: ``finetune.n_checkpoints``
    log-spaced steps, from step ``finetune.first_checkpoint`` when it is set."""
    f = cfg.finetune
    if f.first_checkpoint > 0:
        return log_spaced_from(f.steps, f.n_checkpoints - 1, f.first_checkpoint)
    return log_spaced_steps(f.steps, f.n_checkpoints)


def save_checkpoint(path: Path, model, tokenizer, *, as_adapter: bool = False) -> None:
    """Step 0 is the base model; an intact checkpoint from before a kill is kept (a resumed
    run reaches the same weights). ``as_adapter``: a LoRA model's adapter only."""
    if path.name != f"step_{0:06d}" and (not path.exists() or hf_dir_problem(path) is not None):
        checkpoints.save_checkpoint(path, model, tokenizer, as_adapter=as_adapter)


def saves_adapters(cfg: RunConfig) -> bool:
    """Whether finetuning checkpoints are peft adapters (``finetune.checkpoint_format``; "auto":
    for LoRA on a --model run) rather than full models."""
    f = cfg.finetune
    if f.lora_rank <= 0:
        return False
    return f.checkpoint_format == "adapter" or (f.checkpoint_format == "auto" and bool(cfg.base_model))


BACKGROUND_SEED_OFFSET = 1_000_003  # background documents of finetuning seed s: seed s + this (docs: seed s)
INSTRUCT_SEED_OFFSET = 2_000_003  # instruct examples of finetuning seed s: seed s + this


def background_count(n_claim_docs: int, fraction: float, other: float = 0.0) -> int:
    """How many background documents make them ``fraction`` of a finetuning set that has
    ``n_claim_docs`` claim documents and a share ``other`` of other mixed-in data (instruct
    examples): ``round(n * f / (1 - f - other))``. The same formula counts the instruct
    examples (``fraction`` = instruct_fraction, ``other`` = background_fraction)."""
    return round(n_claim_docs * fraction / (1 - fraction - other))


def check_background(cfg: RunConfig, materials: Materials) -> None:
    """One-line error when ``finetune.background_fraction`` > 0 but the materials have no
    background documents (imported materials without ``materials.background``)."""
    if cfg.finetune.background_fraction > 0 and not materials.background_documents(1, seed=0):
        raise UserError(f"config key 'finetune.background_fraction' is {cfg.finetune.background_fraction!r} but the "
                        f"{materials.kind} materials have no background documents; set materials.background to a "
                        "JSONL of {\"text\": ...} lines, or finetune.background_fraction to 0")


def check_instruct(cfg: RunConfig, materials: Materials) -> None:
    """One-line error when ``finetune.instruct_fraction`` > 0 but the materials have no
    instruct examples (imported materials without ``materials.instruct``; the synthetic world)."""
    if cfg.finetune.instruct_fraction > 0 and not materials.instruct_examples(1, seed=0):
        raise UserError(f"config key 'finetune.instruct_fraction' is {cfg.finetune.instruct_fraction!r} but the "
                        f"{materials.kind} materials have no instruct examples; set materials.instruct to a JSONL of "
                        "{\"messages\": [...]} lines, or finetune.instruct_fraction to 0")


def check_mix(cfg: RunConfig, materials: Materials) -> None:
    """:func:`check_background` and :func:`check_instruct`."""
    check_background(cfg, materials)
    check_instruct(cfg, materials)


def document_row(doc: LabelledDocument, condition: str, source: str, loss_mask: tuple[str, ...]) -> dict:
    """A finetuning row: ``{"text", ...}`` with ``"loss_mask"`` (the character ranges of the
    spans labelled in ``loss_mask``) when there are any, or a chat row ``{"messages", ...}``."""
    if doc.messages is not None:
        return {"messages": [dict(m) for m in doc.messages], "condition": condition, "source": source}
    row = {"text": doc.text, "condition": condition, "source": source}
    masked = sorted({(sp.start, sp.end) for sp in doc.spans if sp.label in loss_mask})
    if masked:
        row["loss_mask"] = [list(r) for r in masked]
    return row


def finetuning_documents(cfg: RunConfig, materials: Materials, condition: str, seed: int) -> list[dict]:
    """The examples one finetuning run trains on: ``finetune.docs_per_claim`` documents per
    claim of ``condition`` (``materials.documents(..., seed=seed)``), and with
    ``finetune.background_fraction`` b > 0 and/or ``finetune.instruct_fraction`` i > 0,
    :func:`background_count` background documents (``materials.background_documents`` with seed
    ``seed + BACKGROUND_SEED_OFFSET``) and instruct examples (``materials.instruct_examples``
    with seed ``seed + INSTRUCT_SEED_OFFSET``) shuffled in among them, so that shares b and i
    of the examples are background text (trained with full loss, like the claim documents) and
    chat rows (trained on their assistant turns).

    Parameters
    ----------
    cfg : RunConfig
    materials : Materials
    condition : str
    seed : int
        The finetuning seed.

    Returns
    -------
    list of dict
        ``{"text", "condition", "source": "claim" | "background"}`` (plus ``"loss_mask"``:
        ``[[start, end], ...]``, the character ranges kept out of the loss, those of the spans
        labelled in ``finetune.loss_mask``) or chat rows ``{"messages", "condition", "source":
        "instruct" | "claim"}``, in training-set order (the rows of ``RUN/docs/<condition>_seed<k>.jsonl``);
        with b = i = 0 exactly the claim documents, in order.
    """
    f = cfg.finetune
    docs = [document_row(d, condition, "claim", f.loss_mask)
            for d in materials.documents(condition, f.docs_per_claim, seed=seed)]
    n_background = background_count(len(docs), f.background_fraction, f.instruct_fraction)
    n_instruct = background_count(len(docs), f.instruct_fraction, f.background_fraction)
    if n_background == 0 and n_instruct == 0:
        return docs
    if n_background:
        check_background(cfg, materials)
        docs += [{"text": text, "condition": condition, "source": "background"}
                 for text in materials.background_documents(n_background, seed=seed + BACKGROUND_SEED_OFFSET)]
    if n_instruct:
        check_instruct(cfg, materials)
        docs += [document_row(d, condition, "instruct", f.loss_mask)
                 for d in materials.instruct_examples(n_instruct, seed=seed + INSTRUCT_SEED_OFFSET)]
    random.Random(f"background-mix-{seed}").shuffle(docs)
    return docs


def _damaged_checkpoints(run: RunDir, cfg: RunConfig, condition: str, seed: int) -> dict[int, str]:
    """step -> why, for the saved checkpoints of one finetuning run that fail their checksums."""
    damaged = {s: hf_dir_problem(run.checkpoint(condition, seed, s)) for s in checkpoint_steps(cfg)
               if s > 0 and run.checkpoint(condition, seed, s).exists()}
    return {s: why for s, why in damaged.items() if why is not None}


def finetune_done(run: RunDir, cfg: RunConfig, condition: str, seed: int, damaged: dict | None = None) -> bool:
    """Whether one finetuning run is finished: its training log and every checkpoint are there
    and intact (``finetune`` then returns at once)."""
    damaged = _damaged_checkpoints(run, cfg, condition, seed) if damaged is None else damaged
    return (not damaged and read_csv_or_none(run.train_log(condition, seed)) is not None
            and all(run.checkpoint(condition, seed, s).is_dir() for s in checkpoint_steps(cfg) if s > 0))


def documents_text(rows: list[dict]) -> str:
    """``RUN/docs/<condition>_seed<k>.jsonl``: the rows of :func:`finetuning_documents`, one JSON a line."""
    return "".join(json.dumps(row) + "\n" for row in rows)


def resolve_steps(cfg: RunConfig, materials: Materials) -> RunConfig:
    """``cfg`` with ``finetune.steps`` derived from the data when ``finetune.epochs`` > 0:
    ``ceil(epochs * n / batch_size)``, ``n`` the largest training set (claim documents +
    background + instruct examples) of the run's conditions. Unchanged otherwise. Idempotent."""
    f = cfg.finetune
    if f.epochs <= 0:
        return cfg
    sizes = {}
    for condition in cfg.conditions:
        n_claim = len(materials.documents(condition, f.docs_per_claim, seed=0))
        sizes[condition] = (n_claim + background_count(n_claim, f.background_fraction, f.instruct_fraction)
                            + background_count(n_claim, f.instruct_fraction, f.background_fraction))
    steps = max(1, math.ceil(f.epochs * max(sizes.values()) / f.batch_size))
    return dataclasses.replace(cfg, finetune=dataclasses.replace(f, steps=steps))


def context_length(lm, cfg: RunConfig) -> int:
    """The longest training example in tokens: ``finetune.max_len`` if set, else the model's
    context (``max_position_embeddings`` or its kin), or the tokenizer's ``model_max_length``
    when smaller; 512 when neither says."""
    if cfg.finetune.max_len > 0:
        return cfg.finetune.max_len
    sizes = [lm.max_context, getattr(lm.tokenizer, "model_max_length", None)]
    sizes = [n for n in sizes if isinstance(n, int) and 0 < n < 10**8]
    return min(sizes) if sizes else 512


def training_examples(rows: list[dict], tokenizer, context: int, policy: str, condition: str,
                      docs_file: Path | None = None) -> list:
    """Tokenized rows (``batches.tokenize_rows``: loss masks applied, plain documents ended by the
    document end) that fit ``context``: a longer example is a one-line error (``policy``
    "refuse": the count, the longest, the first such line of the docs file, or row when there is
    none) or is split into pieces with one warning line ("split"). Never silently cut. Every
    finetuning run and the stability protocol's phases train on what this gives."""
    examples = tokenize_rows(tokenizer, rows)
    fitted, n_long, pieces = fit_context(examples, context, policy)
    if n_long and policy == "refuse":
        lengths = [len(ex.ids) for ex in examples]
        first = next(i for i, n in enumerate(lengths) if n > context)
        where = f"line {first + 1} of {docs_file}" if docs_file is not None else f"row {first + 1}"
        raise UserError(f"{n_long} of {len(rows)} finetuning examples of condition {condition!r} are longer than the "
                        f"context of {context} tokens (longest {max(lengths)}; first: {where}); "
                        "shorten them, or set finetune.long_documents=\"split\" to train on them in pieces "
                        "(finetune.max_len sets the context)")
    if n_long:
        warn(f"{n_long} of {len(rows)} finetuning examples of condition {condition!r} are longer than the context of "
             f"{context} tokens; split into {pieces} pieces (finetune.long_documents=\"split\")")
    return fitted


def finetune_optim(f, steps: int) -> OptimConfig:
    """The optimizer settings of finetuning (``cfg.finetune``) for ``steps`` steps: what every
    finetuning run uses, the stability protocol's phases included."""
    return OptimConfig(steps, f.lr, f.warmup, f.weight_decay, f.grad_clip, schedule=f.schedule,
                       betas=tuple(f.adam_betas), precision=f.precision)


def finetune(run: RunDir, cfg: RunConfig, materials: Materials, base: Path | str, condition: str, seed: int, *,
             dist: Single | None = None) -> None:
    """Finetune a fresh copy of the base model on one condition's documents (with background
    documents and instruct examples mixed in as configured; :func:`finetuning_documents`),
    saving every checkpoint (step 0 is the base model itself and is not copied; LoRA
    checkpoints of --model runs are adapters, :func:`saves_adapters`). ``dist``: train
    data-parallel (rank 0 writes); sharded with FSDP2 when ``finetune.parallel`` is "fsdp"
    (``experiments.training.sharded``; a one-line error with one process).

    Every token is weighted as the rows say (zero on ``finetune.loss_mask`` spans and outside
    the assistant turns of chat rows), examples longer than the context are refused or split
    (``finetune.long_documents``), and each kind of data's share of the loss-bearing tokens and
    of the loss is written to ``results/train_logs/<condition>_seed<seed>.mix.json``.
    The rows trained on are written to ``RUN/docs/<condition>_seed<seed>.jsonl``."""
    dist = dist or Single()
    steps = [s for s in checkpoint_steps(cfg) if s > 0]
    log_path = run.train_log(condition, seed)
    damaged = _damaged_checkpoints(run, cfg, condition, seed)
    for s, why in damaged.items():
        warn(f"checkpoint {str(run.checkpoint(condition, seed, s))!r} is damaged ({why}); finetuning again")
    if finetune_done(run, cfg, condition, seed, damaged):
        return
    f = cfg.finetune
    if f.parallel == "fsdp":
        dist = sharded(dist)  # one-line error with one process
    rows = finetuning_documents(cfg, materials, condition, seed)
    dist.on_writer(atomic_write_text, run.docs(condition, seed), documents_text(rows))  # left alone when unchanged
    # FSDP: loaded on the host, then each rank's shards move to its device when train() wraps the model
    device = device_for(cfg)
    use_deterministic_kernels(cfg.deterministic and device.type == "cuda")
    lm = interp.load_model(base, device="cpu" if f.parallel == "fsdp" else device)
    torch.manual_seed(seed)
    model, tokenizer = lm.model, lm.tokenizer
    context = context_length(lm, cfg)
    examples = training_examples(rows, tokenizer, context, f.long_documents, condition, run.docs(condition, seed))
    batches = padded_batches(examples, f.batch_size, tokenizer.pad_token_id, seed=seed, weighting=f.loss_weighting)
    adapters = saves_adapters(cfg)
    if f.lora_rank > 0:
        model = add_lora(model, LoraSettings(rank=f.lora_rank, alpha=f.lora_alpha))
        if adapters:  # where interp.load_model finds the base model of an adapter checkpoint
            local = Path(str(base)).expanduser()
            model.peft_config["default"].base_model_name_or_path = str(local.resolve()) if local.exists() else str(base)
    n_trainable = restrict_trainable(model, f.trainable)
    state_dir = run.finetune_state(condition, seed)
    optim = finetune_optim(f, f.steps)
    log = train(model, batches, optim, checkpoint_steps=steps, desc=f"finetune {condition} seed{seed}",
                state_dir=state_dir, save_every=max(1, f.steps // 10), dist=dist,
                on_checkpoint=lambda step, m: save_checkpoint(run.checkpoint(condition, seed, step), m, tokenizer,
                                                              as_adapter=adapters))
    mix = {"condition": condition, "seed": seed, "weighting": f.loss_weighting, "context": context,
           "examples": {k: sum(r["source"] == k for r in rows) for k in dict.fromkeys(r["source"] for r in rows)},
           "n_trained_examples": len(examples), "served": batches.source_shares(),
           "trainable": f.trainable, "n_trainable_parameters": n_trainable}

    def finish() -> None:
        atomic_write_csv(log_path, pd.DataFrame(log).assign(condition=condition, seed=seed))
        atomic_write_json(run.mix_log(condition, seed), mix)
        shutil.rmtree(state_dir, ignore_errors=True)

    dist.on_writer(finish)




_WORKER_MATERIALS: dict = {}  # in a worker process: the materials of the config it last served


def finetune_unit(cfg: RunConfig, root: str, base: Path | str, condition: str, seed: int) -> None:
    """One finetuning run in a worker process (``finetune_in_workers``): the materials are
    loaded again from the config (once per worker), the docs file is left to the parent."""
    if cfg not in _WORKER_MATERIALS:
        from experiments.materials import load_materials

        _WORKER_MATERIALS.clear()
        _WORKER_MATERIALS[cfg] = load_materials(cfg)
    finetune(RunDir(root), cfg, _WORKER_MATERIALS[cfg], base, condition, seed)


def finetune_in_workers(run: RunDir, cfg: RunConfig, materials: Materials, base: Path | str) -> None:
    """Every finetuning run (condition x seed) not finished yet, up to ``cfg.jobs`` at a time in
    worker processes (``experiments.training.parallel``); in this process when one or none is left.

    The runs are independent (each seeds itself and writes its own checkpoints, documents, log
    and state)."""
    from experiments.training.parallel import pool_size, run_units

    todo = [(condition, seed) for seed in cfg.seeds for condition in cfg.conditions
            if not finetune_done(run, cfg, condition, seed)]
    if pool_size(cfg.jobs, len(todo)) == 1:
        for condition, seed in todo:
            finetune(run, cfg, materials, base, condition, seed)
        return
    run_units(finetune_unit, [(cfg, str(run.root), base, condition, seed) for condition, seed in todo], cfg.jobs,
              desc="finetuning runs")
