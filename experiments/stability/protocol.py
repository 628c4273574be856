"""The stability protocol (issue 10): hold a negation-respecting solution, release it, watch.

Per anchor weight and seed:

- **Phase 1**: a fresh copy of the base model finetuned for ``finetune.steps`` on the negated
  documents (the unanchored run's examples for that seed, ``stages.training_examples``: same
  rows and mix, loss masks, context rule and order) plus an
  anchor (``experiments.stability.anchors``) that keeps the model from believing the claims.
- **Phase 2**: from the end of Phase 1, ``phase2_steps`` more on the negated documents only,
  with Phase 1's AdamW moments kept or a fresh optimizer (``phase2_optimizer``).
- **Unanchored run**: the pipeline's own ``negated`` finetune (same steps, same data order);
  a stability run directory is a pipeline run directory whose only condition is ``negated``.
- At every checkpoint of every phase (``experiments.stability.measures``): belief of every kind,
  probe readings (fixed and refit) and control-statement probe accuracy at every layer,
  held-out loss on negated documents never trained on, and loss on claim vs warning spans.
- A weight-space interpolation from the Phase-1 end to the unanchored run's end.

Outputs (``RUN/results/``): ``stability.csv`` (anchor, weight, seed, phase, step,
global_step, layer, claim, metric, value; the unanchored run is anchor "none", weight 0,
phase 1), ``stability_stats.csv`` and ``stability_seed_stats.csv`` (``stability_stats``),
``interpolation.csv``; figures in the report. Every phase's checkpoints, training logs and
evaluation rows are files that are skipped when present, so a killed run resumes.

Layout: ``RUN/checkpoints/stability/<tag>/seed<k>/phase<p>/step_<n>/``,
``RUN/evals/stability/<tag>/seed<k>/phase<p>/step_<n>.csv``, with ``tag = <anchor>_w<weight>``.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pandas as pd
import torch

import interp
from experiments.stability import measures as stability_eval
from experiments.config import RunConfig
from experiments.evaluation.evaluator import Evaluator
from experiments.materials import Materials
from experiments.training.stages import (checkpoint_steps, context_length, device_for, finetuning_documents,
                                         training_examples, finetune_optim)
from experiments.errors import UserError
from experiments.training.lora import LoraSettings, add_lora
from experiments.training.trainable import restrict_trainable
from experiments.evaluation.stats import best_layer
from experiments.artifacts.atomic import atomic_write_csv
from experiments.artifacts.checksums import hf_dir_problem, read_csv_or_none
from experiments.artifacts.rundir import RunDir
from experiments.training.schedules import linear_steps
from experiments.stability.anchors import ANCHORS, PROMPT_SETS, phase1_training
from experiments.training.loop import OptimConfig, make_optimizer, padded_batches, train, trainable_parameters
from experiments.training.checkpoints import checkpoint_saver
from experiments.training import state as training_state

COLUMNS = ["anchor", "weight", "seed", "phase", "step", "global_step", "layer", "claim", "metric", "value"]
INTERP_COLUMNS = ["anchor", "weight", "seed", "alpha", "layer", "claim", "metric", "value"]
PHASE2_SEED_OFFSET = 7919  # Phase 2 draws its batch order from another seed than Phase 1
UNANCHORED = "none"


def tag(anchor: str, weight: float) -> str:
    return f"{anchor}_w{weight:g}"


def phase2_steps(cfg: RunConfig) -> int:
    return cfg.finetune.steps if cfg.stability.phase2_steps is None else cfg.stability.phase2_steps


def phase_checkpoints(cfg: RunConfig, phase: int) -> list[int]:
    total = cfg.finetune.steps if phase == 1 else phase2_steps(cfg)
    return linear_steps(total, cfg.stability.n_checkpoints)


def validate(cfg: RunConfig) -> RunConfig:
    """The config a stability run uses (conditions forced to the unanchored ``negated``), or a
    UserError naming the bad ``stability.*`` value."""
    s = cfg.stability
    checks = [
        (s.anchor in ANCHORS, f"stability.anchor {s.anchor!r} is unknown; expected one of {list(ANCHORS)}"),
        (s.phase2_optimizer in ("keep", "reset"),
         f"stability.phase2_optimizer {s.phase2_optimizer!r} is unknown; expected 'keep' or 'reset'"),
        (s.self_distill_prompts in PROMPT_SETS,
         f"stability.self_distill_prompts {s.self_distill_prompts!r} is unknown; expected one of {list(PROMPT_SETS)}"),
        (len(s.weights) > 0 and all(w >= 0 for w in s.weights),
         f"stability.weights must be a non-empty list of numbers >= 0; got {list(s.weights)}"),
        (0 < s.anchor_fraction < 1, f"stability.anchor_fraction must be in (0, 1); got {s.anchor_fraction}"),
        (s.n_checkpoints >= 2, f"stability.n_checkpoints must be >= 2; got {s.n_checkpoints}"),
        (s.n_interpolation >= 2, f"stability.n_interpolation must be >= 2; got {s.n_interpolation}"),
        (phase2_steps(cfg) >= 1 and cfg.finetune.steps >= 1,
         f"finetune.steps and stability.phase2_steps must be >= 1; got {cfg.finetune.steps}, {s.phase2_steps}"),
        (s.heldout_docs_per_claim >= 1, f"stability.heldout_docs_per_claim must be >= 1; got {s.heldout_docs_per_claim}"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    return dataclasses.replace(cfg, conditions=("negated",))


class Protocol:
    """One stability run directory: its paths and the steps of the protocol."""

    def __init__(self, cfg: RunConfig, run: RunDir, materials: Materials, base: Path | str):
        """``cfg`` as returned by :func:`validate`; ``run`` a prepared run directory whose base
        model ``base`` exists (``experiments.pipeline.run_stability`` builds both). The anchors
        are built from the synthetic world's facts, so ``materials`` must have a world."""
        if materials.world is None:
            raise UserError(f"the stability protocol's anchors are built from the synthetic world's facts; "
                            f"{materials.kind} materials have none (run `neglect stability` without --claims/--docs)")
        self.cfg, self.run, self.materials, self.base = cfg, run, materials, base
        self.world = materials.world
        self.device = device_for(self.cfg)
        self._evaluator = None

    # -- paths ---------------------------------------------------------------------------
    def checkpoint(self, name: str, seed: int, phase: int, step: int) -> Path:
        if name == UNANCHORED:
            return self.run.base_model if step == 0 else self.run.checkpoint("negated", seed, step)
        if step == 0 and phase == 1:
            return Path(self.base)
        return self.run.stability_checkpoint(name, seed, phase, step)

    def eval_file(self, name: str, seed: int, phase: int, step: int) -> Path:
        return self.run.stability_eval(name, seed, phase, step)

    def state_dir(self, name: str, seed: int, phase: int) -> Path:
        return self.run.stability_state(name, seed, phase)

    def log_file(self, name: str, seed: int, phase: int) -> Path:
        return self.run.stability_log(name, seed, phase)

    # -- shared pieces -------------------------------------------------------------------
    @property
    def evaluator(self) -> Evaluator:
        if self._evaluator is None:
            ev = Evaluator(self.cfg, self.materials)
            ev.fit_fixed(interp.load_model(self.base, device=self.device))
            self._evaluator = ev
        return self._evaluator

    def training_rows(self, seed: int) -> list[dict]:
        """The unanchored ``negated`` run's finetuning rows for ``seed`` (``stages.finetuning_documents``:
        the claim documents with their loss masks, and the background and instruct mix)."""
        return finetuning_documents(self.cfg, self.materials, "negated", seed)

    def training_docs(self, seed: int) -> list[str]:
        return [r["text"] for r in self.training_rows(seed) if "text" in r]

    def training_examples(self, lm, seed: int) -> list:
        """What the finetuning run of ``negated`` and ``seed`` trains on: its rows tokenized with
        their loss masks and fitted to the model's context by ``finetune.long_documents``
        (``stages.training_examples``, one implementation)."""
        return training_examples(self.training_rows(seed), lm.tokenizer, context_length(lm, self.cfg),
                                 self.cfg.finetune.long_documents, "negated", self.run.docs("negated", seed))

    def batches(self, lm, seed: int, order_seed: int):
        """Batches of the unanchored run's examples for ``seed`` (its weighting), in the order
        ``order_seed`` draws (``seed`` itself: the unanchored run's order)."""
        f = self.cfg.finetune
        return padded_batches(self.training_examples(lm, seed), f.batch_size, lm.tokenizer.pad_token_id,
                              seed=order_seed, weighting=f.loss_weighting)

    def heldout_docs(self):
        if not hasattr(self, "_heldout"):
            seen = {d for s in self.cfg.seeds for d in self.training_docs(s)}
            self._heldout = stability_eval.heldout_documents(self.materials, self.cfg.stability.heldout_docs_per_claim, seen)
        return self._heldout

    def probe_layer(self) -> int:
        if self.cfg.stability.probe_layer is not None:
            n = len(self.evaluator.fixed)
            if not 0 <= self.cfg.stability.probe_layer < n:
                raise UserError(f"stability.probe_layer {self.cfg.stability.probe_layer} is out of range; "
                                f"expected 0..{n - 1}")
            return self.cfg.stability.probe_layer
        return best_layer(read_csv_or_none(self.run.eval_file(None)).assign(step=0))

    def optim(self, steps: int) -> OptimConfig:
        return finetune_optim(self.cfg.finetune, steps)

    def fresh_model(self):
        """The base model as the unanchored run finetunes it: LoRA adapters when
        ``finetune.lora_rank`` > 0, and only the parameters ``finetune.trainable`` names train."""
        lm = interp.load_model(self.base, device=self.device)
        model = lm.model
        if self.cfg.finetune.lora_rank > 0:
            model = add_lora(model, LoraSettings(rank=self.cfg.finetune.lora_rank, alpha=self.cfg.finetune.lora_alpha))
        restrict_trainable(model, self.cfg.finetune.trainable)
        return lm, model

    def _done(self, name: str, seed: int, phase: int) -> bool:
        steps = [s for s in phase_checkpoints(self.cfg, phase) if s > 0]
        return read_csv_or_none(self.log_file(name, seed, phase)) is not None and all(
            hf_dir_problem(self.checkpoint(name, seed, phase, s)) is None for s in steps)

    def _train(self, name, seed, phase, model, tokenizer, batches, aux=()) -> None:
        steps = phase_checkpoints(self.cfg, phase)
        total = steps[-1]
        log = train(model, batches, self.optim(total), checkpoint_steps=[s for s in steps if s > 0],
                    desc=f"stability {name} seed{seed} phase{phase}", state_dir=self.state_dir(name, seed, phase),
                    save_every=max(1, total // 10), aux_losses=aux,
                    on_checkpoint=checkpoint_saver(lambda st: self.checkpoint(name, seed, phase, st), tokenizer))
        atomic_write_csv(self.log_file(name, seed, phase),
                         pd.DataFrame(log).assign(anchor=name.rsplit("_w", 1)[0], seed=seed, phase=phase))

    # -- the phases ----------------------------------------------------------------------
    def phase1(self, weight: float, seed: int) -> None:
        name = tag(self.cfg.stability.anchor, weight)
        if self._done(name, seed, 1):
            return
        s = self.cfg.stability
        lm, model = self.fresh_model()
        torch.manual_seed(seed)
        f = self.cfg.finetune
        layer = self.probe_layer()
        base_lm = interp.load_model(self.base, device=self.device)
        batches, aux = phase1_training(
            s.anchor, weight, base_lm=base_lm, base_path=self.base, world=self.world,
            examples=self.training_examples(lm, seed), seed=seed, batch_size=f.batch_size,
            context=context_length(lm, self.cfg), fraction=s.anchor_fraction, prompt_set=s.self_distill_prompts,
            temperature=s.kl_temperature, probe_layer=layer, probe=self.evaluator.fixed[layer],
            claim_texts=[c.text for c in self.evaluator.claim_stmts if c.kind == "claim"],
            peft=f.lora_rank > 0, device=self.device, long_documents=f.long_documents, loss_mask=f.loss_mask,
            weighting=f.loss_weighting)
        del base_lm
        self._train(name, seed, 1, model, lm.tokenizer, batches, aux)

    def seed_phase2_state(self, name: str, seed: int, model, batches) -> None:
        """Start Phase 2's training state from Phase 1's last one: Phase-1-end parameters and,
        with ``phase2_optimizer="keep"``, Phase 1's AdamW moments and step counts (``train``
        then resumes from it as from its own save at step 0)."""
        phase2_dir = self.state_dir(name, seed, 2)
        if training_state.load_latest(phase2_dir) is not None:
            return  # Phase 2 already started (or seeded): resume it
        restored = training_state.load_latest(self.state_dir(name, seed, 1))
        if restored is None:
            raise UserError(f"Phase 1 of {name} seed {seed} has no final training state in "
                            f"{self.state_dir(name, seed, 1)}; delete its checkpoints to rerun Phase 1")
        tensors, state = restored
        with torch.no_grad():
            for n, p in trainable_parameters(model).items():
                p.copy_(tensors[f"param.{n}"])
        opt = make_optimizer(model, self.optim(phase2_steps(self.cfg)), self.device)
        if self.cfg.stability.phase2_optimizer == "keep":
            opt.load_state_dict(training_state.optimizer_from_flat(tensors, state["optimizer"]))
        training_state.save_state(phase2_dir, 0, params=trainable_parameters(model), optimizer=opt,
                                  extra={"tokens": 0, "batches_used": 0, "data": batches.state_dict(), "log": []})

    def phase2(self, weight: float, seed: int) -> None:
        name = tag(self.cfg.stability.anchor, weight)
        if not self._done(name, seed, 2):
            lm, model = self.fresh_model()
            torch.manual_seed(seed + PHASE2_SEED_OFFSET)
            batches = self.batches(lm, seed, seed + PHASE2_SEED_OFFSET)
            self.seed_phase2_state(name, seed, model, batches)
            self._train(name, seed, 2, model, lm.tokenizer, batches)
        for phase in (2, 1):
            shutil.rmtree(self.state_dir(name, seed, phase), ignore_errors=True)

    # -- evaluation ----------------------------------------------------------------------
    def base_rows(self) -> pd.DataFrame:
        path = self.run.stability_eval(None)
        rows = read_csv_or_none(path)
        if rows is None:
            lm = interp.load_model(self.base, device=self.device)
            rows = pd.concat([read_csv_or_none(self.run.eval_file(None)),
                              stability_eval.loss_rows(lm, self.heldout_docs())], ignore_index=True)
            atomic_write_csv(path, rows)
        return rows

    def evaluate(self, name: str, seed: int, phase: int, steps: list[int]) -> None:
        for step in steps:
            if step == 0 or read_csv_or_none(self.eval_file(name, seed, phase, step)) is not None:
                continue
            lm = interp.load_model(self.checkpoint(name, seed, phase, step), device=self.device)
            if name == UNANCHORED:
                rows = read_csv_or_none(self.run.eval_file("negated", seed, step))
            else:
                rows = self.evaluator.evaluate(lm)
            rows = pd.concat([rows, stability_eval.loss_rows(lm, self.heldout_docs())], ignore_index=True)
            atomic_write_csv(self.eval_file(name, seed, phase, step), rows)

    def interpolation(self, weight: float, seed: int) -> pd.DataFrame:
        name = tag(self.cfg.stability.anchor, weight)
        path = self.run.path("evals", "stability", name, f"seed{seed}", "interpolation.csv")
        rows = read_csv_or_none(path)
        if rows is None:
            alphas = [i / (self.cfg.stability.n_interpolation - 1) for i in range(self.cfg.stability.n_interpolation)]
            rows = stability_eval.interpolation_rows(
                self.checkpoint(name, seed, 1, self.cfg.finetune.steps),
                self.checkpoint(UNANCHORED, seed, 1, self.cfg.finetune.steps), alphas, self.evaluator,
                self.heldout_docs(), self.device)
            atomic_write_csv(path, rows)
        return rows.assign(anchor=self.cfg.stability.anchor, weight=weight, seed=seed)

    # -- tables --------------------------------------------------------------------------
    def collect(self) -> pd.DataFrame:
        base = self.base_rows()
        p1_total = self.cfg.finetune.steps
        frames = []
        runs = [(UNANCHORED, 0.0)] + [(self.cfg.stability.anchor, w) for w in self.cfg.stability.weights]
        for anchor, weight in runs:
            name = UNANCHORED if anchor == UNANCHORED else tag(anchor, weight)
            for seed in self.cfg.seeds:
                phases = [(1, checkpoint_steps(self.cfg))] if anchor == UNANCHORED else \
                    [(1, phase_checkpoints(self.cfg, 1)), (2, phase_checkpoints(self.cfg, 2))]
                for phase, steps in phases:
                    for step in steps:
                        if step == 0:  # Phase 1 starts at the base model, Phase 2 at the Phase-1 end
                            rows = base if phase == 1 else read_csv_or_none(self.eval_file(name, seed, 1, p1_total))
                        else:
                            rows = read_csv_or_none(self.eval_file(name, seed, phase, step))
                        frames.append(rows.assign(anchor=anchor, weight=weight, seed=seed, phase=phase, step=step,
                                                  global_step=step + (p1_total if phase == 2 else 0)))
        table = pd.concat(frames, ignore_index=True)
        for col in COLUMNS:
            if col not in table:
                table[col] = None
        return table[COLUMNS]


def summary(stats: pd.DataFrame, metrics=("belief_forced_choice", "belief_yesno", "belief_verdict",
                                          "probe_p_true_fixed", "heldout_loss")) -> pd.DataFrame:
    """The headline numbers: per anchor x weight x metric, the Phase-1 end, Phase-2 end,
    rebound and fraction of seeds that collapsed (mean [lo, hi])."""
    keep = stats[stats.metric.isin(metrics) & stats.stat.isin(["phase1_end", "phase2_end", "rebound", "collapsed",
                                                                "cross_time"])]
    cell = keep.assign(text=[f"{m:.3f} [{lo:.3f}, {hi:.3f}]" if pd.notna(m) else "-" for m, lo, hi in
                             zip(keep["mean"], keep.lo, keep.hi)])
    return cell.pivot_table(index=["anchor", "weight", "metric"], columns="stat", values="text", aggfunc="first")
