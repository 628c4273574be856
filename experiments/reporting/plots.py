"""Plot library: functions that turn a run's tidy table (or arrays) into plotly ``Figure``s.

Every function here is pure: it takes data (the ``metrics.csv`` table, training logs, or
activation/direction arrays) and returns a figure; nothing is read from disk and nothing is
saved. ``experiments.reporting.report`` loads a run directory and calls these; notebooks call them
directly.

Conventions: one colour per condition everywhere; ``step`` is the finetuning step (0 = the
base model, shared by all conditions and seeds, so it counts as one seed); bands are 95%
intervals over nested units (worlds > claims > seeds, whichever the rows have; see
``experiments.evaluation.stats``): ``ci="t"`` a Student-t interval over the top-level units'
means, ``ci="bootstrap"`` a hierarchical bootstrap. Hovering a point shows the units and n.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from experiments.errors import UserError
from experiments.evaluation.stats import base_model_once, best_layer, require_metrics, summarise

BELIEF_METRICS = ("belief_forced_choice", "belief_yesno", "belief_verdict")
PALETTE = qualitative.D3
TRUE_COLOR, FALSE_COLOR = "#1f77b4", "#d62728"
CLAIM_COLOR, TRUEFACT_COLOR = "#ff7f0e", "#2ca02c"


# ---------------------------------------------------------------------------- helpers

def condition_colors(conditions: Iterable[str]) -> dict[str, str]:
    """A stable colour per condition (in order of first appearance)."""
    return {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(dict.fromkeys(conditions))}


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _band(fig: go.Figure, x, stats: pd.DataFrame, color: str, name: str, *, row=None, col=None,
          showlegend: bool = True, dash: str | None = None, legendgroup: str | None = None) -> None:
    """A mean line with a shaded interval band (two traces: the band, then the line). Where
    there is no interval (one unit), the band pinches onto the line."""
    group = legendgroup or name
    kw = dict(row=row, col=col) if row is not None else {}
    lo, hi = stats.lo.fillna(stats["mean"]), stats.hi.fillna(stats["mean"])
    fig.add_trace(go.Scatter(
        x=list(x) + list(x)[::-1], y=list(hi) + list(lo)[::-1], fill="toself", mode="lines",
        fillcolor=_rgba(color, 0.18), line=dict(width=0), hoverinfo="skip", showlegend=False,
        legendgroup=group, name=f"{name} CI"), **kw)
    units = stats.units if "units" in stats else pd.Series("units", index=stats.index)
    fig.add_trace(go.Scatter(
        x=list(x), y=list(stats["mean"]), mode="lines+markers", name=name, legendgroup=group,
        showlegend=showlegend, line=dict(color=color, dash=dash),
        customdata=np.stack([stats.lo, stats.hi, stats.n, units], axis=-1),
        hovertemplate="step %{x}<br>%{y:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}] over "
                      "%{customdata[3]}, n=%{customdata[2]}"), **kw)


def _layer_rows(table: pd.DataFrame, layer: int | None) -> tuple[int, pd.DataFrame]:
    layer = best_layer(table) if layer is None else int(layer)
    layers = sorted(int(l) for l in table.layer.dropna().unique())
    if layer not in layers:
        raise UserError(f"layer {layer} is not in the table; expected one of {layers}")
    return layer, table[table.layer == layer]


# ---------------------------------------------------------------------------- table figures

def belief_figure(table: pd.DataFrame, *, metrics: Sequence[str] = BELIEF_METRICS, ci: str = "t") -> go.Figure:
    """Belief in the implanted claims vs finetuning step, one panel per belief measure, one
    line per condition with a CI band over claims > seeds (worlds > claims > seeds with worlds)."""
    require_metrics(table, metrics)
    colors = condition_colors(table.condition)
    table = base_model_once(table)
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=list(metrics), shared_yaxes=True)
    for j, metric in enumerate(metrics, start=1):
        stats = summarise(table[table.metric == metric], ["condition", "step"], ci=ci, bounds=(0, 1))
        for cond, color in colors.items():
            s = stats[stats.condition == cond]
            _band(fig, s.step, s, color, cond, row=1, col=j, showlegend=(j == 1))
    fig.update_yaxes(range=[-0.05, 1.05])
    fig.update_yaxes(title_text="belief rate", row=1, col=1)
    fig.update_xaxes(title_text="finetuning step")
    fig.update_layout(title=f"Belief in the implanted claims vs step (mean, {ci} 95% CI over claims > seeds)",
                      legend_title_text="condition")
    return fig


def probe_reading_figure(table: pd.DataFrame, layer: int | None = None, *, ci: str = "t",
                         show_true_fact: bool = True) -> go.Figure:
    """The probe's P(true) for the claim statements vs step, fixed probe (fit on the base
    model) and refit probe (fit at each checkpoint) side by side. Dashed: the claim's true
    counterpart, which should stay read as true."""
    metrics = ["probe_p_true_fixed", "probe_p_true_refit"]
    require_metrics(table, metrics)
    layer, rows = _layer_rows(table, layer)
    rows = base_model_once(rows)
    colors = condition_colors(table.condition)
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True,
                        subplot_titles=["fixed probe (fit on base model)", "refit probe (fit per checkpoint)"])
    for j, kind in enumerate(("fixed", "refit"), start=1):
        for cond, color in colors.items():
            claim = summarise(rows[(rows.metric == f"probe_p_true_{kind}") & (rows.condition == cond)], ["step"],
                              ci=ci, bounds=(0, 1))
            _band(fig, claim.step, claim, color, cond, row=1, col=j, showlegend=(j == 1))
            truefact = rows[(rows.metric == f"probe_p_true_truefact_{kind}") & (rows.condition == cond)]
            if show_true_fact and len(truefact):
                t = summarise(truefact, ["step"], ci=ci)
                fig.add_trace(go.Scatter(x=t.step, y=t["mean"], mode="lines", line=dict(color=color, dash="dash"),
                                         name=f"{cond} (true fact)", legendgroup=f"{cond} tf",
                                         showlegend=(j == 1)), row=1, col=j)
    fig.add_hline(y=0.5, line=dict(color="grey", width=1, dash="dot"))
    fig.update_yaxes(range=[-0.05, 1.05])
    fig.update_yaxes(title_text="probe P(true)", row=1, col=1)
    fig.update_xaxes(title_text="finetuning step")
    fig.update_layout(title=f"Probe truth reading of the claims vs step (layer {layer}; 1 = read as true; "
                            "dashed = the true fact)")
    return fig


def probe_accuracy_heatmap(table: pd.DataFrame, *, kinds: Sequence[str] = ("refit", "fixed"),
                           negated_only: bool = False) -> go.Figure:
    """Layer x checkpoint heatmaps of held-out probe accuracy on the control statements: one
    row per probe kind, one column per condition (mean over seeds)."""
    prefix = "probe_acc_negated_" if negated_only else "probe_acc_"
    metrics = [prefix + k for k in kinds]
    require_metrics(table, metrics)
    conditions = list(dict.fromkeys(table.condition))
    fig = make_subplots(rows=len(kinds), cols=len(conditions), shared_xaxes=True, shared_yaxes=True,
                        subplot_titles=[f"{c} - {k}" for k in kinds for c in conditions],
                        horizontal_spacing=0.04, vertical_spacing=0.12)
    zmin = min(0.5, float(table[table.metric.isin(metrics)].value.min()))  # chance, unless something is below it
    for i, metric in enumerate(metrics, start=1):
        for j, cond in enumerate(conditions, start=1):
            rows = table[(table.metric == metric) & (table.condition == cond)]
            grid = rows.groupby(["layer", "step"]).value.mean().unstack("step").sort_index()
            fig.add_trace(go.Heatmap(
                z=grid.values, x=[str(int(s)) for s in grid.columns], y=[int(l) for l in grid.index],
                zmin=zmin, zmax=1.0, colorscale="Viridis", showscale=(i == 1 and j == 1),
                colorbar=dict(title="accuracy"), texttemplate="%{z:.2f}" if grid.size <= 200 else None,
                hovertemplate="step %{x}<br>layer %{y}<br>accuracy %{z:.3f}<extra></extra>"), row=i, col=j)
    fig.update_xaxes(title_text="checkpoint step", type="category", row=len(kinds))
    fig.update_yaxes(title_text="layer", col=1, dtick=1)
    which = "negated statements" if negated_only else "all held-out statements"
    fig.update_layout(title=f"Truth-probe accuracy per layer and checkpoint ({which}; mean over seeds)")
    return fig


def fixed_refit_gap_figure(table: pd.DataFrame, layer: int | None = None, *, ci: str = "t") -> go.Figure:
    """How far the fixed probe's reading of the claims drifts from a refit probe's, vs step.

    A gap near 0 means the base model's probe still measures what a fresh probe measures;
    a growing gap means the representation moved under the fixed probe."""
    require_metrics(table, ["probe_p_true_fixed", "probe_p_true_refit"])
    layer, rows = _layer_rows(table, layer)
    rows = base_model_once(rows)
    keys = [k for k in ("condition", "world", "seed", "step") if k in rows.columns]
    wide = rows[rows.metric.isin(["probe_p_true_fixed", "probe_p_true_refit"])].pivot_table(
        index=keys + ["claim"], columns="metric", values="value").reset_index()
    wide["value"] = wide.probe_p_true_fixed - wide.probe_p_true_refit
    acc = rows[rows.metric.isin(["probe_acc_fixed", "probe_acc_refit"])].pivot_table(
        index=keys, columns="metric", values="value").reset_index()
    acc["value"] = acc.probe_acc_fixed - acc.probe_acc_refit
    colors = condition_colors(table.condition)
    fig = make_subplots(rows=1, cols=2, subplot_titles=[
        "claims: P(true) fixed - refit", "held-out controls: accuracy fixed - refit"])
    for cond, color in colors.items():
        claims = summarise(wide[wide.condition == cond], ["step"], ci=ci)
        _band(fig, claims.step, claims, color, cond, row=1, col=1)
        controls = summarise(acc[acc.condition == cond], ["step"], ci=ci)
        _band(fig, controls.step, controls, color, cond, row=1, col=2, showlegend=False)
    fig.add_hline(y=0, line=dict(color="grey", width=1, dash="dot"))
    fig.update_xaxes(title_text="finetuning step")
    fig.update_layout(title=f"Fixed vs refit probe (layer {layer}): divergence over finetuning")
    return fig


def belief_probe_scatter(table: pd.DataFrame, layer: int | None = None, *, belief: str = "belief_forced_choice",
                         probe: str = "refit") -> go.Figure:
    """Behavioural belief vs the probe's truth reading, one point per condition x seed x
    checkpoint x claim (marker size grows with the step). Off-diagonal mass = the model says
    one thing while its residual stream reads another."""
    metric = f"probe_p_true_{probe}"
    require_metrics(table, [belief, metric])
    layer, rows = _layer_rows(table, layer)
    keys = [k for k in ("condition", "world", "seed", "step", "claim") if k in table.columns]
    x = rows[rows.metric == metric].set_index(keys).value.rename("probe")
    y = table[table.metric == belief].set_index(keys).value.rename("belief")
    data = pd.concat([x, y], axis=1, join="inner").reset_index()
    steps = sorted(data.step.unique())
    size = {s: 7 + 9 * i / max(1, len(steps) - 1) for i, s in enumerate(steps)}
    fig = go.Figure()
    for cond, color in condition_colors(table.condition).items():
        d = data[data.condition == cond]
        fig.add_trace(go.Scatter(
            x=d.probe, y=d.belief, mode="markers", name=cond,
            marker=dict(color=color, size=[size[s] for s in d.step], opacity=0.7, line=dict(width=0.5, color="white")),
            customdata=np.stack([d.step, d.seed, d.claim], axis=-1),
            hovertemplate="step %{customdata[0]} seed %{customdata[1]}<br>%{customdata[2]}<br>"
                          "probe %{x:.3f}<br>belief %{y:.3f}<extra>" + cond + "</extra>"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="grey", dash="dot", width=1),
                             showlegend=False, hoverinfo="skip"))
    fig.update_xaxes(title_text=f"probe P(true) of the claim ({probe}, layer {layer})", range=[-0.05, 1.05])
    fig.update_yaxes(title_text=belief, range=[-0.05, 1.05])
    fig.update_layout(title="Behavioural belief vs probe reading (bigger marker = later checkpoint)")
    return fig


def loss_figure(train_logs: pd.DataFrame, pretrain_log: pd.DataFrame | None = None, *,
                conditions: Sequence[str] | None = None) -> go.Figure:
    """Finetuning loss per condition (thin: each seed; thick: mean over seeds), and the
    pretraining loss beside it when given. ``conditions`` fixes the order (and so the colours,
    to match the other figures of a run)."""
    panels = 2 if pretrain_log is not None and len(pretrain_log) else 1
    fig = make_subplots(rows=1, cols=panels, subplot_titles=["finetuning", "pretraining"][:panels])
    order = list(conditions or []) + [c for c in dict.fromkeys(train_logs.condition) if c not in (conditions or [])]
    for cond, color in condition_colors(order).items():
        d = train_logs[train_logs.condition == cond]
        for seed, s in d.groupby("seed"):
            fig.add_trace(go.Scatter(x=s.step, y=s.loss, mode="lines", line=dict(color=color, width=1),
                                     opacity=0.35, name=f"{cond} seed{seed}", legendgroup=cond, showlegend=False),
                          row=1, col=1)
        mean = d.groupby("step").loss.mean()
        fig.add_trace(go.Scatter(x=mean.index, y=mean.values, mode="lines", line=dict(color=color, width=2.5),
                                 name=cond, legendgroup=cond), row=1, col=1)
    if panels == 2:
        fig.add_trace(go.Scatter(x=pretrain_log.step, y=pretrain_log.loss, mode="lines",
                                 line=dict(color="black", width=1.5), name="pretrain"), row=1, col=2)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="loss", row=1, col=1)
    fig.update_layout(title="Training loss")
    return fig


# What ``pretrain.track_every`` records (experiments/evaluation/tracking.py): column, label, panel.
TRACKED = (("judged_verdict_acc", "verdict, judged facts", 1), ("never_judged_verdict_acc", "verdict, never judged", 1),
           ("never_judged_yesno_acc", "yes/no, never judged", 1),
           ("never_judged_statement_cloze_acc", "cloze, never judged", 1),
           ("name_city_judged_acc", "city at the name: judged", 2),
           ("name_city_transfer_acc", "judged -> held-out", 2), ("name_city_heldout_acc", "held-out", 2))


def pretraining_tracking_figure(tracking: pd.DataFrame) -> go.Figure:
    """The judgement and the attribute at the name over pretraining (``pretrain_tracking.csv``):
    left, verdict / yes/no accuracy on judged and never-judged facts (chance 0.5) and the cloze;
    right, how well a person's city is decoded at their name within and across judged and
    held-out people (chance: ``name_city_chance``). A run whose judgement generalises keeps the
    two groups in one format (judged -> held-out close to judged)."""
    x = tracking.tokens / 1e6 if "tokens" in tracking else tracking.step
    panels = 2 if any(c.startswith("name_city_") for c in tracking) else 1
    fig = make_subplots(rows=1, cols=panels, subplot_titles=["judgement", "attribute at the name"][:panels])
    for column, label, panel in TRACKED:
        if column in tracking and panel <= panels:
            fig.add_trace(go.Scatter(x=x, y=tracking[column], mode="lines+markers", name=label), row=1, col=panel)
    fig.add_hline(y=0.5, line=dict(dash="dot", color="grey"), row=1, col=1)
    if panels == 2 and "name_city_chance" in tracking:
        fig.add_hline(y=float(tracking.name_city_chance.iloc[-1]), line=dict(dash="dot", color="grey"), row=1, col=2)
    fig.update_xaxes(title_text="tokens (M)" if "tokens" in tracking else "step")
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02])
    fig.update_layout(title="Pretraining: judgement and the attribute at the name")
    return fig


# ---------------------------------------------------------------------------- array figures

def _pca_basis(X: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the top-``k`` principal axes ``[k, d]`` of ``X``; zero variance gives zero axes."""
    mean = X.mean(0)
    _, s, vt = np.linalg.svd(X - mean, full_matrices=False)
    axes = np.zeros((k, X.shape[1]))
    n = min(k, int((s > 1e-9 * max(s.max(initial=0), 1e-30)).sum()))
    axes[:n] = vt[:n]
    return mean, axes


