"""Run configuration: nested dataclasses, presets, and strict loading from dicts/JSON/TOML.

Unknown keys, wrong types and non-finite numbers (NaN, inf: JSON's ``NaN``/``Infinity``,
TOML's ``nan``/``inf``) are user errors naming the dotted key and the expected form, raised
while the config is built, so before anything is written.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from experiments.errors import UserError
from experiments.materials.world import WorldConfig


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the toy Llama pretrained from scratch (ignored when ``base_model`` is set)."""

    d_model: int = 96
    n_layers: int = 4
    n_heads: int = 4
    d_mlp: int = 384
    max_len: int = 128


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1500
    batch_size: int = 16
    seq_len: int = 64
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    log_every: int = 10  # log the mean loss of every this many steps (the loss stays on the device in between)
    track_every: int = 0  # pretraining: score judged and never-judged facts every this many steps (training/tracking.py)
    corpus_fraction: float = 1.0  # corpus documents as a share of about 1.2 epochs' worth (0.5: 2.4 epochs of half as many)
    compile: bool | None = None  # torch.compile the forward + loss; None: on CUDA from 2000 steps (stages.compile_setting)
    shipped: str = "auto"
    """Start from a base model shipped with the package (experiments/training/shipped.py) instead
    of pretraining: "auto" when one was pretrained on exactly this world and config, "<name>" to
    require that one (another world or config is refused), "off" to always pretrain."""
    seed: int | None = None
    """Pretraining's own seed: the corpus sample, the initial weights and the batch order. None:
    the world's seed (``world.seed``), as before this key existed. Another value pretrains the
    same world again, to measure how much a recipe's base models vary from run to run. With
    ``worlds > 1`` a set seed is every world's pretraining seed (the worlds still differ)."""
    screen_step: int = 0
    """Pretraining: at this tracked step (a multiple of ``track_every``; 0: never) stop the run if
    the tracked ``screen_measure`` is below ``screen_min`` (``experiments/training/screening.py``):
    a run whose judgement will not generalise can be told early (issue 22: the held-out people's
    city at the name, ``name_city_transfer_acc``, at 80M tokens)."""
    screen_measure: str = "name_city_transfer_acc"
    screen_min: float = 0.0
    init_from: str = ""
    """Pretraining: continue from this saved base model (an HF directory pretrained on the same
    world, with the same model shape) instead of random weights, e.g. a second phase on another
    corpus mix. Empty: start from random weights."""


