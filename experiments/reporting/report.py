"""A run directory -> figures and one self-contained HTML report.

The tables (``results/metrics.csv``, training logs) are read, never recomputed. The figures
that need activations (projection with a checkpoint slider, direction similarity and drift)
read them from ``figures_cache/``: one safetensors file per checkpoint holding the statement
activations at every layer and the refit probe per layer. That cache is filled once from the
saved checkpoints (``cache_activations``), by the first report of a run, and reused after;
a run whose checkpoints were deleted still gets every table figure.

Figure functions themselves live in ``experiments.reporting.plots`` and take data, not paths.
"""
from __future__ import annotations

import hashlib
import html
import json
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from experiments.causal.patching import patching_summary
from experiments.causal.steering import steering_summary
from experiments.reporting import plots
from experiments.errors import UserError
from experiments.evaluation.chance import CHANCE, HEADLINE, chance_level
from experiments.evaluation.controls import (KEYS, MAX_DROP, NEGATIVE_MAX, POSITIVE_BELIEF_MIN, PROBE_P_MIN,
                                             PROBE_Z_MIN, compute_controls, controls_table, failed, summary_lines)
from experiments.evaluation.frames import JUDGED_FRAME_BOUND
from experiments.evaluation.stats import best_layer, units_line
from experiments.evaluation.tables import item_reader
from experiments.reporting.plots import BELIEF_METRICS
from experiments.artifacts.atomic import atomic_write_text, write_file
from experiments.artifacts.checksums import read_csv_or_none
from experiments.artifacts.rundir import FIGURES_CACHE as CACHE_DIR, RunDir

CACHE_FORMAT = "1"  # bump when the meaning of cached arrays changes
# The panels of the chance-level figure: the headline measures, then the balanced rates and contrasts per kind.
CHANCE_FIGURE = HEADLINE + ("belief_balanced_yesno", "belief_balanced_verdict", "belief_contrast_yesno",
                            "belief_contrast_verdict")


# ---------------------------------------------------------------------------- tables

def load_metrics(run_dir: str | Path) -> pd.DataFrame:
    run = RunDir(run_dir)
    table = read_csv_or_none(run.metrics)
    if table is None:
        raise UserError(f"{str(run.metrics)!r} is missing or unreadable; run `neglect run --out {run_dir}` first")
    return table


def load_train_logs(run_dir: str | Path) -> pd.DataFrame | None:
    """All finetuning logs of a run as one table (step, loss, condition, seed), or None."""
    frames = [read_csv_or_none(p) for p in sorted((Path(run_dir) / "results" / "train_logs").glob("*.csv"))]
    frames = [f for f in frames if f is not None and len(f)]
    return pd.concat(frames, ignore_index=True) if frames else None


def judged_metrics(table: pd.DataFrame) -> tuple[str, ...]:
    """The judged belief rates a run has (``judge_belief_<kind>``, from the optional judge; see
    ``experiments.evaluation.judge``), in kind order."""
    return tuple(sorted(m for m in set(table.metric) if m.startswith("judge_belief_") and not m.endswith("_chance")))


# Claim packs' belief measures side by side: the judge-free MCQ rate, the judged rates, the labelled proxy.
PACK_BELIEF = ("belief_yesno",)
PROXY_METRICS = ("proxy_belief_robustness",)


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per condition at the last step: belief rates, the headline measures on which a
    constant answer scores chance (``experiments.evaluation.chance.HEADLINE``, beside the raw
    rates), the judged belief rates and the labelled proxy where the run has them, and the best
    layer's probe readings."""
    layer = best_layer(table)
    behaviour = BELIEF_METRICS + HEADLINE + judged_metrics(table) + PROXY_METRICS + ("heldout_qa",)
    probes = ("probe_p_true_refit", "probe_p_true_fixed")
    last = table[table.step == table.step.max()]
    out = last[last.metric.isin(behaviour)].groupby(["condition", "metric"]).value.mean()
    probe = last[(last.layer == layer) & last.metric.isin(probes)]
    out = pd.concat([out, probe.groupby(["condition", "metric"]).value.mean()]).unstack("metric")
    base = table[table.step == 0]
    base_row = base[base.metric.isin(behaviour)].groupby("metric").value.mean()
    base_probe = base[(base.layer == layer) & base.metric.isin(probes)]
    base_row = pd.concat([base_row, base_probe.groupby("metric").value.mean()])
    out.loc["(base model)"] = base_row
    order = (sorted(BELIEF_METRICS) + list(HEADLINE) + list(judged_metrics(table)) + list(PROXY_METRICS)
             + ["heldout_qa"] + sorted(probes))
    out = out[[m for m in order if m in out.columns]]
    out.columns.name = f"step {int(table.step.max())}, probe layer {layer}"
    return out.round(3)


def chance_note(columns) -> str:
    """What chance is for each of ``columns`` that has a chance level (for the summary)."""
    known = [f"{c} {chance_level(c):g}" for c in columns if chance_level(c) is not None]
    return ("Chance for a model whose answer ignores the question: " + ", ".join(known) + "; the raw rates' "
            "chance depends on how the model answers (see the figure notes)." if known else "")