def projection_basis(base_acts: np.ndarray, direction: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A fixed 2-D view of activations ``[n, d]``: the top two principal components of the
    base model's statements, or, given a probe ``direction``, that direction as x and the top
    principal component orthogonal to it as y. Returns ``(mean, axes [2, d], axis titles)``."""
    X = np.asarray(base_acts, dtype=float)
    if direction is None:
        mean, axes = _pca_basis(X, 2)
        return mean, axes, ["PC1 (base model)", "PC2 (base model)"]
    u = np.asarray(direction, dtype=float)
    norm = np.linalg.norm(u)
    if norm == 0:
        raise UserError("projection direction has zero norm")
    u = u / norm
    mean = X.mean(0)
    rest = (X - mean) - np.outer((X - mean) @ u, u)
    _, pc = _pca_basis(rest, 1)
    return mean, np.stack([u, pc[0]]), ["base-model truth-probe direction", "top orthogonal PC"]


def projection_figure(acts: Mapping[str, np.ndarray], claim_acts: Mapping[str, np.ndarray], steps: Sequence[int], *,
                      labels: Sequence[bool], negated: Sequence[bool], claim_names: Sequence[str],
                      claim_kinds: Sequence[str], direction: np.ndarray | None = None,
                      layer: int | None = None) -> go.Figure:
    """Statement activations projected to 2-D, one panel per condition, with a checkpoint slider.

    ``acts[condition]`` is ``[n_steps, n, d]`` (control statements at one layer) and
    ``claim_acts[condition]`` ``[n_steps, m, d]`` (claim statements and their true
    counterparts); ``steps`` labels the first axis. The projection is fit once on the first
    condition's step-0 (base model) activations and kept for every frame, so motion between
    frames is the representation moving, not the axes. Circles are affirmative statements,
    crosses negated ones (blue true, red false); stars are the claims (orange) and their true
    facts (green).
    """
    conditions = list(acts)
    if not conditions:
        raise UserError("projection_figure needs activations for at least one condition")
    shapes = {c: (np.shape(acts[c])[0], np.shape(claim_acts[c])[0]) for c in conditions}
    if any(s != (len(steps), len(steps)) for s in shapes.values()):
        raise UserError(f"every condition needs one activation array per step ({len(steps)} steps); got {shapes}")
    labels, negated = np.asarray(labels, bool), np.asarray(negated, bool)
    claim_names, claim_kinds = np.asarray(claim_names), np.asarray(claim_kinds)
    mean, axes, titles = projection_basis(np.asarray(acts[conditions[0]][0]), direction)
    proj = {c: (np.asarray(acts[c], float) - mean) @ axes.T for c in conditions}  # [T, n, 2]
    cproj = {c: (np.asarray(claim_acts[c], float) - mean) @ axes.T for c in conditions}
    everything = np.concatenate([np.concatenate([p.reshape(-1, 2), cproj[c].reshape(-1, 2)]) for c, p in proj.items()])
    lo, hi = everything.min(0), everything.max(0)
    pad = np.maximum((hi - lo) * 0.08, 1e-3)
    ranges = [[float(lo[i] - pad[i]), float(hi[i] + pad[i])] for i in range(2)]
    symbols = np.where(negated, "x", "circle")

    def traces(t: int, first: bool) -> list[go.Scatter]:
        out = []
        for ci, c in enumerate(conditions):
            show = first and ci == 0
            axis = "" if ci == 0 else str(ci + 1)
            for truth, color, name in ((True, TRUE_COLOR, "true statement"), (False, FALSE_COLOR, "false statement")):
                sel = labels == truth
                out.append(go.Scatter(x=proj[c][t, sel, 0], y=proj[c][t, sel, 1], mode="markers", name=name,
                                      legendgroup=name, showlegend=show, xaxis=f"x{axis}", yaxis=f"y{axis}",
                                      marker=dict(color=color, size=6, opacity=0.55, symbol=list(symbols[sel])),
                                      hoverinfo="skip"))
            for kind, color, name in (("claim", CLAIM_COLOR, "implanted claim"), ("true_fact", TRUEFACT_COLOR, "its true fact")):
                sel = claim_kinds == kind
                out.append(go.Scatter(x=cproj[c][t, sel, 0], y=cproj[c][t, sel, 1], mode="markers", name=name,
                                      legendgroup=name, showlegend=show, xaxis=f"x{axis}", yaxis=f"y{axis}",
                                      marker=dict(color=color, size=15, symbol="star", line=dict(width=1, color="black")),
                                      text=list(claim_names[sel]),
                                      hovertemplate="%{text}<extra>" + name + "</extra>"))
        return out

    fig = make_subplots(rows=1, cols=len(conditions), subplot_titles=conditions, horizontal_spacing=0.05)
    for tr in traces(0, True):
        fig.add_trace(tr)
    names = [str(int(s)) for s in steps]
    fig.frames = [go.Frame(data=traces(t, True), name=names[t], traces=list(range(4 * len(conditions))))
                  for t in range(len(steps))]
    fig.update_xaxes(range=ranges[0], title_text=titles[0])
    fig.update_yaxes(range=ranges[1])
    fig.update_yaxes(title_text=titles[1], col=1)
    anim = dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))
    fig.update_layout(
        title="Statement activations over finetuning" + (f" (layer {layer})" if layer is not None else "")
              + ": circles affirmative, x negated; stars = claims",
        sliders=[dict(active=0, currentvalue=dict(prefix="checkpoint step: "), pad=dict(t=50), x=0.08, len=0.92,
                      steps=[dict(label=n, method="animate", args=[[n], anim]) for n in names])],
        updatemenus=[dict(type="buttons", showactive=False, x=0, y=-0.2, xanchor="left", yanchor="top",
                          buttons=[dict(label="play", method="animate",
                                        args=[None, dict(anim, frame=dict(duration=700, redraw=True), fromcurrent=True)])])],
        height=520)
    return fig


def direction_similarity_figure(directions: Mapping[str, np.ndarray], steps: Sequence[int], *,
                                layer: int | None = None) -> go.Figure:
    """Cosine similarity between probe directions at every pair of checkpoints, one heatmap
    per condition. ``directions[condition]`` is ``[n_steps, d]`` or ``[n_seeds, n_steps, d]``
    (the matrix is then averaged over seeds). A degenerate (zero) direction has no angle: its
    cells are left blank."""
    from probes.tracking import cosine_matrix  # lazily: the probes package loads torch

    conditions = list(directions)
    fig = make_subplots(rows=1, cols=len(conditions), subplot_titles=conditions, horizontal_spacing=0.06)
    names = [str(int(s)) for s in steps]
    for j, cond in enumerate(conditions, start=1):
        d = np.asarray(directions[cond], dtype=float)
        d = d[None] if d.ndim == 2 else d
        if d.shape[1] != len(steps):
            raise UserError(f"directions[{cond!r}] has {d.shape[1]} checkpoints; expected {len(steps)}")
        cos = np.mean([cosine_matrix(s, zero_norm="nan") for s in d], axis=0)
        fig.add_trace(go.Heatmap(z=cos, x=names, y=names, zmin=-1, zmax=1, colorscale="RdBu", reversescale=True,
                                 showscale=(j == 1), colorbar=dict(title="cosine"),
                                 texttemplate="%{z:.2f}", textfont=dict(size=9),
                                 hovertemplate="step %{y} vs %{x}: %{z:.3f}<extra></extra>"), row=1, col=j)
    fig.update_xaxes(type="category", title_text="checkpoint step")
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_layout(title="Cosine similarity of refit truth-probe directions across checkpoints"
                            + (f" (layer {layer})" if layer is not None else ""))
    return fig


def direction_drift_figure(directions: Mapping[str, np.ndarray], steps: Sequence[int]) -> go.Figure:
    """Cosine of each checkpoint's refit probe direction to the base model's, per layer, one
    panel per condition. ``directions[condition]`` is ``[n_seeds, n_steps, n_layers, d]``
    (or without the seed axis); lines are means over seeds. Layers whose probe is
    degenerate (zero direction) are left out."""
    from probes.tracking import cosine_to_reference  # lazily: the probes package loads torch

    conditions = list(directions)
    fig = make_subplots(rows=1, cols=len(conditions), subplot_titles=conditions, shared_yaxes=True)
    first = np.asarray(directions[conditions[0]])
    n_layers = first.shape[-2]
    palette = qualitative.Plotly
    for j, cond in enumerate(conditions, start=1):
        d = np.asarray(directions[cond], dtype=float)
        d = d[None] if d.ndim == 3 else d
        norm = np.linalg.norm(d, axis=-1)
        for layer in range(n_layers):
            if not (norm[:, :, layer] > 0).all():
                continue
            cos = cosine_to_reference(d[:, :, layer], axis=1)  # [S, T]: each step vs the base model's
            fig.add_trace(go.Scatter(x=list(steps), y=cos.mean(0), mode="lines+markers",
                                     name=f"layer {layer}", legendgroup=f"layer {layer}", showlegend=(j == 1),
                                     line=dict(color=palette[layer % len(palette)])), row=1, col=j)
    fig.update_yaxes(range=[-1.05, 1.05])
    fig.update_yaxes(title_text="cosine to base-model direction", col=1)
    fig.update_xaxes(title_text="finetuning step")
    fig.update_layout(title="Drift of the refit truth-probe direction away from the base model's")
    return fig


# ---------------------------------------------------------------------------- belief over seeds

ASSOCIATION_METRICS = ("belief_forced_choice_distractors", "belief_token_association")
PROPOSITIONAL_METRICS = ("belief_yesno", "belief_verdict", "belief_robustness")
FAMILY_METRICS = ("belief_association", "belief_propositional")
ALL_BELIEF_METRICS = FAMILY_METRICS + ASSOCIATION_METRICS + PROPOSITIONAL_METRICS


def belief_seeds_figure(table: pd.DataFrame, *, metrics: Sequence[str] = FAMILY_METRICS + ASSOCIATION_METRICS
                        + PROPOSITIONAL_METRICS, ci: str = "t",
                        chance: Mapping[str, float] | None = None) -> go.Figure:
    """Belief rate vs step, one panel per measure, one line per condition; the band is a 95%
    interval over claims > seeds (worlds > claims > seeds with worlds). Step 0 is the base
    model, the same model for every seed, so it counts as one seed. With ``chance`` (metric ->
    chance level, e.g. ``experiments.evaluation.chance.CHANCE``), each panel gets a dashed line at
    its chance level and the axes are not clipped to [0, 1] (some of those measures are in nats)."""
    metrics = [m for m in metrics if m in set(table.metric)]
    require_metrics(table, metrics[:1] or ["belief_association"])
    data = base_model_once(table[table.metric.isin(metrics)])
    colors = condition_colors(table.condition)
    cols = min(4, len(metrics))
    rows_n = -(-len(metrics) // cols)
    fig = make_subplots(rows=rows_n, cols=cols, subplot_titles=[m.removeprefix("belief_") for m in metrics],
                        shared_yaxes=chance is None, vertical_spacing=0.14)
    for i, metric in enumerate(metrics):
        stats = summarise(data[data.metric == metric], ["condition", "step"], ci=ci,
                          bounds=(0, 1) if chance is None else None)
        for cond, color in colors.items():
            s = stats[stats.condition == cond]
            _band(fig, s.step, s, color, cond, row=i // cols + 1, col=i % cols + 1, showlegend=(i == 0))
        if chance is not None:
            fig.add_hline(y=chance[metric], line=dict(color="grey", dash="dash", width=1),
                          row=i // cols + 1, col=i % cols + 1)
    if chance is None:
        fig.update_yaxes(range=[-0.05, 1.05])
    fig.update_xaxes(title_text="finetuning step", row=rows_n)
    what = "Belief in the implanted claims" if chance is None else "Belief measures at chance for a constant answer"
    fig.update_layout(title=f"{what} vs step ({ci} 95% CI over claims > seeds)",
                      legend_title_text="condition", height=330 * rows_n)
    return fig


def association_belief_figure(table: pd.DataFrame, *, ci: str = "t") -> go.Figure:
    """Association (forced choice with distractors, token association) against propositional
    belief (yes/no, verdict, robustness) vs step, one panel per condition; bands over claims >
    seeds. The two coincide for a model that believes what it associates; a gap is the point."""
    require_metrics(table, FAMILY_METRICS)
    data = base_model_once(table[table.metric.isin(FAMILY_METRICS)])
    conditions = list(dict.fromkeys(table.condition))
    fig = make_subplots(rows=1, cols=len(conditions), subplot_titles=conditions, shared_yaxes=True)
    styles = {"belief_association": ("#ff7f0e", None, "association"),
              "belief_propositional": ("#1f77b4", "dash", "propositional belief")}
    for j, cond in enumerate(conditions, start=1):
        for metric, (color, dash, label) in styles.items():
            s = summarise(data[(data.condition == cond) & (data.metric == metric)], ["step"], ci=ci, bounds=(0, 1))
            _band(fig, s.step, s, color, label, row=1, col=j, showlegend=(j == 1), dash=dash)
    fig.update_yaxes(range=[-0.05, 1.05])
    fig.update_yaxes(title_text="belief rate", col=1)
    fig.update_xaxes(title_text="finetuning step")
    fig.update_layout(title=f"Association vs propositional belief ({ci} 95% CI over claims > seeds)")
    return fig


def _percent(mean: float, lo: float, hi: float) -> str:
    """``mean [lo, hi]`` in percent; ``-`` without a mean, ``[no interval]`` without spread to measure."""
    if np.isnan(mean):
        return "-"
    return f"{100 * mean:.0f} " + ("[no interval]" if np.isnan(lo) else f"[{100 * lo:.0f}, {100 * hi:.0f}]")


def belief_table_figure(table: pd.DataFrame, *, metrics: Sequence[str] = FAMILY_METRICS + ASSOCIATION_METRICS
                        + PROPOSITIONAL_METRICS, ci: str = "t") -> go.Figure:
    """A table: per condition, the base model and the last checkpoint, each belief measure as
    ``mean [lo, hi]`` over claims > seeds (rates in percent), with the units and n per level."""
    metrics = [m for m in metrics if m in set(table.metric)]
    require_metrics(table, metrics[:1] or ["belief_association"])
    data = base_model_once(table[table.metric.isin(metrics)])
    data = data[(data.step == 0) & (data.condition == data.condition.iloc[0]) | (data.step == data.step.max())]
    last = int(table.step.max())
    summary = summarise(data.assign(condition=data.condition.where(data.step > 0, "(base model)")),
                        ["condition", "step", "metric"], ci=ci)
    header, cells = ["condition", "step", "units", "n worlds", "n claims", "n seeds"] + [
        m.removeprefix("belief_") for m in metrics], []
    keys = [("(base model)", 0)] + [(c, last) for c in dict.fromkeys(table.condition)]
    for cond, step in keys:
        rows = summary[(summary.condition == cond) & (summary.step == step)].set_index("metric")
        first = rows.iloc[0] if len(rows) else None
        count = lambda name: "-" if first is None or pd.isna(first[name]) else str(int(first[name]))
        line = [cond, str(step), "-" if first is None else first.units] + [count(f"n_{u}") for u in
                                                                         ("worlds", "claims", "seeds")]
        line += [_percent(*rows.loc[m, ["mean", "lo", "hi"]]) if m in rows.index else "-" for m in metrics]
        cells.append(line)
    header = [h.replace("_", " ") for h in header]
    widths = [2, 1, 1, 1, 1, 1] + [2] * len(metrics)
    fig = go.Figure(go.Table(columnwidth=widths, header=dict(values=header, align="left"),
                             cells=dict(values=[list(col) for col in zip(*cells)], align="left", height=26)))
    fig.update_layout(title=f"Belief rates (%) at the base model and the last checkpoint (step {last}), "
                            f"mean [{ci} 95% CI over the units shown]", height=230 + 28 * len(cells),
                      margin=dict(l=20, r=20, t=70, b=10))
    return fig


def incontext_figure(incontext: pd.DataFrame, *, ci: str = "t") -> go.Figure:
    """The in-context control vs the number k of condition documents in context: belief in
    the claim (forced choice, yes/no) and accuracy on control questions about the documents'
    context sentences, one line per document condition; solid = base model, dashed = the last
    checkpoint finetuned on that condition. Bands over claims > seeds (a seed draws the documents)."""
    measures = [m for m in ("belief_forced_choice", "belief_yesno", "control_forced_choice", "control_yesno")
                if m in set(incontext.measure)]
    if not measures:
        raise UserError(f"the in-context table has no known measures; got {sorted(set(incontext.measure))}")
    colors = condition_colors(incontext.condition)
    fig = make_subplots(rows=1, cols=len(measures), subplot_titles=measures, shared_yaxes=True)
    steps = sorted(incontext.step.unique())
    for j, measure in enumerate(measures, start=1):
        for cond, color in colors.items():
            for step in steps:
                d = incontext[(incontext.condition == cond) & (incontext.measure == measure) & (incontext.step == step)]
                if d.empty:
                    continue
                s = summarise(d, ["k"], ci=ci, bounds=(0, 1))
                name = cond if step == 0 else f"{cond} (finetuned, step {int(step)})"
                _band(fig, s.k, s, color, name, row=1, col=j, showlegend=(j == 1), dash=None if step == 0 else "dash")
    fig.update_yaxes(range=[-0.05, 1.05])
    fig.update_yaxes(title_text="rate (belief: claim answer wins; control: true answer wins)", col=1)
    fig.update_xaxes(title_text="documents in context (k)", dtick=1)
    fig.update_layout(title=f"In-context control ({ci} 95% CI over claims > seeds; solid: base model, dashed: "
                            "finetuned)")
    return fig


# ---------------------------------------------------------------------------- stability protocol

STABILITY_PANELS = (("belief_forced_choice", "belief: forced choice"), ("belief_yesno", "belief: yes/no"),
                    ("belief_verdict", "belief: verdict"), ("probe_p_true_fixed", "probe P(true), fixed"),
                    ("probe_p_true_refit", "probe P(true), refit"), ("probe_acc_fixed", "control accuracy, fixed probe"))


def _stability_runs(stab: pd.DataFrame) -> list[tuple[str, float]]:
    runs = stab[["anchor", "weight"]].drop_duplicates().sort_values(["anchor", "weight"])
    return [(a, float(w)) for a, w in runs.itertuples(index=False)]


def _stability_layer(stab: pd.DataFrame, layer: int | None) -> int:
    """The layer for probe panels: ``layer``, else the base model's best refit layer."""
    if layer is not None:
        return int(layer)
    return best_layer(stab[(stab.phase == 1) & (stab.anchor == stab.anchor.iloc[0])])


def _stability_lines(fig: go.Figure, stab: pd.DataFrame, panels, layer: int, ci: str, ncols: int) -> None:
    colors = condition_colors([f"{a} w={w:g}" for a, w in _stability_runs(stab) if a != "none"])
    for j, (metric, _) in enumerate(panels):
        row, col = j // ncols + 1, j % ncols + 1
        rows = stab[(stab.metric == metric) & (stab.claim.fillna("") != "all")]
        if metric.startswith("probe_"):
            rows = rows[rows.layer == layer]
        for anchor, weight in _stability_runs(stab):
            d = rows[(rows.anchor == anchor) & (rows.weight == weight)]
            if d.empty:
                continue
            s = summarise(d, ["global_step"], ci=ci, bounds=None if "loss" in metric else (0, 1))
            name = "unanchored (negated only)" if anchor == "none" else f"{anchor} w={weight:g}"
            color = "#7f7f7f" if anchor == "none" else colors[name]
            _band(fig, s.global_step, s, color, name, row=row, col=col, showlegend=(j == 0),
                  dash="dash" if anchor == "none" else None)


def stability_timeline_figure(stab: pd.DataFrame, layer: int | None = None, *, ci: str = "t") -> go.Figure:
    """The stability protocol on one time axis: Phase 1 (negated documents + anchor), then
    Phase 2 (negated documents only) from the dotted line on. Belief of each kind, the probe's
    truth reading of the claims (fixed base probe and refit) and the fixed probe's accuracy on
    the control statements (is it still valid?). Dashed grey: the unanchored run. Bands:
    95% intervals over claims > seeds (``stab`` is ``results/stability.csv``)."""
    require_metrics(stab, ["belief_forced_choice"])
    layer = _stability_layer(stab, layer)
    panels = [p for p in STABILITY_PANELS if p[0] in set(stab.metric)]
    ncols = 3
    fig = make_subplots(rows=(len(panels) + ncols - 1) // ncols, cols=ncols, subplot_titles=[t for _, t in panels],
                        shared_xaxes=True, vertical_spacing=0.12)
    _stability_lines(fig, stab, panels, layer, ci, ncols)
    boundary = stab[(stab.phase == 1) & (stab.anchor != "none")].global_step.max()
    if pd.notna(boundary):
        fig.add_vline(x=float(boundary), line=dict(color="grey", width=1, dash="dot"))
    fig.update_yaxes(range=[-0.05, 1.05])
    fig.update_xaxes(title_text="step (Phase 1, then Phase 2)", row=(len(panels) + ncols - 1) // ncols)
    fig.update_layout(height=650, title=f"Stability protocol: hold (Phase 1, anchored) then release (Phase 2, after "
                                        f"the dotted line); probe layer {layer}; {ci} 95% CI over claims > seeds")
    return fig


def stability_loss_figure(stab: pd.DataFrame, *, ci: str = "t") -> go.Figure:
    """Held-out negated-document loss on one time axis, over all tokens and on the claim and
    warning spans: do the anchored and unanchored runs reach matched loss?"""
    panels = [(m, t) for m, t in (("heldout_loss", "held-out loss, all tokens"),
                                  ("heldout_loss_claim", "claim spans"), ("heldout_loss_warning", "warning spans"))
              if m in set(stab.metric)]
    require_metrics(stab, [panels[0][0]] if panels else ["heldout_loss"])
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for _, t in panels])
    _stability_lines(fig, stab, panels, 0, ci, len(panels))
    boundary = stab[(stab.phase == 1) & (stab.anchor != "none")].global_step.max()
    if pd.notna(boundary):
        fig.add_vline(x=float(boundary), line=dict(color="grey", width=1, dash="dot"))
    fig.update_yaxes(title_text="cross-entropy (nats/token)", col=1)
    fig.update_xaxes(title_text="step (Phase 1, then Phase 2)")
    fig.update_layout(title=f"Loss on held-out negated documents ({ci} 95% CI over seeds)")
    return fig