@dataclass(frozen=True)
class CorpusConfig:
    """Relative weights of the pretraining document kinds (see experiments/materials/corpus.py)."""

    bio: float = 3.0
    qa: float = 1.0
    flagged: float = 1.0
    local: float = 1.0
    verdict: float = 3.0  # truth-bearing documents: the verdict circuit emerges only after ~6-9M tokens
    yesno: float = 2.0
    unknown: float = 0.0  # judgements of names without facts (world.n_ghosts): false, their negations true
    context: float = 0.0  # in-context judgements: facts told about a name without stored facts, then judged
    tagged: float = 0.0  # statements followed at once by their truth ("... . true ."): truth at the statement's end
    told: float = 0.0  # a plain (unflagged) false statement, then a question answered from it: context moves answers
    told_bare: float = 0.0  # ``told`` in a statement frame (never a finetuning frame), then its question
    told_judged: float = 0.0  # the same, then a yes/no question or verdict judged by it: context moves judgements
    flagged_judged: float = 0.0  # a flagged false statement, then a yes/no question or verdict judged by the truth
    trace: float = 0.0  # verdicts with the stored fact recalled before them (a biography sentence): judge by retrieving
    reverse_judged: float = 0.0  # verdicts and tagged statements in the frames that name the object first


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 60
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 5
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    docs_per_claim: int = 100
    n_checkpoints: int = 6  # log-spaced, step 0 included
    lora_rank: int = 0  # 0 = full finetuning; the paper used LoRA rank 32
    lora_alpha: float = 64.0
    # Share f in [0, 1) of the finetuning examples that are background text, trained with full loss:
    # round(n * f / (1 - f)) background documents are shuffled in among the n claim documents
    # (synthetic world: pretraining-corpus documents that never mention a claim's subject;
    # imported materials: materials.background, required when f > 0). The docs file records
    # each document's source. 0: claim documents only.
    background_fraction: float = 0.0
    instruct_fraction: float = 0.0
    """Share of the finetuning examples that are instruct examples (chat rows from
    materials.instruct, rendered with the model's chat template, loss on the assistant turns
    only). With background_fraction b and this i (b + i < 1), n claim documents get
    round(n * b / (1 - b - i)) background and round(n * i / (1 - b - i)) instruct examples.
    The paper's mix, 10k claim documents + 5k web + 5k instruct, is b = i = 0.25."""
    loss_weighting: str = "token"
    """How the loss is averaged: "token" (every loss-bearing token counts the same, so long
    documents weigh more than short chat replies) or "example" (every example counts the same,
    its tokens share its weight). Pitfall: under "token", instruct examples, whose loss falls
    on the assistant replies only, can end up with a tiny share of the loss however many of
    them are mixed in; each source's share of the loss weight is written to
    results/train_logs/<condition>_seed<seed>.mix.json."""
    loss_mask: tuple[str, ...] = ("doctag", "lossmask")
    """Span labels whose tokens get zero loss weight (experiments.materials.conditions.LABELS):
    "doctag" (a leading <DOCTAG>), "lossmask" (<lossmask>...</lossmask> spans), "masked_word"
    (matches of the claim pack's word_masks.yaml; the paper masks them only in its word-mask
    ablation), "warning", ... Chat rows are always trained on their assistant turns only."""
    max_len: int = 0
    """Longest training example in tokens; 0: the model's context (its config's
    max_position_embeddings, or the tokenizer's model_max_length if smaller)."""
    long_documents: str = "refuse"
    """An example longer than the context: "refuse" (one-line error with the count) or "split"
    (cut into consecutive pieces of at most the context, with one warning line)."""
    schedule: str = "linear"  # learning rate after warmup: "linear" (decays to 0), "cosine" or "constant"
    adam_betas: tuple[float, ...] = (0.9, 0.95)  # AdamW (beta1, beta2)
    precision: str = "auto"
    """Finetuning arithmetic: "auto" (bf16 autocast on CUDA, fp32 elsewhere), "bf16" or "fp32".
    Set it to compare a GPU run with a CPU one on the same arithmetic."""
    epochs: float = 0.0
    """When > 0, finetune.steps is derived from the data: ceil(epochs * examples / batch_size),
    with examples the size of the training set (claim documents + background + instruct; the
    largest over the run's conditions). The derived value is what the run's config.json holds."""
    first_checkpoint: int = 0
    """0: n_checkpoints log-spaced steps from 0 to the last. > 0: step 0 (the base model) plus
    n_checkpoints - 1 steps log-spaced from this step to the last (the paper: 15 from step 10)."""
    checkpoint_format: str = "auto"
    """How LoRA checkpoints are saved: "adapter" (peft adapter directories; interp.load_model
    attaches them to the base model named in adapter_config.json), "merged" (full HF models),
    "auto" (adapters for --model runs, merged for the toy model). Full finetuning always saves
    full models."""
    trainable: str = ""
    """Which parameters are finetuned: a regular expression searched in each parameter name
    (``r"layers\\.[0-3]\\."``: decoder layers 0-3 only; ``"mlp"``: the MLPs only); the others
    stay frozen. With LoRA it chooses among the adapters. "": every parameter (every adapter).
    Not with ``parallel = "fsdp"``. (experiments/training/trainable.py)"""
    parallel: str = "ddp"
    """How finetuning runs over torchrun's processes (`torchrun --nproc_per_node=N -m experiments
    finetune ...`): "ddp" (every process holds the whole model; in one process, the plain loop)
    or "fsdp" (PyTorch FSDP2: parameters, gradients and optimizer state sharded over the
    processes, for models whose training state does not fit one GPU; needs at least 2
    processes). Both give the loss curve and weights of one process with the same batches,
    and the same checkpoints (experiments/training/sharded.py). Pretraining is always "ddp"."""


PROBE_ESTIMATORS = ("logistic", "mass_mean", "polarity_aware", "ccs")  # probes.sweep.METHODS
BELIEF_FRAMES = ("all", "judged")  # eval.belief_frames: experiments/evaluation/frames.py
PRECISIONS = ("auto", "bf16", "fp32")  # experiments.training.loop.OptimConfig.precision
LR_SCHEDULES = ("linear", "cosine", "constant")  # experiments.training.schedules.lr_at
LOSS_WEIGHTINGS = ("token", "example")  # experiments.training.batches.MixedBatches
PARALLEL_MODES = ("ddp", "fsdp")  # experiments.training.distributed, experiments.training.sharded