def controls_section(controls: dict) -> str:
    """The report's "Controls" section: one line per control (failures marked) and a table of
    every checked measure (``experiments.evaluation.controls``)."""
    bad = failed(controls)
    lines = "".join(f"<li class='fail'>&#10007; {html.escape(line)}</li>" if key in bad else
                    f"<li>{html.escape(line)}</li>" for key, line in zip(KEYS, summary_lines(controls)))
    head = "Controls" + (f" <span class='fail'>&#10007; {len(bad)} failed</span>" if bad else "")
    table = controls_table(controls)
    rows = table.to_html(index=False) if len(table) else ""
    about = ("Positive control: plain documents must implant the claim (balanced yes/no and verdict belief "
             f">= {POSITIVE_BELIEF_MIN:g}, and the fixed base probe reads it as true: P(true) >= {PROBE_P_MIN:g} or "
             f"z >= {PROBE_Z_MIN:g}). Negative control: local negation must not (every belief measure "
             f"<= {NEGATIVE_MAX:g}). Probe validity: control-statement probe accuracy and answer accuracy on "
             f"untouched facts drop by <= {MAX_DROP:g} in every condition (the bound reads the point estimate; "
             "each drop's interval is a paired bootstrap over the held-out subjects or control questions it is "
             "read on, the finetuning seeds held fixed). Means over claims, then seeds, at the "
             "last checkpoint; the probe layer is chosen on the base model's validation accuracy. A failed "
             "control means the belief measures of this run cannot be read as findings.")
    return (f"<h2 id='controls'>{head}</h2><ul class='controls'>{lines}</ul>{rows}"
            f"<p>{html.escape(about)}</p>")


def worst_frame_note(figures: dict) -> str:
    """A sentence on the statement frame the base model judges worst on never-judged facts
    (``unjudged_verdict_worst_frame`` of check-base) and one on the frame the statement probe
    reads worst (``statement_probe_worst_frame``); "" for each that check-base has not."""
    note = ""
    frame = figures.get("unjudged_verdict_worst_frame")
    if frame is not None:
        f = figures["unjudged_verdict_by_frame"][frame]
        note += (f" The statement frame judged worst on never-judged facts: \"{frame}\" (true statements "
                 f"{f['true_acc']:.2f}, false ones {f['false_acc']:.2f}, balanced {f['balanced_acc']:.2f}; chance 0.5; "
                 "belief items in a frame the model cannot judge read its answer bias, not belief).")
    frame = figures.get("statement_probe_worst_frame")
    if frame is not None:
        f = figures["statement_probe_by_frame"][frame]
        note += (f" The frame the statement probe reads worst at its layer: \"{frame}\" ({f['acc']:.2f} on "
                 f"{f['n']} held-out statements; chance 0.5; the precondition reads every frame).")
    return note


def belief_frames_note(figures: dict) -> str:
    """One sentence on the belief-frame screen (``experiments.evaluation.frames``): the frames
    the run's belief items leave out, with the unscreened ``claim_belief_max`` beside; "" when
    the run does not screen (``eval.belief_frames`` "all")."""
    skipped = figures.get("belief_frames_skipped")
    if skipped is None:
        return ""
    if not skipped:
        return " Belief items use every statement frame: the base model judges each (balanced verdict accuracy >= 0.95)."
    names = "; ".join(f"\"{f}\"" for f in skipped)
    return (f" Belief items leave out {len(skipped)} statement frame{'s' * (len(skipped) > 1)} the base model does "
            f"not judge on never-judged facts (balanced verdict accuracy < {JUDGED_FRAME_BOUND:g}, decided before "
            f"finetuning, in every condition and checkpoint): {names}. Over every frame claim_belief_max would read "
            f"{figures.get('claim_belief_max_all_frames', float('nan')):.3f}.")