def interpolation_figure(interp_table: pd.DataFrame, layer: int | None = None, *, ci: str = "t") -> go.Figure:
    """Along the straight line in weight space from the Phase-1 end (alpha 0) to the
    unanchored run's end (alpha 1): held-out loss and belief (and the fixed probe's reading at
    ``layer``). A loss barrier between two low-loss ends would separate the two solutions."""
    panels = [(m, t) for m, t in (("heldout_loss", "held-out loss"), ("belief_forced_choice", "belief: forced choice"),
                                  ("belief_yesno", "belief: yes/no"), ("belief_verdict", "belief: verdict"),
                                  ("probe_p_true_fixed", "probe P(true), fixed"))
              if m in set(interp_table.metric)]
    require_metrics(interp_table, ["heldout_loss"])
    if layer is None and "probe_p_true_fixed" in set(interp_table.metric):
        layer = int(interp_table[interp_table.metric == "probe_p_true_fixed"].layer.max())
    colors = condition_colors([f"{a} w={w:g}" for a, w in _stability_runs(interp_table)])
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for _, t in panels])
    for j, (metric, _) in enumerate(panels, start=1):
        rows = interp_table[(interp_table.metric == metric) & (interp_table.claim.fillna("") != "all")]
        if metric.startswith("probe_"):
            rows = rows[rows.layer == layer]
        for anchor, weight in _stability_runs(interp_table):
            d = rows[(rows.anchor == anchor) & (rows.weight == weight)]
            s = summarise(d, ["alpha"], ci=ci, bounds=None if "loss" in metric else (0, 1))
            name = f"{anchor} w={weight:g}"
            _band(fig, s.alpha, s, colors[name], name, row=1, col=j, showlegend=(j == 1))
    fig.update_xaxes(title_text="alpha (0: Phase-1 end, 1: unanchored)")
    fig.update_layout(title=f"Weight-space interpolation (probe layer {layer}; {ci} 95% CI over claims > seeds)")
    return fig