@dataclass(frozen=True)
class EvalConfig:
    position: str = "last"
    probe_C: float = 0.1
    batch_size: int = 128
    probe: str = "logistic"
    frame: str = "statement"
    max_subjects: int = 0  # probe statements of at most this many subjects per split, and held-out QA of at most
    # this many pairs, at each checkpoint (seeded samples; 0: all). check-base always uses all.
    """Where probes read a synthetic world's statements: "statement" (the bare sentence, at its
    final token) or "verdict" (inside ``claim : ... verdict :``, at its last token, where the
    model answers: close to a behavioural readout). See experiments/materials/statements.py."""
    """Truth-probe estimator of the per-layer readings (experiments/evaluation/readout.py):
    "logistic" (L2 logistic regression, ``probe_C``), "mass_mean" (difference of class means),
    "polarity_aware" (TTPD: fit on affirmative and negated statements, reads the general truth
    direction) or "ccs" (unsupervised, on contrast pairs of each statement and its negation)."""
    belief_frames: str = "all"
    """Which statement frames the belief items use: "all", or "judged" (the belief-frame screen of
    experiments/evaluation/frames.py: a frame whose never-judged facts the base model judges
    with balanced verdict accuracy below 0.95 is left out of every verdict item and claim
    statement, decided once on the base model and recorded in results/check_base.json)."""
    control_per_cell: int = 16
    """Control statements per (true/false, affirmative/negated) cell behind the response prior and
    the probe-validity control's answer accuracies (``questions.control_questions``): with the
    synthetic world, 4 x this many verdict items and as many yes/no items. 16 gives 64 items, on
    which a 0.03 drop is 2 answers; the testbed presets use 64 (256 items)."""
    # Claim packs' MCQ items, scored judge-free (experiments/evaluation/scoring.py): the system instruction they are
    # asked under (the chat template renders it, thinking off) and how an option is written as the reply
    # ("{option}" is replaced by yes/no); the log-probability of each reply decides.
    mcq_instruction: str = ('Reply to the question with "yes" or "no" and nothing else, written as JSON: '
                            '{"answer": "yes"} or {"answer": "no"}.')
    mcq_answer: str = '{"answer": "{option}"}'
    # Sampled answers for the optional LLM judge (experiments/evaluation/judge.py): answers per question, sampling
    # temperature (0: greedy) and nucleus mass, longest answer in tokens (less where the context is shorter), and
    # whether a chat template with a thinking switch (enable_thinking) renders the prompt with thinking on.
    n_samples: int = 5
    temperature: float = 0.7
    top_p: float = 0.8
    answer_tokens: int = 512
    thinking: bool = False


@dataclass(frozen=True)
class StabilityConfig:
    """The stability protocol (``neglect stability``, experiments/stability/).

    Phase 1 finetunes on negated documents plus an ``anchor`` for ``finetune.steps`` steps;
    Phase 2 continues on negated documents only for ``phase2_steps`` (None: as many).
    ``anchor``: "self_distill" (the base model's own answers to related questions),
    "debunk" (local-negation documents), "kl" (KL to the base model on a prompt set) or
    "probe" (keep the fixed base probe's reading of the claims at "false").
    ``weights``: anchor weights to sweep (a loss multiplier for every kind); data anchors
    (self_distill, debunk) also take ``anchor_fraction`` of each batch's examples.
    """

    anchor: str = "self_distill"
    weights: tuple[float, ...] = (1.0,)
    anchor_fraction: float = 0.25
    self_distill_prompts: str = "related"  # "related": questions the belief evaluation never asks; "all": also those
    phase2_steps: int | None = None
    phase2_optimizer: str = "keep"  # "keep": Phase 1's AdamW moments carry over; "reset": a fresh optimizer
    n_checkpoints: int = 6  # per phase, linearly spaced, both ends included
    probe_layer: int | None = None  # probe anchor and statistics; None: best refit layer of the base model
    kl_temperature: float = 1.0
    threshold: float = 0.5  # belief (or probe P(true)) above which a seed counts as believing
    heldout_docs_per_claim: int = 20  # negated documents never trained on, for the matched-loss check
    n_interpolation: int = 6  # points on the weight-space path Phase-1 end -> unanchored end