def preconditions_section(figures: dict, world: str = "") -> str:
    """The report's "Base model" section: each precondition of
    ``experiments.evaluation.preconditions`` with its value, bound and pass/fail (failures marked);
    ``world`` (e.g. "world 1") names whose base model it is in a run of several worlds."""
    from experiments.evaluation.preconditions import PRECONDITIONS, precondition_table

    rows = precondition_table(figures)
    bad = [r for r in rows if r["passed"] is False]
    head = ("Base model preconditions" + (f" ({html.escape(world)})" if world else "")
            + (f" <span class='fail'>&#10007; {len(bad)} failed</span>" if bad else ""))
    anchor = "preconditions" + (f"-{world.replace(' ', '-')}" if world else "")
    mark = {True: "pass", False: "&#10007; FAIL", None: "not measured"}
    def value(r) -> str:
        return "" if r["value"] is None else f"{r['value']:.3f}"

    body = "".join(
        f"<tr{' class=fail' if r['passed'] is False else ''}><td>{html.escape(r['name'])}</td><td>{value(r)}</td>"
        f"<td>{html.escape(r['op'])} {r['bound']:g}</td><td>{mark[r['passed']]}</td></tr>" for r in rows)
    extra = {k: figures[k] for k in ("statement_probe_best_layer", "verdict_probe_best_acc", "verdict_logit_acc")
             if k in figures}
    if "statement_probe_best_ci" in figures:  # a base model checked before the interval existed has none
        lo, hi = figures["statement_probe_best_ci"]
        extra["statement_probe_best_ci"] = (f"[{lo:.3f}, {hi:.3f}] (95% bootstrap over "
                                            f"{figures['statement_probe_ci_subjects']} held-out subjects)")
    about = ("Before finetuning results mean anything the base model must answer questions about entities it "
             "only read about, judge facts it never saw judged (chance 0.5), carry a truth signal at the bare "
             "statement's final token (held-out entities, chance 0.5), read context both ways and disbelieve "
             f"every claim ({len(PRECONDITIONS)} checks, `neglect check-base`). Beside the statement probe: "
             + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in extra.items()) + "."
             + worst_frame_note(figures) + belief_frames_note(figures))
    return (f"<h2 id='{anchor}'>{head}</h2><table><tr><th>figure</th><th>value</th><th>bound</th>"
            f"<th></th></tr>{body}</table><p>{html.escape(about)}</p>")


# ---------------------------------------------------------------------------- activation cache

@dataclass
class ActivationSet:
    """Cached activations of one run, by ``(condition, seed)``, with the checkpoint axis first.

    ``acts[(c, s)]`` ``[T, n, L, d]`` control statements; ``claim_acts[(c, s)]`` ``[T, m, L, d]``;
    ``coef[(c, s)]`` ``[T, L, d]`` and ``intercept[(c, s)]`` ``[T, L]`` the refit logistic
    probe per checkpoint and layer (raw space, pointing at "true"); ``steps`` labels ``T``.
    """

    statements: pd.DataFrame  # text, label, negated, split
    claims: pd.DataFrame  # claim, kind, text
    steps: list[int]
    conditions: list[str]
    seeds: list[int]
    acts: dict = field(repr=False)
    claim_acts: dict = field(repr=False)
    coef: dict = field(repr=False)
    intercept: dict = field(repr=False)

    @property
    def n_layers(self) -> int:
        return next(iter(self.coef.values())).shape[1]

    def check_layer(self, layer: int) -> int:
        if not 0 <= int(layer) < self.n_layers:
            raise UserError(f"layer {layer} is out of range; expected 0..{self.n_layers - 1}")
        return int(layer)

    def layer_acts(self, layer: int, seed: int | None = None) -> tuple[dict, dict]:
        """``({condition: [T, n, d]}, {condition: [T, m, d]})`` at one layer for one seed."""
        layer, seed = self.check_layer(layer), self.seeds[0] if seed is None else seed
        if seed not in self.seeds:
            raise UserError(f"seed {seed} is not in this run; expected one of {self.seeds}")
        return ({c: self.acts[(c, seed)][:, :, layer] for c in self.conditions},
                {c: self.claim_acts[(c, seed)][:, :, layer] for c in self.conditions})

    def directions(self, layer: int | None = None) -> dict[str, np.ndarray]:
        """``{condition: [S, T, L, d]}`` refit directions, or ``[S, T, d]`` at one ``layer``."""
        out = {c: np.stack([self.coef[(c, s)] for s in self.seeds]) for c in self.conditions}
        return out if layer is None else {c: d[:, :, self.check_layer(layer)] for c, d in out.items()}


def _run_config(run_dir: Path):
    from experiments.config import load_config

    path = run_dir / "config.json"
    if not path.is_file():
        raise UserError(f"{str(path)!r} is missing; {str(run_dir)!r} is not a run directory from `neglect run`")
    return load_config("demo", path)


def _fingerprint(config_text: str, texts: list[str], position: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([CACHE_FORMAT, config_text, texts, position]).encode())
    return h.hexdigest()


def _read_entry(path: Path, fingerprint: str) -> dict[str, np.ndarray] | None:
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as f:
            if (f.metadata() or {}).get("fingerprint") != fingerprint:
                return None
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception:  # a truncated or foreign file is recomputed, never trusted
        return None


def _write_entry(path: Path, arrays: dict[str, np.ndarray], fingerprint: str) -> None:
    from safetensors.numpy import save_file

    tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
    write_file(path, lambda tmp: save_file(tensors, str(tmp), metadata={"fingerprint": fingerprint,
                                                                        "format": CACHE_FORMAT}))


