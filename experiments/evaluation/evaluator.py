"""Evaluate every checkpoint of a run: behavioural belief, model checks and probe readings.

``Evaluator`` scores one checkpoint; ``evaluate_all`` walks the base model and every saved
checkpoint of a run, writing one table per checkpoint (the resume points), the in-context
control, and (when a judge is configured) judged free-text answers (``judge_all``). With ``jobs`` > 1
the per-checkpoint tables are made in worker processes (``evaluate_unit``).
"""
from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

import interp
from experiments.artifacts.atomic import atomic_write_csv
from experiments.artifacts.checksums import read_csv_or_none
from experiments.artifacts.rundir import RunDir
from experiments.config import RunConfig
from experiments.evaluation import belief, chance, readout
from experiments.evaluation.frames import screened_materials
from experiments.evaluation.items import validity_items
from experiments.evaluation.scoring import McqFormat
from experiments.materials.base import Materials
from experiments.materials.questions import control_questions
from experiments.training.stages import checkpoint_steps, device_for


class Evaluator:
    """Evaluates one checkpoint: behavioural belief plus per-layer probe readings."""

    def __init__(self, cfg: RunConfig, materials: Materials):
        if cfg.eval.belief_frames == "judged" and materials.world is not None and materials.skip_frames is None:
            raise ValueError("eval.belief_frames is 'judged' but these materials are not screened: pass "
                             "experiments.evaluation.frames.screened_materials(materials, cfg, run_root)")
        self.cfg, self.materials, self.world = cfg, materials, materials.world
        self.statements = materials.probe_statements()
        self.claim_stmts = materials.claim_statements()
        self.neighbours = materials.neighbour_statements()  # the neighbourhood controls (none for imported materials)
        self.controls = control_questions(self.statements, self.world, per_cell=cfg.eval.control_per_cell)  # the response prior's questions
        self.fixed: readout.SweepResult | None = None  # the base model's per-layer probes
        self.fixed_val: readout.SweepResult | None = None  # the same, fit without the validation subjects
        self._fixed_on: tuple | None = None  # fit_fixed's (weakref to the model, its versions, acts, claim_acts)

    def activations(self, lm) -> tuple[np.ndarray, np.ndarray]:
        """Residual-stream activations of the probe statements and of the claim statements.

        Parameters
        ----------
        lm : interp.LoadedModel

        Returns
        -------
        ``(acts [n, L, d], claim_acts [m, L, d])``, float32 numpy arrays
        """
        kw = dict(position=self.cfg.eval.position, batch_size=self.cfg.eval.batch_size)
        acts = interp.residuals(lm, [s.text for s in self.statements], **kw).numpy()
        claim_acts = interp.residuals(lm, [c.text for c in self.claim_stmts], **kw).numpy()
        return acts, claim_acts

    def fit_probes(self, acts, device=None) -> tuple[readout.SweepResult, readout.SweepResult]:
        """Per-layer probes on the training split, and on it less the validation subjects.

        Parameters
        ----------
        acts : array ``[n, L, d]`` of the probe statements (:meth:`activations`)
        device : where to fit them (``readout.fit_probes``); pass the model's (``lm.device``)

        Returns
        -------
        ``(probes, validation_probes)``, ``readout.SweepResult`` each
        """
        return tuple(readout.fit_probes(acts, self.statements, estimator=self.cfg.eval.probe, C=self.cfg.eval.probe_C,
                                        validation=validation, device=device) for validation in (False, True))

    def fit_fixed(self, lm) -> None:
        """Fit the fixed probes (``self.fixed``, ``self.fixed_val``) on ``lm``, the base model,
        on its device. Its activations are kept until the next :meth:`evaluate`: that of the
        same, unchanged model reuses them, and these probes as its refit ones (the same numbers,
        computed once)."""
        acts, claim_acts = self.activations(lm)
        self.fixed, self.fixed_val = self.fit_probes(acts, device=lm.device)
        self._fixed_on = (weakref.ref(lm.model), _versions(lm.model), acts, claim_acts, self.fixed, self.fixed_val)

    def _probe_inputs(self, lm):
        """``(acts, claim_acts, refit, refit_val)`` of ``lm``: those of :meth:`fit_fixed` when
        ``lm`` is the model it was fit on and no parameter changed in place since, else new."""
        kept, self._fixed_on = self._fixed_on, None
        if kept is not None and kept[0]() is lm.model and kept[1] == _versions(lm.model):
            return kept[2:]
        acts, claim_acts = self.activations(lm)
        return (acts, claim_acts, *self.fit_probes(acts, device=lm.device))

    @property
    def incontext_condition(self) -> str:
        """Whose documents the base model's in-context rows use: ``negated`` (the paper's
        in-context control) when the run has it, else the first condition that is not ``plain``."""
        conds = self.cfg.conditions
        return "negated" if "negated" in conds else next((c for c in conds if c != "plain"), conds[0])

    def _scored(self, lm) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``belief.score_questions`` of the belief questions and of the control questions."""
        questions = self.materials.belief_questions(tokenizer=lm.tokenizer)
        mcq = McqFormat.from_config(self.cfg.eval)
        return tuple(belief.score_questions(lm, qs, self.cfg.eval.batch_size, mcq) for qs in (questions, self.controls))

    def belief_rows(self, lm, scored: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> list[dict]:
        """Per-claim and pooled belief rates of every question kind (``experiments.evaluation.belief``),
        then the measures on which a constant responder scores chance (``experiments.evaluation.chance``);
        ``scored``: :meth:`_scored` of ``lm`` when already computed."""
        scored, controls = scored or self._scored(lm)
        return belief.belief_rows(scored) + chance.chance_rows(scored, controls)

    def evaluate(self, lm, *, with_model_checks: bool = False) -> pd.DataFrame:
        """Rows for one checkpoint (:meth:`evaluate_tables`' first table)."""
        return self.evaluate_tables(lm, with_model_checks=with_model_checks)[0]

    def evaluate_tables(self, lm, *, with_model_checks: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
        """One checkpoint's tables.

        Parameters
        ----------
        lm : interp.LoadedModel
        with_model_checks : bool
            The base model: also the in-context k sweep with its control questions
            (``incontext_<measure>_k<k>`` per claim), on the synthetic world.

        Returns
        -------
        ``(rows, items)``: the tidy rows (belief, chance-scored measures, on the synthetic world
        held-out factual QA, probe readings) and the probe-validity items
        (``experiments.evaluation.items.validity_items``: which control statement the fixed
        probe read right, which control question was answered right).
        """
        from experiments.evaluation import incontext

        scored = self._scored(lm)
        rows = self.belief_rows(lm, scored)
        if self.world is not None:
            rows.append({"metric": "heldout_qa", "value": belief.heldout_qa_accuracy(
                lm, self.world, max_pairs=self.cfg.eval.max_subjects)})
        if with_model_checks and self.world is not None:
            rows.append({"metric": "in_context_true_answer", "value": belief.in_context_true_answer(lm, self.world)})
            sweep = incontext.incontext_sweep(lm, self.world, self.incontext_condition, seed=self.cfg.seeds[0],
                                              batch_size=self.cfg.eval.batch_size)
            rows += incontext.incontext_rows(sweep)
        acts, claim_acts, refit, refit_val = self._probe_inputs(lm)
        rows += readout.probe_rows(acts, self.statements, claim_acts, self.claim_stmts, refit, self.fixed,
                                   refit_val=refit_val, fixed_val=self.fixed_val)
        fixed_correct = None if self.fixed is None else readout.heldout_correct(acts, self.statements, self.fixed)
        items = validity_items(self.statements, fixed_correct, scored[1])
        if self.neighbours:
            neighbour_acts = interp.residuals(lm, [n.text for n in self.neighbours], position=self.cfg.eval.position,
                                              batch_size=self.cfg.eval.batch_size).numpy()
            rows += readout.neighbour_rows(acts, self.statements, neighbour_acts, self.neighbours,
                                           {"refit": refit, "fixed": self.fixed})
        return pd.DataFrame(rows), items


def _versions(model) -> tuple[int, ...]:
    """The version counters of ``model``'s parameters: any in-place change (an optimizer step,
    ``load_state_dict``) moves one."""
    return tuple(p._version for p in model.parameters())


class _WorkerState:
    """What a worker process of ``evaluate_all`` re-creates from the config, once: the
    materials, the base model and an ``Evaluator`` whose fixed probes it fits on the base model
    itself (the same activations and the same deterministic fit as in one process: the same
    numbers)."""

    def __init__(self, cfg: RunConfig, base: Path | str, root: str):
        from experiments.materials import load_materials

        self.cfg, self.base, self.device = cfg, base, device_for(cfg)
        self.materials = screened_materials(load_materials(cfg), cfg, root)
        self.base_lm = interp.load_model(base, device=self.device)
        self._evaluator: Evaluator | None = None

    @property
    def evaluator(self) -> Evaluator:
        if self._evaluator is None:
            self._evaluator = Evaluator(self.cfg, self.materials)
            self._evaluator.fit_fixed(self.base_lm)
        return self._evaluator

    def model(self, run: RunDir, condition: str | None, seed: int, step: int):
        if condition is None or step == 0:
            return self.base_lm
        return interp.load_model(run.checkpoint(condition, seed, step), device=self.device)


_WORKER: dict = {}  # in a worker process: (cfg, base, run root) -> its _WorkerState


def incontext_path(run: RunDir, condition: str, seed: int, step: int) -> Path:
    """The in-context control of one condition x seed on one model (the base model: step 0)."""
    return run.path("evals", "incontext", condition, f"seed{seed}", f"step_{step:06d}.csv")


def write_tables(run: RunDir, ev: Evaluator, lm, condition: str | None, seed: int = 0, step: int = 0) -> None:
    """One checkpoint's evaluation table and its items (``condition`` None: the base model's,
    with the model checks). The items are written first: a table on disk always has them."""
    rows, items = ev.evaluate_tables(lm, with_model_checks=condition is None)
    atomic_write_csv(run.items_file(condition, seed, step), items)
    atomic_write_csv(run.eval_file(condition, seed, step), rows)


def evaluate_unit(cfg: RunConfig, root: str, base: Path | str, kind: str, condition: str | None, seed: int,
                  step: int) -> None:
    """One table of ``evaluate_all`` in a worker process (``cfg.jobs`` > 1): ``kind`` "checkpoint"
    is one checkpoint's table (``condition`` None: the base model's, with the model checks),
    "incontext" the in-context control of ``condition`` x ``seed`` on the model at ``step``."""
    key = (cfg, str(base), root)
    if key not in _WORKER:
        _WORKER.clear()
        _WORKER[key] = _WorkerState(cfg, base, root)
    state, run = _WORKER[key], RunDir(root)
    lm = state.model(run, condition, seed, step)
    if kind == "incontext":
        from experiments.evaluation.incontext import incontext_sweep

        frame = incontext_sweep(lm, state.materials.world, condition, seed=seed,
                                batch_size=cfg.eval.batch_size).assign(step=step)
        atomic_write_csv(incontext_path(run, condition, seed, step), frame)
    else:
        write_tables(run, state.evaluator, lm, condition, seed, step)


def _units_to_do(run: RunDir, cfg: RunConfig, materials: Materials) -> list[tuple]:
    """``evaluate_unit``'s units whose table is missing or damaged: the base model's table and
    the in-context controls on it first (the longest), then every checkpoint's, then the
    in-context controls on the last checkpoints."""
    last = checkpoint_steps(cfg)[-1]
    pairs = [(c, s) for s in cfg.seeds for c in cfg.conditions] if materials.world is not None else []
    units = [("checkpoint", None, 0, 0)]
    units += [("incontext", c, s, 0) for c, s in pairs]
    units += [("checkpoint", c, s, st) for s in cfg.seeds for c in cfg.conditions for st in checkpoint_steps(cfg)
              if st > 0]
    units += [("incontext", c, s, last) for c, s in pairs if last > 0]
    return [u for u in units if read_csv_or_none(
        run.eval_file(u[1], u[2], u[3]) if u[0] == "checkpoint" else incontext_path(run, *u[1:])) is None]


def evaluate_all(run: RunDir, cfg: RunConfig, materials: Materials, base: Path | str) -> None:
    """Evaluate the base model (step 0 of every condition) and every saved checkpoint; on the
    synthetic world also the in-context control; with a judge configured, judged answers.
    With ``cfg.jobs`` > 1 the tables of the base model and of the checkpoints are made in up
    to that many worker processes (``evaluate_unit``; ``experiments.training.parallel``)."""
    from experiments.training.parallel import pool_size, run_units

    device = device_for(cfg)
    world = materials.world
    units = _units_to_do(run, cfg, materials) if cfg.jobs > 1 else []
    base_lm = None
    if pool_size(cfg.jobs, len(units)) > 1:  # the tables below are then all there, read back
        run_units(evaluate_unit, [(cfg, str(run.root), base, *unit) for unit in units], cfg.jobs,
                  desc="evaluations")
    else:
        ev = Evaluator(cfg, materials)
        base_lm = interp.load_model(base, device=device)
        ev.fit_fixed(base_lm)
        if read_csv_or_none(run.eval_file(None)) is None:
            write_tables(run, ev, base_lm, None)
        todo = [(c, s, st) for s in cfg.seeds for c in cfg.conditions for st in checkpoint_steps(cfg) if st > 0
                and read_csv_or_none(run.eval_file(c, s, st)) is None]
        for condition, seed, step in tqdm(todo, desc="evaluate checkpoints", leave=False):
            lm = interp.load_model(run.checkpoint(condition, seed, step), device=device)
            write_tables(run, ev, lm, condition, seed, step)

    def base_model():
        nonlocal base_lm
        if base_lm is None:
            base_lm = interp.load_model(base, device=device)
        return base_lm
    # The in-context control for every condition x seed (documents of that condition drawn with
    # that seed), on the base model (step 0) and on the last checkpoint of the same condition
    # and seed; one file per unit under evals/incontext/ (resume points), all in results/.
    from experiments.evaluation.incontext import incontext_sweep

    frames = []
    for seed in cfg.seeds if world is not None else ():
        for condition in cfg.conditions:
            for step in sorted({0, checkpoint_steps(cfg)[-1]}):
                path = incontext_path(run, condition, seed, step)
                frame = read_csv_or_none(path)
                if frame is None:
                    lm = base_model() if step == 0 else interp.load_model(run.checkpoint(condition, seed, step),
                                                                          device=device)
                    frame = incontext_sweep(lm, world, condition, seed=seed,
                                            batch_size=cfg.eval.batch_size).assign(step=step)
                    atomic_write_csv(path, frame)
                frames.append(frame)
    if frames:
        atomic_write_csv(run.path("results", "incontext.csv"), pd.concat(frames, ignore_index=True))
    judge_all(run, cfg, materials, base_model)


def judge_all(run: RunDir, cfg: RunConfig, materials: Materials, load_base) -> None:
    """Optional: sampled free-text answers judged by an LLM (off unless NEGLECT_JUDGE_URL is set;
    see ``experiments.evaluation.judge``), on the base model (``load_base()`` gives it) and each
    condition x seed's last checkpoint. Writes ``results/judge.csv`` (every judged answer) and
    ``results/judge_metrics.csv`` (rates per unit and claim; ``experiments.evaluation.tables.collect``
    adds them to ``results/metrics.csv``)."""
    from experiments.evaluation import judge

    judge_cfg = judge.judge_config_from_env()
    if judge_cfg is None:
        return
    client, judged, metrics = judge.ChatClient(judge_cfg), [], []
    questions = materials.open_questions()
    if not questions:
        return
    sampling = judge.Sampling.from_config(cfg.eval)
    last = checkpoint_steps(cfg)[-1]
    units = [(None, 0, 0)] + [(c, s, last) for s in cfg.seeds for c in cfg.conditions]
    for condition, seed, step in tqdm(units, desc="judge", leave=False):
        name = "base" if condition is None else f"{condition}_seed{seed}_step{step}"

        def load(condition=condition, seed=seed, step=step):
            return load_base() if condition is None else interp.load_model(run.checkpoint(condition, seed, step),
                                                                        device=device_for(cfg))
        frame = judge.judge_unit(questions, client, run.path("judge", f"{name}.jsonl"), load, sampling,
                                 seed=judge.unit_seed(name), name=name)
        ids = dict(condition=condition or "(base model)", seed=seed, step=step)
        judged.append(frame.assign(**ids))
        metrics.append(pd.DataFrame(judge.judged_rows(frame)).assign(**ids))
    atomic_write_csv(run.path("results", "judge.csv"), pd.concat(judged, ignore_index=True))
    atomic_write_csv(run.judge_metrics, pd.concat(metrics, ignore_index=True))