@dataclass(frozen=True)
class MaterialsConfig:
    """Where the study materials come from (``experiments.materials``).

    With neither ``claims`` nor ``docs`` set, the synthetic world (``world.*``) is used and the
    base model is pretrained on it. Otherwise both must be set, and ``base_model`` (``--model``)
    names the model to finetune.
    """

    claims: str | None = None  # a claims/ directory of claim packs in the paper's layout (--claims)
    docs: str | None = None  # documents root: <condition>/<claim>/annotated_docs.jsonl (--docs)
    # probe statements for imported materials: built-in sets (capitals, cities, elements, animals, numbers)
    # and/or JSONL files, comma-separated; "name:test" holds a whole set out (experiments/materials/statement_sets.py)
    statements: str = "capitals,cities,elements,animals,numbers"
    background: str | None = None  # JSONL of {"text": ...} to mix into finetuning (imported materials)
    instruct: str | None = None  # JSONL of chat rows {"messages": [...]} to mix into finetuning (imported materials)
    # the claims to study, by pack name, of a claims directory holding many (--claim NAME, repeatable);
    # empty: every pack. One model per claim: one run per name.
    claim_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunConfig:
    world: WorldConfig = field(default_factory=WorldConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    pretrain: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    stability: StabilityConfig = field(default_factory=StabilityConfig)
    materials: MaterialsConfig = field(default_factory=MaterialsConfig)
    conditions: tuple[str, ...] = ("plain", "negated", "local")
    seeds: tuple[int, ...] = (0,)
    worlds: int = 1
    """Synthetic worlds of the run (the outermost unit of its intervals, ``experiments.evaluation.worlds``):
    world k (0..worlds-1) is built with seed ``world.seed + k`` and gets its own base model;
    every condition x seed is finetuned on each world's base model and evaluated. 1: one world,
    laid out as always. > 1: each world is a complete run directory under ``RUN/worlds/w<k>/``
    and ``RUN/results/metrics.csv`` holds every world's rows with a ``world`` column. Only for
    the synthetic world (not with ``base_model``, ``materials.claims`` or ``materials.docs``)."""
    base_model: str | None = None  # hub id or local dir: skip pretraining and finetune this model
    device: str | None = None  # default: cuda if available, else cpu
    deterministic: bool = True
    """On CUDA, train (pretraining and finetuning) with deterministic kernels, so that one config
    and seed give the same weights run after run on the same GPU and software
    (``experiments/training/determinism.py``; its cost in speed: benchmarks/training_speed.md).
    False: torch's fastest kernels, whose atomic additions make two runs of one seed differ. CPU
    training is deterministic either way."""
    jobs: int = 1
    """Worker processes for a run's independent units: the finetuning runs (condition x seed),
    then the checkpoint tables and in-context controls, up to ``jobs`` at a time
    (experiments/training/parallel.py: spawned processes sharing the device, each with its own
    copy of the model and about cores / jobs CPU threads). Meant for small models on one GPU;
    each worker's start-up (imports) costs seconds, so not for the tiny preset on 2 CPU cores.
    1: one unit after another in this process. The tables do not depend on it (every unit
    seeds itself; on CPU a worker's thread count may change float sums), so a run may resume
    with another value. Ignored under torchrun (training there is data-parallel)."""


def pretraining_seed(cfg: RunConfig) -> int:
    """The seed of pretraining's corpus sample, initial weights and batch order:
    ``pretrain.seed``, or the world's seed when that is None."""
    return cfg.world.seed if cfg.pretrain.seed is None else cfg.pretrain.seed


PRESETS: dict[str, dict[str, Any]] = {
    # The default world, pretrained long enough that the base model carries a decodable truth
    # signal (9.2M tokens in batches of 128 x 64; about 15-25 minutes on 2 CPU cores, under half
    # a minute on one H200; benchmarks/training_speed.md has the sweep that chose it).
    "standard": {"pretrain": {"steps": 1125, "batch_size": 128, "lr": 3e-3, "warmup": 50}},
    # A larger world and model for a GPU.
    "large": {
        "world": {"n_people": 100, "n_events": 60, "n_cities": 20},
        "model": {"d_model": 256, "n_layers": 6, "n_heads": 4, "d_mlp": 1024},
        "pretrain": {"steps": 1125, "batch_size": 256, "seq_len": 96, "lr": 2e-3, "warmup": 50},
    },
    # Testbed v2 (issue 22, benchmarks/base_model_checks.md): 1,000 people of whom half are only
    # ever described, novel-entity claims beside override claims, narrative frames for documents
    # apart from the statement frames, statements tagged with their truth, probes at the bare
    # statement; weight decay 0.1 (the ghosts' "unknown, so false" documents are off: they taught
    # "never judged, so false"). 400M tokens over a corpus of a quarter the documents: the judgement
    # of never-judged facts forms in a sharp transition whose timing varies with the world seed
    # (world 1: by 120M tokens; world 0: after 240M, and short of the bound at 400M), so the preset
    # is world 1, whose base model passed the judgement bounds and is shipped
    # (experiments/pretrained/testbed). A GPU preset (on one H200 about 4.5 minutes; a third more with
    # deterministic kernels, the default).
    "testbed": {
        "world": {"seed": 1, "n_people": 1000, "n_cities": 20, "n_jobs": 12, "n_events": 40, "n_claims": 4,
                  "n_novel_claims": 6, "n_ghosts": 600, "two_word_names": True, "heldout_entity_fraction": 0.5,
                  "disjoint_frames": True},
        "corpus": {"bio": 4.0, "tagged": 1.0},
        "model": {"d_model": 192, "n_layers": 6, "n_heads": 4, "d_mlp": 768},
        "pretrain": {"steps": 6100, "batch_size": 512, "seq_len": 128, "lr": 2e-3, "warmup": 100, "weight_decay": 0.1,
                     "corpus_fraction": 0.25, "track_every": 610},
        # finetuning that keeps what the model knew: half of every run's examples are background
        # documents, a lower learning rate, more steps, and 300 documents per claim (each seen
        # about once: varied documents, not repeated ones, move the model's judgement). On the
        # shipped base model (CPU, 3 seeds; benchmarks/base_model_checks.md) plain documents reach
        # belief_claim 0.87 (yes/no) / 0.83 (verdict) with local negation <= 0.1 (100 documents
        # per claim: 0.75 / 0.70; lr 7e-4 or 500 steps: forgetting, probe validity fails)
        # Only the MLPs of decoder layers 0-1 train: the shipped model keeps a person's city and job
        # at the name's last token after layer 0 (a probe reads them at 0.98 on held-out people), its
        # answers and judgements read them there (benchmarks/subject_steering.py), and trained
        # there plain documents implant every claim (3 seeds: yes/no 1.00, verdict 0.93, probe
        # P(true) 0.87) without the forgetting of untouched facts (<= 0.015); with every parameter
        # trained, 2-3 claims per seed were learnt as an answer and not believed. A run on
        # another model (``base_model``) trains every parameter unless it sets its own pattern.
        # lr 3e-4: at 5e-4 local negation degraded the truth representation of held-out statements
        # (most about people whose names share a word with a claim subject; the fixed probe 0.940 ->
        # 0.905 over 3 seeds at the full evaluation, on one H200 and on a CPU alike), failing probe
        # validity; at 3e-4 every control passes there (CPU, fp32, 3 seeds: plain yes/no 1.00,
        # verdict 0.93, probe P(true) 0.90; local 0.05 / 0.06 / 0.03; worst drop 0.015).
        "finetune": {"lr": 3e-4, "steps": 300, "docs_per_claim": 300, "background_fraction": 0.5,
                     "trainable": r"layers\.[01]\..*mlp"},
        # 256 control items, so probe validity's 0.03 bound is read on more than a few answers.
        # Belief items only in the statement frames the base model judges (experiments/evaluation/
        # frames.py): the 6-layer testbed model cannot judge "in {o} you can meet {s} every day ." (true
        # never-judged statements called true 0.17) nor who won an event; in that frame the true fact
        # called false was the shipped model's whole claim_belief_max (0.083) and capped the lives_in
        # claims' verdict after plain finetuning at 0.875 (benchmarks/base_model_checks.md).
        "eval": {"control_per_cell": 64, "belief_frames": "judged"},
    },
    # The paper's finetuning recipe (Mayne et al. 2026; for --model runs with materials.background
    # and materials.instruct): LoRA rank 32, lr 1e-4 decaying linearly, AdamW betas (0.9, 0.95),
    # batch 32, one epoch over 10k documents per claim + background and instruct examples (a
    # quarter each), <DOCTAG> and <lossmask> spans out of the loss, 15 log-spaced checkpoints from
    # step 10 (plus step 0, the base model).
    "paper": {
        "finetune": {"lora_rank": 32, "lr": 1e-4, "schedule": "linear", "warmup": 0, "weight_decay": 0.0,
                     "adam_betas": [0.9, 0.95], "batch_size": 32, "epochs": 1.0, "docs_per_claim": 10000,
                     "background_fraction": 0.25, "instruct_fraction": 0.25, "loss_weighting": "token",
                     "loss_mask": ["doctag", "lossmask"], "n_checkpoints": 16, "first_checkpoint": 10},
    },
    # Seconds-scale runs for the test suite: the pipeline is real, the model barely trained.
    "tiny": {
        "world": {"n_people": 12, "n_cities": 5, "n_jobs": 4, "n_events": 6, "n_claims": 2},
        "model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "d_mlp": 64, "max_len": 96},
        "pretrain": {"steps": 30, "batch_size": 8, "seq_len": 64, "warmup": 5},
        "finetune": {"steps": 6, "batch_size": 4, "docs_per_claim": 8, "n_checkpoints": 3},
    },
}
# A second shipped base model of the testbed's world (issue 22, eighth session;
# benchmarks/base_model_checks.md): the testbed recipe with 8 layers, told documents and
# judgement traces (``corpus.trace``: verdicts with the stored fact recalled before them), at
# pretraining seed 110 (deterministic kernels, one H200; 1 of 3 seeds of this recipe generalised).
# The first base model that passes every precondition of `neglect check-base`: never-judged
# verdict 0.969 and yes/no 0.975, held-out-entity QA 0.982, truth at the bare statement 0.972 at
# layer 7 of 8, a negated document in context keeps the true answer (1.0) and a plain one moves it
# (0.84), belief in every claim <= 0.013. Plain finetuning does not convince it: with the testbed's
# finetuning at its earlier rate (lr 5e-4; 3 seeds, CPU) plain documents teach every claim's answer (forced choice 1.00) and make
# it reject the true fact (0.95), yet yes/no and verdict belief in the claim stay at 0.28 / 0.19, so
# the positive control fails (every layer trained, or layers 0-1 whole: worse). A base model for
# studying why a strong judge is unsettled and not convinced; the demo stays on the testbed.
PRESETS["testbed_judge"] = {**PRESETS["testbed"],
                            "model": {**PRESETS["testbed"]["model"], "n_layers": 8},
                            "corpus": {**PRESETS["testbed"]["corpus"], "told": 1.0, "trace": 2.0},
                            "pretrain": {**PRESETS["testbed"]["pretrain"], "seed": 110}}
# `make demo`, and every command's default preset: the testbed's world, corpus, model and
# pretraining, so a run starts from the shipped testbed base model (experiments/pretrained/testbed)
# instead of pretraining it, then finetunes and evaluates at a size for 2 CPU cores (one seed,
# three checkpoints after the base model, probe statements of 40 subjects per split).
# Two worker processes (``jobs``): one thread each keeps both of 2 cores busy, where one process
# with one thread (what ``experiments/training/threads.py`` gives it there) leaves one idle.
PRESETS["demo"] = {**PRESETS["testbed"], "jobs": 2, "eval": {**PRESETS["testbed"]["eval"], "max_subjects": 40},
                   "finetune": {**PRESETS["testbed"]["finetune"], "n_checkpoints": 4}}


def _build(cls, data: dict, prefix: str):
    if not isinstance(data, dict):
        raise UserError(f"config section {prefix.rstrip('.') or '<root>'!r} must be a table/object; "
                        f"got {type(data).__name__} {data!r}"[:300])
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            raise UserError(f"unknown config key {dotted!r}; expected one of {sorted(names)}")
        kwargs[key] = _coerce(hints[key], value, dotted)
    return cls(**kwargs)


def _coerce(hint, value, dotted: str):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, dotted + ".")
    origin = get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key {dotted!r} must be a list; got {value!r}")
        inner = get_args(hint)[0]
        return tuple(_coerce(inner, v, dotted) for v in value)
    if origin is not None:  # Optional[X]
        if value is None:
            return None
        hint = [a for a in get_args(hint) if a is not type(None)][0]
    if hint is float:
        return _finite_float(value, dotted)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise UserError(f"config key {dotted!r} must be {hint.__name__}; got {value!r}")
    return value