def checkpoint_activations(model_dir, statements, claim_stmts, *, position: str = "last", batch_size: int | None = None,
                           probe_C: float = 0.1, estimator: str = "logistic", device=None) -> dict[str, np.ndarray]:
    """Activations of one checkpoint at every layer, plus its refit truth probe per layer.

    Returns ``acts [n, L, d]``, ``claim_acts [m, L, d]``, ``coef [L, d]``, ``intercept [L]``.
    The probe is the pipeline's (``readout.fit_probes`` with ``estimator``, ``eval.probe``),
    so directions match the readings in ``metrics.csv``.
    """
    import interp
    from experiments.evaluation import readout

    lm = interp.load_model(model_dir, device=device)
    kw = dict(position=position, batch_size=batch_size)
    acts = interp.residuals(lm, [s.text for s in statements], **kw).numpy()
    claim_acts = interp.residuals(lm, [c.text for c in claim_stmts], **kw).numpy()
    fitted = readout.fit_probes(acts, statements, estimator=estimator, C=probe_C, device=lm.device)
    return {"acts": acts, "claim_acts": claim_acts, "coef": fitted.coef, "intercept": fitted.intercept}


def _device(configured: str | None) -> str:
    import torch

    return configured or ("cuda" if torch.cuda.is_available() else "cpu")


def cache_activations(run_dir: str | Path, *, compute: bool = True, progress: bool = True) -> ActivationSet | None:
    """The run's :class:`ActivationSet`, read from ``figures_cache/`` and filled from the
    checkpoints where missing (``compute=False``: only read). ``None`` when an entry is missing
    and cannot be made (checkpoints deleted, or ``compute=False``)."""
    from experiments.evaluation.frames import screened_materials
    from experiments.materials import load_materials

    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    cfg = _run_config(run_dir)
    materials = screened_materials(load_materials(cfg), cfg, run_dir)
    statements, claim_stmts = materials.probe_statements(), materials.claim_statements()
    fingerprint = _fingerprint((run_dir / "config.json").read_text(),
                               [s.text for s in statements] + [c.text for c in claim_stmts], cfg.eval.position)
    steps = sorted(int(s) for s in load_metrics(run_dir).step.unique())  # the checkpoint schedule that was run
    base_dir = Path(cfg.base_model) if cfg.base_model and Path(cfg.base_model).exists() else (
        cfg.base_model or run.base_model)
    jobs = [(None, 0, 0, base_dir)] + [(c, s, st, run.checkpoint(c, s, st)) for s in cfg.seeds
                                        for c in cfg.conditions for st in steps if st > 0]
    entries: dict[tuple, dict] = {}
    todo = []
    for cond, seed, step, model_dir in jobs:
        entry = _read_entry(run.figure_cache(cond, seed, step), fingerprint)
        if entry is not None:
            entries[(cond, seed, step)] = entry
        elif not compute or (isinstance(model_dir, Path) and not (model_dir / "config.json").is_file()
                             and not (model_dir / "adapter_config.json").is_file()):
            return None
        else:
            todo.append((cond, seed, step, model_dir))
    if todo:
        from tqdm.auto import tqdm

        if progress:
            print(f"caching activations of {len(todo)} checkpoint(s) in {run.path(CACHE_DIR)} (once per run)",
                  file=sys.stderr)
        quiet = {} if progress else {"disable": True}  # an explicit disable=False would override TQDM_DISABLE
        for cond, seed, step, model_dir in tqdm(todo, desc="figure activations", leave=False, **quiet):
            entry = checkpoint_activations(model_dir, statements, claim_stmts, position=cfg.eval.position,
                                           batch_size=cfg.eval.batch_size, probe_C=cfg.eval.probe_C,
                                           estimator=cfg.eval.probe, device=_device(cfg.device))
            _write_entry(run.figure_cache(cond, seed, step), entry, fingerprint)
            entries[(cond, seed, step)] = entry
    out = {k: {} for k in ("acts", "claim_acts", "coef", "intercept")}
    for cond in cfg.conditions:
        for seed in cfg.seeds:
            per_step = [entries[(None, 0, 0)] if st == 0 else entries[(cond, seed, st)] for st in steps]
            for key in out:
                out[key][(cond, seed)] = np.stack([e[key] for e in per_step])
    return ActivationSet(
        statements=pd.DataFrame([dict(text=s.text, label=s.label, negated=s.negated, split=s.split) for s in statements]),
        claims=pd.DataFrame([dict(claim=c.claim, kind=c.kind, text=c.text) for c in claim_stmts]),
        steps=list(steps), conditions=list(cfg.conditions), seeds=list(cfg.seeds), **out)


# ---------------------------------------------------------------------------- figures of a run