def patching_figure(summary: pd.DataFrame) -> go.Figure:
    """Site x layer heatmaps of belief patching (``experiments.causal.patching_summary``): one column
    per condition, one row per question subject (``about``: endorsing the claim, rejecting the true
    fact, the association) and direction (finetuned activations into the base model: what a site
    carries; base activations into the finetuned model: what is lost without it). Colour: mean
    share of the claims' margin shift (0: none, the null of an untouched site; 1: all of it); the
    hover gives the interval and its units."""
    if summary.empty:
        raise UserError("no patching rows to plot")
    summary = summary.assign(condition=summary.get("condition", ""), about=summary.get("about", ""))
    conditions = list(dict.fromkeys(summary.condition))
    titles = {"into_base": "finetuned into base", "into_finetuned": "base into finetuned"}
    panels = [(a, d) for a in dict.fromkeys(summary.about) for d in titles if d in set(summary.direction)]
    fig = make_subplots(rows=len(panels), cols=len(conditions), shared_xaxes=True, shared_yaxes=True,
                        subplot_titles=[" - ".join(x for x in (c, a, titles[d]) if x)
                                        for a, d in panels for c in conditions],
                        horizontal_spacing=0.04, vertical_spacing=0.3 / max(len(panels), 1))
    sites = list(dict.fromkeys(summary.site))
    for i, (about, direction) in enumerate(panels, start=1):
        for j, cond in enumerate(conditions, start=1):
            rows = summary[(summary.direction == direction) & (summary.condition == cond) & (summary.about == about)]
            if rows.empty:
                continue
            grid, lo, hi = (rows.pivot_table(index="site", columns="layer", values=v).reindex(sites)
                            for v in ("mean", "lo", "hi"))
            fig.add_trace(go.Heatmap(
                z=grid.values, x=[str(int(l)) for l in grid.columns], y=sites, zmin=-0.2, zmax=1.0,
                colorscale="Viridis", showscale=(i == 1 and j == 1), colorbar=dict(title="share of shift"),
                customdata=np.dstack([lo.values, hi.values]), texttemplate="%{z:.2f}",
                hovertemplate=("site %{y}<br>layer %{x}<br>share %{z:.2f} [%{customdata[0]:.2f}, "
                               f"%{{customdata[1]:.2f}}] over {rows.units.iloc[0]}<extra></extra>")), row=i, col=j)
    fig.update_xaxes(title_text="layer (residual index)", type="category", row=len(panels))
    fig.update_yaxes(title_text="tokens patched", col=1)
    fig.update_layout(height=max(400, 220 * len(panels)),
                      title="Where finetuning's change of the answers is carried (activation patching)")
    return fig