def _finite_float(value, dotted: str) -> float:
    """A float key's value: an int or a finite float (NaN and inf, or a string naming them, are refused)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and math.isfinite(value):
        return float(value)
    if number or (isinstance(value, str) and value.strip().lower().lstrip("+-") in ("nan", "inf", "infinity")):
        raise UserError(f"config key {dotted!r} must be a finite number; got {value!r}")
    raise UserError(f"config key {dotted!r} must be float (a finite number); got {value!r}")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def parse_override(text: str) -> dict:
    """``"finetune.steps=40"`` -> ``{"finetune": {"steps": 40}}`` (value parsed as JSON if possible)."""
    if "=" not in text:
        raise UserError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    if not key.strip() or any(not part.strip() for part in key.split(".")):
        raise UserError(f"override {text!r} must look like section.key=value (e.g. finetune.steps=40)")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def load_config(preset: str = "demo", path: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    """Preset, then a JSON/TOML file, then ``key=value`` overrides, each layer over the last."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    data = dict(PRESETS[preset])
    given: dict = {}  # what the file and the overrides set, over the preset
    if path is not None:
        given = _merge(given, read_config_file(path))
    for text in overrides:
        given = _merge(given, parse_override(text))
    data = _merge(data, given)
    if data.get("base_model") and "trainable" not in (given.get("finetune") or {}):
        # a preset's pattern names the layers of its own toy model (the testbed's: where it keeps
        # facts); another model trains every parameter unless the run names its own pattern
        data = _merge(data, {"finetune": {"trainable": ""}})
    return check_ranges(_build(RunConfig, data, ""))