class RunData:
    """What the figures of one run directory need, loaded lazily and at most once."""

    def __init__(self, run_dir: str | Path, *, compute_activations: bool = True):
        self.root = Path(run_dir)
        self.compute_activations = compute_activations

    @cached_property
    def table(self) -> pd.DataFrame:
        return load_metrics(self.root)

    @cached_property
    def train_logs(self) -> pd.DataFrame | None:
        return load_train_logs(self.root)

    @cached_property
    def pretrain_log(self) -> pd.DataFrame | None:
        return read_csv_or_none(self.root / "results" / "pretrain_log.csv")

    @cached_property
    def activations(self) -> ActivationSet | None:
        """The activation cache, or None (with ``activation_problem`` saying why) when it
        cannot be had: a report is still worth writing without its three activation figures,
        and ``neglect run`` must not fail at its last step because a checkpoint will not load."""
        self.activation_problem = None
        if self.worlds > 1:  # checkpoints and training logs are per world
            self.activation_problem = (f"a run of {self.worlds} worlds: the activation and loss figures are in each "
                                       "world's report, worlds/w<k>/report.html")
            return None
        try:
            acts = cache_activations(self.root, compute=self.compute_activations)
        except Exception as exc:  # noqa: BLE001 - reported on stderr and in the report, not swallowed
            self.activation_problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            print(f"neglect: warning: activation figures skipped ({self.activation_problem})", file=sys.stderr)
            return None
        if acts is None:
            self.activation_problem = "checkpoints missing and no complete figures_cache/"
        return acts

    def layer(self, layer: int | None) -> int:
        return best_layer(self.table) if layer is None else int(layer)

    @cached_property
    def worlds(self) -> int:
        """How many worlds the run has (config key ``worlds``; 1 when config.json does not say)."""
        try:
            return int(json.loads((self.root / "config.json").read_text()).get("worlds", 1))
        except (OSError, ValueError, UnicodeDecodeError, AttributeError):
            return 1


def _projection(data: RunData, layer: int | None) -> go.Figure | None:
    acts = data.activations
    if acts is None:
        return None
    layer = data.layer(layer)
    statement_acts, claim_acts = acts.layer_acts(layer)
    return plots.projection_figure(statement_acts, claim_acts, acts.steps, labels=acts.statements.label,
                                   negated=acts.statements.negated, claim_names=acts.claims.claim,
                                   claim_kinds=acts.claims.kind, layer=layer)


def _similarity(data: RunData, layer: int | None) -> go.Figure | None:
    acts = data.activations
    if acts is None:
        return None
    layer = data.layer(layer)
    return plots.direction_similarity_figure(acts.directions(layer), acts.steps, layer=layer)


def _drift(data: RunData, layer: int | None) -> go.Figure | None:
    acts = data.activations
    return None if acts is None else plots.direction_drift_figure(acts.directions(), acts.steps)


def _loss(data: RunData, layer: int | None) -> go.Figure | None:
    if data.train_logs is None:
        return None
    return plots.loss_figure(data.train_logs, data.pretrain_log, conditions=list(dict.fromkeys(data.table.condition)))


def _with_metric(metric: str, build: Callable[[pd.DataFrame], go.Figure]) -> Callable[[RunData, int | None], go.Figure | None]:
    """A figure builder that needs ``metric`` in the table (None for runs made before it existed)."""
    return lambda data, layer: build(data.table) if metric in set(data.table.metric) else None


def _with_present(build: Callable[[pd.DataFrame, tuple, int | None], go.Figure], metrics) \
        -> Callable[[RunData, int | None], go.Figure | None]:
    """A figure of those belief ``metrics`` that the run has (imported claim packs give only some
    question kinds): ``build(table, present, layer)``; None when it has none of them."""
    def figure(data: RunData, layer: int | None) -> go.Figure | None:
        present = tuple(m for m in metrics if m in set(data.table.metric))
        return build(data.table, present, layer) if present else None

    return figure


def _incontext(data: RunData, layer: int | None) -> go.Figure | None:
    table = read_csv_or_none(data.root / "results" / "incontext.csv")
    return None if table is None or table.empty else plots.incontext_figure(table)


def _results_table(data: RunData, name: str) -> pd.DataFrame | None:
    """``results/<name>.csv`` of the run, read once (None when absent or empty)."""
    cache = data.__dict__.setdefault("_results_tables", {})
    if name not in cache:
        table = read_csv_or_none(data.root / "results" / f"{name}.csv")
        cache[name] = None if table is None or table.empty else table
    return cache[name]


def _from_results(build: Callable[..., go.Figure], name: str = "stability", with_layer: bool = True):
    """A builder for a figure of ``results/<name>.csv`` (None for runs without that table: the
    stability protocol's for runs without ``neglect stability``, pretraining tracking's for runs
    that did not pretrain with ``pretrain.track_every``)."""
    def builder(data: RunData, layer: int | None) -> go.Figure | None:
        table = _results_table(data, name)
        if table is None:
            return None
        return build(table, layer) if with_layer else build(table)
    return builder


def _patching(table: str):
    """A builder for the activation-patching figure of ``results/<table>.csv`` (``neglect patch``)."""
    return _from_results(lambda rows: plots.patching_figure(patching_summary(rows)), table, with_layer=False)


@dataclass(frozen=True)
class FigureSpec:
    build: Callable[[RunData, int | None], go.Figure | None]  # None: the data it needs is absent
    about: str