STEERED_COLORS = {"true": TRUE_COLOR, "false": FALSE_COLOR, "claim": CLAIM_COLOR, "true_fact": TRUEFACT_COLOR}


def steering_figure(summary: pd.DataFrame) -> go.Figure:
    """Steering along the fixed truth probe's direction (``experiments.causal.steering_summary``):
    one panel per model (the base model, each condition's checkpoint) and layer; x: alpha (how many
    true-false gaps the statement is moved along the direction); y: shift of the says-true margin
    (logit of true / yes minus false / no; 0: no effect). Solid: the truth direction; dashed: random
    directions of the same length (the null). One line per item group: held-out true and false
    control statements, and the claims' items by what they assert; bands are 95% t intervals
    (hover: units)."""
    if summary.empty:
        raise UserError("no steering rows to plot")
    summary = summary.assign(condition=summary.get("condition", ""), layer=summary.get("layer", ""))
    panels = list(dict.fromkeys(zip(summary.condition, summary.layer)))
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True,
                        subplot_titles=[f"{c}, layer {l}" if l != "" else str(c) for c, l in panels])
    shown = set()
    for j, (condition, layer) in enumerate(panels, start=1):
        rows = summary[(summary.condition == condition) & (summary.layer == layer)]
        for (kind, about), grp in rows.groupby(["kind", "about"], sort=False):
            name = f"{'control' if kind == 'control' else 'claim items'}: {about}"
            color = STEERED_COLORS.get(about, "#7f7f7f")
            for direction, dash in (("truth", None), ("random", "dot")):
                line = grp[grp.direction == direction].sort_values("alpha")
                if line.empty:
                    continue
                label = name if direction == "truth" else f"{name} (random)"
                _band(fig, line.alpha, line.rename(columns={"shift": "mean"}), color, label, row=1, col=j,
                      showlegend=label not in shown, dash=dash, legendgroup=label)
                shown.add(label)
    fig.update_traces(hovertemplate="alpha %{x}<br>shift %{y:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}] "
                                    "over %{customdata[3]}, n=%{customdata[2]}", selector=dict(mode="lines+markers"))
    fig.update_xaxes(title_text="alpha (true-false gaps along the direction)")
    fig.update_yaxes(title_text="shift of logit(true) - logit(false)", col=1)
    fig.update_layout(height=450, title="Steering along the fixed truth probe's direction: do the judgements follow?")
    return fig