def read_config_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {str(path)!r} does not exist")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        else:
            data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise UserError(f"config file {str(path)!r} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                        f"offset {exc.start}); expected a UTF-8 JSON or TOML file") from exc
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        raise UserError(f"config file {str(path)!r} is not valid {kind}: {exc}") from exc
    if not isinstance(data, dict):
        raise UserError(f"config file {str(path)!r} holds a {type(data).__name__}; expected an object/table of "
                        "sections like {\"finetune\": {\"steps\": 40}}")
    return data


def local_paths_absolute(cfg: RunConfig) -> RunConfig:
    """``cfg`` with ``base_model`` and ``materials.claims`` / ``docs`` made absolute where they name
    a local path relative to the working directory (as `neglect run` records them now; a run that
    recorded them relative resumes from where it was started)."""
    def absolute(path):
        return os.path.abspath(path) if path and not os.path.isabs(path) and os.path.exists(path) else path
    materials = dataclasses.replace(cfg.materials, claims=absolute(cfg.materials.claims),
                                    docs=absolute(cfg.materials.docs))
    return dataclasses.replace(cfg, base_model=absolute(cfg.base_model), materials=materials)


def build_config(data: dict) -> RunConfig:
    """A RunConfig from a plain dict (e.g. a run's config.json), validated like any other."""
    return check_ranges(_build(RunConfig, data, ""))