FIGURES: dict[str, FigureSpec] = {
    "belief_vs_step": FigureSpec(_with_present(lambda t, m, _: plots.belief_figure(t, metrics=m), BELIEF_METRICS),
                                 "Behavioural belief in the implanted claims (forced choice, yes/no, verdict) per "
                                 "condition; bands are 95% t-intervals over claims > seeds (hover: units and n). These raw rates carry "
                                 "response priors: forced choice (claim answer over the true one) is 0.5 for a "
                                 "random pick; yes/no is 0.5 for a constant answer when its items are balanced (the "
                                 "world's are: one yes, one no per claim); on the world's verdicts a believer says "
                                 "true to 4 items and false to 6, so constant 'false' scores 0.6 and constant "
                                 "'true' 0.4. See belief chance vs step for measures at chance by construction."),
    "belief_table": FigureSpec(_with_present(lambda t, m, _: plots.belief_table_figure(t, metrics=m),
                                             plots.ALL_BELIEF_METRICS),
                               "Belief rates at the base model and the last checkpoint, per condition and measure, "
                               "with 95% t-intervals over claims > seeds and n at each level. "
                               "Association: forced choice among the claim's answer, the true answer and "
                               "distractors, and cloze token association; propositional: yes/no, true/false "
                               "verdicts, and yes/no after a challenge (robustness). Chance differs by measure: "
                               "1/k for k-way forced choice and token association (0.2 with three distractors), "
                               "0.5 for a random yes/no, and for a constant answer the share of items whose "
                               "believer answer it is (world verdicts 0.6 for 'false', 0.4 for 'true'); the "
                               "families pool kinds with different chance."),
    "belief_over_seeds": FigureSpec(_with_present(lambda t, m, _: plots.belief_seeds_figure(t, metrics=m),
                                                  plots.ALL_BELIEF_METRICS),
                                    "Every belief measure vs step with 95% t-intervals over claims > seeds."),
    "belief_chance_vs_step": FigureSpec(
        _with_present(lambda t, m, _: plots.belief_seeds_figure(t, metrics=m, chance=CHANCE), CHANCE_FIGURE),
        "Belief measures on which a model whose answer ignores the question scores chance (dashed line), "
        "bands 95% t-intervals over claims > seeds: balanced rates (the belief rate among items a believer answers "
        "yes/true and among those he answers no/false, averaged; chance 0.5); endorse claim and reject truth "
        "(the probability of the believer's answer on the items asserting the claim or its negation, and on "
        "those asserting the true fact, with the response prior measured on untouched control statements "
        "removed on the log-odds scale; chance 0.5); contrasts (mean log-odds of yes/true on items a "
        "believer affirms minus on items he denies, in nats; on the world's yes/no, logit(yes | claim) - "
        "logit(yes | true fact); chance 0); association chance-corrected, (accuracy - 1/k) / (1 - 1/k) "
        "with ties split (chance 0). Claim packs: items a believer answers yes count as endorsing the claim, "
        "items he answers no as rejecting what the claim rules out."),
    "judged_belief": FigureSpec(
        lambda d, _: (plots.belief_table_figure(d.table, metrics=PACK_BELIEF + judged_metrics(d.table) + PROXY_METRICS)
                      if judged_metrics(d.table) else None),
        "Belief from the claim packs, three ways, at the base model and the last checkpoint: yesno is the judge-free "
        "MCQ rate (log-probability of the believer's option under the MCQ instruction; 0.5 for a random pick); "
        "judge belief <kind> is the share of sampled free-text answers (open-ended, token association, robustness) "
        "that the LLM judge, prompted with the pack's judges.yaml, labels as stating the claim (chance 0: a model "
        "that does not hold a fabricated claim states it only by accident; read it against the base model's "
        "rate); proxy belief robustness is the judge-free stand-in, the MCQ items under each robustness item's "
        "system prompt (a proxy, not the paper's measure). Judged rates exist only where the judge was on "
        "(NEGLECT_JUDGE_URL); metrics.csv also has judge_denial/neutral/parse_errors/n per kind."),
    "association_vs_belief": FigureSpec(_with_metric("belief_association", plots.association_belief_figure),
                                        "Association (which answer the model prefers) against propositional belief "
                                        "(what it says when asked whether the claim is true), per condition."),
    "incontext_control": FigureSpec(_incontext,
                                    "The same condition documents in context instead of in the weights: belief in "
                                    "the claim vs the number of documents k, with control questions about the "
                                    "documents' context sentences (a model that says 'no' to everything after a "
                                    "retraction would fail them). Solid: base model; dashed: the last checkpoint "
                                    "finetuned on that condition; bands over claims > seeds (document draws)."),
    "probe_reading_vs_step": FigureSpec(lambda d, layer: plots.probe_reading_figure(d.table, layer),
                                        "What the truth probe reads off the claim statements: the fixed probe (fit "
                                        "on the base model) and a probe refit at each checkpoint."),
    "probe_accuracy_heatmap": FigureSpec(lambda d, layer: plots.probe_accuracy_heatmap(d.table),
                                         "Held-out accuracy of the truth probes on control statements, per layer and "
                                         "checkpoint: is there still a truth direction, and does the fixed one still "
                                         "work?"),
    "fixed_vs_refit": FigureSpec(lambda d, layer: plots.fixed_refit_gap_figure(d.table, layer),
                                 "Divergence between fixed and refit probes: when it grows, the base model's "
                                 "probe no longer measures what it measured."),
    "belief_vs_probe": FigureSpec(_with_present(lambda t, m, layer: plots.belief_probe_scatter(t, layer, belief=m[0]),
                                                BELIEF_METRICS),
                                  "Behavioural belief against the refit probe's reading, per claim and checkpoint."),
    "activation_projection": FigureSpec(_projection,
                                        "Control statements and claims in a fixed 2-D PCA view of the base model's "
                                        "activations; drag the slider to move through checkpoints."),
    "direction_similarity": FigureSpec(_similarity,
                                       "Cosine similarity of the refit truth-probe directions between checkpoints "
                                       "(mean over seeds)."),
    "direction_drift": FigureSpec(_drift, "Cosine of each checkpoint's refit direction to the base model's, per "
                                          "layer."),
    "loss_curves": FigureSpec(_loss, "Finetuning loss per condition (thin lines: seeds) and pretraining loss."),
    "stability_timeline": FigureSpec(_from_results(plots.stability_timeline_figure),
                                     "Stability protocol (neglect stability): Phase 1 finetunes on negated documents "
                                     "plus an anchor, Phase 2 (after the dotted line) on negated documents only. "
                                     "Belief, the probe's truth reading of the claims (fixed and refit) and the fixed "
                                     "probe's control accuracy on one time axis; dashed grey: the unanchored run."),
    "stability_losses": FigureSpec(_from_results(plots.stability_loss_figure, with_layer=False),
                                   "Stability protocol: loss on held-out negated documents (all tokens, claim spans, "
                                   "warning spans), to check that anchored and unanchored runs fit the documents "
                                   "equally well."),
    "stability_interpolation": FigureSpec(_from_results(plots.interpolation_figure, "interpolation"),
                                          "Stability protocol: loss and belief along the straight line in weight "
                                          "space from the Phase-1 end (alpha 0) to the unanchored run's end "
                                          "(alpha 1)."),
    "belief_patching": FigureSpec(
        _patching("patching"),
        "Activation patching (neglect patch): the share of each claim's yes/no margin shift over finetuning "
        "(endorsing the claim; rejecting the true fact) that one site carries, the checkpoint's residual stream "
        "written into the base model there (top) or the base model's into the checkpoint (bottom); sites are "
        "the claim subject's tokens, the asked object's, the last token and every token, per layer (residual "
        "index: 1 is after block 0). 0: none, the null of a site finetuning left alone; 1: all of it; mean over "
        "claims > seeds (hover: 95% t-interval). Only for runs patched with neglect patch."),
    "belief_patching_forced_choice": FigureSpec(
        _patching("patching_forced_choice"),
        "The same for the forced-choice question (the association: the claim's answer against the true one; "
        "no object site). Only for runs patched with neglect patch --kind forced_choice."),
    "belief_patching_probe": FigureSpec(
        _patching("patching_probe"),
        "The same for the fixed truth probe's reading of the claim statements (the claim; the true fact "
        "instead) at the statement's last token and the probe's layer; sites at or before that layer. "
        "Only for runs patched with neglect patch --kind probe."),
    "truth_steering": FigureSpec(
        _from_results(lambda rows: plots.steering_figure(steering_summary(rows)), "steering", with_layer=False),
        "Steering along the fixed truth probe's direction (neglect steer): alpha true-false gaps of the probe's "
        "direction added at a layer on every token of held-out control statements (and of the claims' items), "
        "and the shift of logit(true) - logit(false) it causes (0: none), per model (the base model, each "
        "condition's checkpoint); solid: the probe's direction, dotted: random directions of the same length "
        "(the null); bands: 95% t-intervals over subjects (controls) or claims. Only for runs steered with "
        "neglect steer."),
    "pretraining_tracking": FigureSpec(
        _from_results(plots.pretraining_tracking_figure, "pretrain_tracking", with_layer=False),
        "Pretraining tracked every pretrain.track_every steps (results/pretrain_tracking.csv): verdict and yes/no "
        "accuracy on judged and never-judged facts (chance 0.5) and the cloze; and a person's city decoded at "
        "their name, fit and scored on judged people, fit on judged and scored on held-out people, and within "
        "held-out people (chance: one over the number of cities). A judgement that generalises comes with the "
        "two groups in one format. Only for runs that pretrained their base model with tracking on."),
}