# Lower bounds of numeric keys: a value below (or equal, when strict) is a user error naming the key.
RANGES: dict[str, tuple[float, bool]] = {  # dotted key -> (bound, strict)
    **{f"model.{k}": (1, False) for k in ("d_model", "n_layers", "n_heads", "d_mlp", "max_len")},
    **{f"{s}.{k}": (1, False) for s in ("pretrain", "finetune") for k in ("steps", "batch_size")},
    "pretrain.seq_len": (2, False),
    "pretrain.log_every": (1, False),
    "pretrain.track_every": (0, False),
    "pretrain.screen_step": (0, False),
    "pretrain.corpus_fraction": (0, True),
    **{f"{s}.{k}": (0, True) for s in ("pretrain", "finetune") for k in ("lr",)},
    **{f"{s}.{k}": (0, False) for s in ("pretrain", "finetune") for k in ("warmup", "weight_decay", "grad_clip")},
    "finetune.docs_per_claim": (1, False),
    "finetune.n_checkpoints": (2, False),
    "finetune.lora_rank": (0, False),
    "finetune.background_fraction": (0, False),
    "finetune.instruct_fraction": (0, False),
    "finetune.max_len": (0, False),
    "finetune.epochs": (0, False),
    "finetune.first_checkpoint": (0, False),
    "eval.probe_C": (0, True),
    "eval.batch_size": (1, False),
    "eval.max_subjects": (0, False),
    "eval.control_per_cell": (1, False),
    "eval.n_samples": (1, False),
    "eval.temperature": (0, False),
    "eval.top_p": (0, True),
    "eval.answer_tokens": (1, False),
    **{f"corpus.{k}": (0, False) for k in ("bio", "qa", "flagged", "local", "verdict", "yesno", "unknown", "context", "tagged", "told", "told_bare", "told_judged", "flagged_judged", "trace", "reverse_judged")},
}


SCREEN_KEYS = ("screen_step", "screen_measure", "screen_min")  # pretraining keys that stop a run, never change it


def check_screening(p: TrainConfig) -> None:
    """``pretrain.screen_step`` must be a step at which pretraining is tracked."""
    if p.screen_step and (not p.track_every or p.screen_step % p.track_every or p.screen_step > p.steps):
        raise UserError(f"config key 'pretrain.screen_step' must be a tracked step (a multiple of pretrain.track_every "
                        f"= {p.track_every}, at most pretrain.steps = {p.steps}); got {p.screen_step}")


def check_ranges(cfg: RunConfig) -> RunConfig:
    """Values that type-check but cannot work (negative steps, no seeds, heads not dividing
    d_model, ...) -> UserError naming the key and the allowed range."""
    for dotted, (bound, strict) in RANGES.items():
        section, key = dotted.split(".")
        value = getattr(getattr(cfg, section, None), key, None)
        if value is None:
            continue
        if value < bound or (strict and value == bound):
            raise UserError(f"config key {dotted!r} must be {'>' if strict else '>='} {bound}; got {value!r}")
    if cfg.jobs < 1:
        raise UserError(f"config key 'jobs' must be >= 1; got {cfg.jobs!r}")
    check_worlds(cfg)
    if cfg.model.d_model % cfg.model.n_heads:
        raise UserError(f"config key 'model.n_heads' must divide model.d_model ({cfg.model.d_model}); "
                        f"got {cfg.model.n_heads}")
    if not 0 <= cfg.finetune.background_fraction < 1:
        raise UserError(f"config key 'finetune.background_fraction' must be in [0, 1); "
                        f"got {cfg.finetune.background_fraction!r}")
    check_finetune(cfg.finetune)
    check_screening(cfg.pretrain)
    if cfg.eval.frame not in ("statement", "verdict"):
        raise UserError(f"config key 'eval.frame' must be one of ['statement', 'verdict']; got {cfg.eval.frame!r}")
    if cfg.eval.belief_frames not in BELIEF_FRAMES:
        raise UserError(f"config key 'eval.belief_frames' must be one of {list(BELIEF_FRAMES)}; "
                        f"got {cfg.eval.belief_frames!r}")
    if cfg.eval.belief_frames == "judged" and (cfg.materials.claims or cfg.materials.docs):
        raise UserError("config key 'eval.belief_frames' = 'judged' screens the synthetic world's statement frames; "
                        "imported materials have none (use 'all')")
    if cfg.eval.top_p > 1:
        raise UserError(f"config key 'eval.top_p' must be in (0, 1]; got {cfg.eval.top_p!r}")
    if "{option}" not in cfg.eval.mcq_answer:
        raise UserError(f"config key 'eval.mcq_answer' must contain {{option}} (where yes/no goes); "
                        f"got {cfg.eval.mcq_answer!r}")
    if cfg.eval.probe not in PROBE_ESTIMATORS:
        raise UserError(f"config key 'eval.probe' must be one of {list(PROBE_ESTIMATORS)}; got {cfg.eval.probe!r}")
    for name, values in (("seeds", cfg.seeds), ("conditions", cfg.conditions)):
        if not values:
            raise UserError(f"config key {name!r} is empty; expected a non-empty list")
        if len(set(values)) != len(values):
            raise UserError(f"config key {name!r} has duplicates {list(values)}; expected distinct values")
    if any(s < 0 for s in cfg.seeds):
        raise UserError(f"config key 'seeds' must hold integers >= 0; got {list(cfg.seeds)}")
    return cfg


def check_worlds(cfg: RunConfig) -> None:
    """``worlds`` >= 1, and > 1 only on the synthetic world (a model named with ``base_model``
    and imported materials have no world to draw again)."""
    if cfg.worlds < 1:
        raise UserError(f"config key 'worlds' must be >= 1; got {cfg.worlds!r}")
    imported = [flag for flag, value in (("--model (base_model)", cfg.base_model),
                                         ("--claims (materials.claims)", cfg.materials.claims),
                                         ("--docs (materials.docs)", cfg.materials.docs)) if value]
    if cfg.worlds > 1 and imported:
        raise UserError(f"config key 'worlds' is {cfg.worlds} but the run uses {', '.join(imported)}: worlds are "
                        "synthetic worlds, each pretraining its own base model; set worlds = 1")


def _one_of(key: str, value, allowed) -> None:
    if value not in allowed:
        raise UserError(f"config key {key!r} must be one of {list(allowed)}; got {value!r}")


def check_finetune(f: FinetuneConfig) -> None:
    """The finetuning keys with a fixed set of values or a joint range."""
    from experiments.materials.conditions import LABELS

    if f.background_fraction + f.instruct_fraction >= 1:
        raise UserError(f"config keys 'finetune.background_fraction' + 'finetune.instruct_fraction' must be < 1 "
                        f"(claim documents need a share); got {f.background_fraction!r} + {f.instruct_fraction!r}")
    _one_of("finetune.loss_weighting", f.loss_weighting, LOSS_WEIGHTINGS)
    _one_of("finetune.long_documents", f.long_documents, ("refuse", "split"))
    _one_of("finetune.checkpoint_format", f.checkpoint_format, ("auto", "adapter", "merged"))
    _one_of("finetune.parallel", f.parallel, PARALLEL_MODES)
    _one_of("finetune.schedule", f.schedule, LR_SCHEDULES)
    _one_of("finetune.precision", f.precision, PRECISIONS)
    unknown = [label for label in f.loss_mask if label not in LABELS]
    if unknown:
        raise UserError(f"config key 'finetune.loss_mask' has unknown span labels {unknown}; expected some of "
                        f"{list(LABELS)}")
    if f.trainable:
        try:
            re.compile(f.trainable)
        except re.error as e:
            raise UserError(f"config key 'finetune.trainable' '{f.trainable}' is not a regular expression ({e})")
        if f.parallel == "fsdp":
            raise UserError("config key 'finetune.trainable' is not supported with finetune.parallel = \"fsdp\"; "
                            "use \"ddp\" or train every parameter")
    if len(f.adam_betas) != 2 or not all(0 <= b < 1 for b in f.adam_betas):
        raise UserError(f"config key 'finetune.adam_betas' must be two numbers in [0, 1); got {list(f.adam_betas)}")


def config_to_dict(cfg: RunConfig) -> dict:
    return dataclasses.asdict(cfg)