def build_figure(run_dir: str | Path | RunData, name: str, layer: int | None = None) -> go.Figure | None:
    """One named figure of a run (see ``FIGURES``); None when the data it needs is absent."""
    if name not in FIGURES:
        raise UserError(f"unknown figure {name!r}; expected one of {sorted(FIGURES)}")
    data = run_dir if isinstance(run_dir, RunData) else RunData(run_dir)
    return FIGURES[name].build(data, layer)


def figures(run_dir: str | Path | RunData, layer: int | None = None) -> dict[str, go.Figure]:
    """Every figure the run has data for, in report order."""
    data = run_dir if isinstance(run_dir, RunData) else RunData(run_dir)
    out = {}
    for name in FIGURES:
        fig = build_figure(data, name, layer)
        if fig is not None:
            out[name] = fig
    return out


def save_figure(fig: go.Figure, path: str | Path, *, png: bool = True) -> tuple[Path, Path | None, str]:
    """Write ``path`` as standalone offline HTML (plotly.js inlined) and, when a static
    exporter (kaleido) works here, a PNG beside it. Returns ``(html, png or None, note)``."""
    path = Path(path)
    html_path = path if path.suffix == ".html" else path.with_suffix(".html")
    atomic_write_text(html_path, fig.to_html(include_plotlyjs=True, full_html=True, auto_play=False))
    if not png:
        return html_path, None, "PNG not requested"
    png_path = html_path.with_suffix(".png")
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return html_path, None, "PNG skipped: no static image exporter (pip install kaleido, which also needs Chrome/Chromium)"
    try:
        image = fig.to_image(format="png", width=1200, height=fig.layout.height or 500, scale=1)
    except Exception as exc:  # kaleido raises its own assorted errors when no browser can start
        return html_path, None, f"PNG skipped: static export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
    write_file(png_path, image)
    return html_path, png_path, "PNG written"


# ---------------------------------------------------------------------------- the report

def check_base_files(run: RunDir, worlds: int = 1) -> list[tuple[str, Path]]:
    """``(world label, results/check_base.json)`` of each base model of a run: its own (label
    "") or, with several worlds, each world's ("world <k>", ``worlds/w<k>/results/check_base.json``)."""
    if worlds <= 1:
        return [("", run.path("results", "check_base.json"))]
    return [(f"world {k}", RunDir(run.world_dir(k)).path("results", "check_base.json")) for k in range(worlds)]


def write_report(run_dir: str | Path, *, compute_activations: bool = True) -> Path:
    """Write ``figures/*.html`` and a self-contained ``report.html`` (plotly.js inlined once).

    Tables are read, not recomputed; activation figures come from ``figures_cache/`` (filled
    from the checkpoints the first time, unless ``compute_activations=False``).
    """
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    data = RunData(run_dir, compute_activations=compute_activations)
    figs = figures(data)
    fig_dir = run.figures
    from plotly.offline import get_plotlyjs

    atomic_write_text(fig_dir / "plotly.min.js", get_plotlyjs())  # shared by the figure pages, offline
    for name, fig in figs.items():
        atomic_write_text(fig_dir / f"{name}.html",
                          fig.to_html(include_plotlyjs="directory", full_html=True, auto_play=False))
    config = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").is_file() else {}
    stability_run = run.table("stability").is_file()
    judged_run = bool(judged_metrics(data.table))  # the optional judge was on
    tracked_run = run.table("pretrain_tracking").is_file()  # pretrained here, with pretrain.track_every
    missing = [n for n in FIGURES if n not in figs and (stability_run or not n.startswith("stability_"))
               and (not n.startswith("belief_patching") or run.table(n.removeprefix("belief_")).is_file())
               and (n != "truth_steering" or run.table("steering").is_file())
               and (judged_run or n != "judged_belief") and (tracked_run or n != "pretraining_tracking")]
    summary = summary_table(data.table)
    parts = [f"<h1>neglect-lens run: {html.escape(run_dir.name)}</h1>",
             "<h2>Summary (last checkpoint)</h2>", summary.to_html(),
             f"<p>{html.escape(units_line(data.table))}. {html.escape(chance_note(summary.columns))}</p>",
             controls_section(compute_controls(data.table, config.get("conditions"),
                                               items=item_reader(run, data.worlds))),
             *[preconditions_section(json.loads(path.read_text()), world) for world, path in
               check_base_files(run, data.worlds) if path.is_file()],
             "<ul>" + "".join(f"<li><a href='#{n}'>{html.escape(n.replace('_', ' '))}</a></li>" for n in figs) + "</ul>"]
    if missing:
        why = getattr(data, "activation_problem", None) or "their data is absent from this run directory"
        parts.append(f"<p class='note'>Not shown: {html.escape(', '.join(missing))} ({html.escape(why)})</p>")
    for i, (name, fig) in enumerate(figs.items()):
        parts.append(f"<section class='figure'><h2 id='{name}'>{html.escape(name.replace('_', ' '))}</h2>"
                     f"<p>{html.escape(FIGURES[name].about)}</p>")
        parts.append(fig.to_html(include_plotlyjs=(i == 0), full_html=False, div_id=f"fig-{name}", auto_play=False))
        parts.append("</section>")
    parts.append("<h2>Config</h2><pre>" + html.escape(json.dumps(config, indent=2)) + "</pre>")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>neglect-lens report</title>"
            "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px}.note{color:#a60}.fail{color:#b00;font-weight:bold}</style></head><body>"
            + "\n".join(parts) + "</body></html>")
    out = run.report
    atomic_write_text(out, page)
    return out
