"""The run's controls: is this testbed one where finetuning results can be read at all?

Three checks on the run's tidy metrics table (``results/metrics.csv``), written by every
``neglect run`` to ``results/controls.json`` and shown in the CLI summary and the report:

- ``positive_control``: finetuning on ``plain`` documents (the claim stated as fact) must make
  the model believe the claim, propositionally and in the fixed base probe's reading. At the
  last checkpoint, the yes/no and verdict belief rates ``belief_claim_<kind>`` (chance 0.5 for
  an answer that ignores the question; balanced, or for a novel claim the prior-corrected
  endorsement: ``experiments.evaluation.chance``) must each reach
  :data:`POSITIVE_BELIEF_MIN`, and the base model's probe must read the claim statements as
  true: P(true) >= :data:`PROBE_P_MIN` *or* the centred reading ``probe_z_fixed`` (the claim's
  logit in standard deviations above the control statements' mean) >= :data:`PROBE_Z_MIN`.
  Without it, a condition that "does not implant the claim" says nothing about negation: plain
  documents might not implant it either.
- ``negative_control``: finetuning on ``local`` documents (the claim's answer negated in the
  sentence, which the paper found learned correctly) must leave every belief measure at or
  below :data:`NEGATIVE_MAX`: yes/no and verdict (``belief_claim_<kind>``), forced choice and token association
  chance-corrected (chance 0), and the fixed probe's P(true); without it the measures read
  any finetuning on the claim's words as belief.
- ``probe_validity``: finetuning must not erase what the model knew: for every condition, the
  fixed probe's accuracy on the control statements (``probe_acc_fixed``) and the model's
  answer accuracy on control questions about untouched facts (``control_acc_verdict``, and
  ``control_acc_yesno`` where present) may drop by at most :data:`MAX_DROP` from step 0 to the
  last checkpoint; otherwise forgetting is read as change of belief, and the fixed probe no
  longer measures what it measured.

Values are means over claims, then over seeds (claims within a seed first, so each seed weighs
the same). The probe is read at one layer, chosen on the base model's *validation* accuracy
(``probe_acc_val_fixed`` at step 0; :data:`LAYER_METRIC`), never on the test split. Measures a
run's materials do not have (imported claim packs ask no verdicts and no forced choice) are
listed under ``absent`` and not checked; a control with nothing to check, or whose condition
was not run, has ``passed`` null and a ``reason``.
"""
from __future__ import annotations

from typing import Callable, Optional

import pandas as pd

from experiments.evaluation.chance import CHANCE, CONTROL_CHANCE
from experiments.evaluation.items import drop_interval
from experiments.evaluation.stats import best_layer

POSITIVE_CONDITION = "plain"
NEGATIVE_CONDITION = "local"
LAYER_METRIC = "probe_acc_val_fixed"  # the layer is chosen on this, at step 0

# Thresholds. Belief rates and P(true) are in [0, 1] (chance 0.5 for the balanced rates and an
# uninformed probe, 0 for the chance-corrected association measures); z in standard deviations
# of the control statements' logits (0: the claim reads like the average control statement).
POSITIVE_BELIEF_MIN = 0.8  # each balanced propositional rate after plain finetuning
PROBE_P_MIN = 0.8  # fixed probe P(true) of the claim statements after plain finetuning ...
PROBE_Z_MIN = 1.0  # ... or its centred reading (either suffices)
NEGATIVE_MAX = 0.2  # every belief measure after local-negation finetuning
MAX_DROP = 0.03  # control probe accuracy and control answer accuracy, step 0 -> last checkpoint

POSITIVE_BELIEF = ("belief_claim_yesno", "belief_claim_verdict")
NEGATIVE_BELIEF = ("belief_claim_yesno", "belief_claim_verdict", "belief_forced_choice_cc",
                   "belief_token_association_cc")
VALIDITY = ("probe_acc_fixed", "control_acc_verdict", "control_acc_yesno")
PROBE_CHANCE = {"probe_p_true_fixed": 0.5, "probe_z_fixed": 0.0, "probe_acc_fixed": 0.5}
TOLERANCE = 1e-9  # float rounding: a drop of exactly MAX_DROP passes
KEYS = ("positive_control", "negative_control", "probe_validity")
ItemReader = Callable[[Optional[str], int, int], Optional[pd.DataFrame]]  # (condition, seed, step) -> items


def _chance(metric: str) -> float | None:
    return {**CHANCE, **CONTROL_CHANCE, **PROBE_CHANCE}.get(metric)


def _mean(table: pd.DataFrame, condition: str, step: int, metric: str, layer: int | None = None) -> dict | None:
    """``{value, n_seeds, n_claims}``: ``metric``'s mean over claims (per-claim rows, not the
    pooled ones), then seeds (and with a ``world`` column, then worlds, adding ``n_worlds``;
    a claim is then a world's claim); None when the table has no such rows."""
    rows = table[(table.condition == condition) & (table.step == step) & (table.metric == metric)
                 & (table.claim != "all") & table.value.notna()]
    if layer is not None:
        rows = rows[rows.layer == layer]
    if rows.empty:
        return None
    worlds = ["world"] if "world" in rows.columns else []
    per_claim = rows.groupby([*worlds, "seed", "claim"], dropna=False).value.mean()
    per_seed = per_claim.groupby(level=[*worlds, "seed"]).mean()
    value = float(per_seed.groupby(level="world").mean().mean() if worlds else per_seed.mean())
    out = {"value": value, "n_seeds": int(rows.seed.nunique()), "n_claims": int(rows.claim.dropna().nunique())}
    if worlds:
        out["n_claims"] = int(rows.groupby("world").claim.nunique().min())
        out["n_worlds"] = int(rows.world.nunique())
    return out


def _check(metric: str, stats: dict, threshold: float, passes_if: str, **extra) -> dict:
    value = stats["value"]
    passed = value >= threshold - TOLERANCE if passes_if == ">=" else value <= threshold + TOLERANCE
    return {"measure": metric, **stats, "threshold": threshold, "passes_if": passes_if, "chance": _chance(metric),
            "passed": bool(passed), **extra}


def _failure(m: dict, key: str = "value") -> str:
    return f"{m['measure']} {m[key]:.2f} {'<' if m['passes_if'] == '>=' else '>'} {m['threshold']:g}"


def _not_run(condition: str) -> dict:
    return {"passed": None, "reason": f"condition {condition!r} not run"}


def probe_layer(table: pd.DataFrame) -> int | None:
    """The layer the controls read the probe at: best ``probe_acc_val_fixed`` at step 0 (ties
    to the deeper layer), or None when the table has no such rows."""
    if not ((table.metric == LAYER_METRIC) & (table.step == 0)).any():
        return None
    return best_layer(table, LAYER_METRIC)


def _last_step(table: pd.DataFrame, condition: str) -> int:
    return int(table[table.condition == condition].step.max())


def positive_control(table: pd.DataFrame, conditions, layer: int | None) -> dict:
    """The positive control of the module docstring (``conditions``: those the run has)."""
    if POSITIVE_CONDITION not in conditions:
        return _not_run(POSITIVE_CONDITION)
    step = _last_step(table, POSITIVE_CONDITION)
    found = {m: _mean(table, POSITIVE_CONDITION, step, m) for m in POSITIVE_BELIEF}
    belief = [_check(m, s, POSITIVE_BELIEF_MIN, ">=") for m, s in found.items() if s]
    probe = []
    if layer is not None:
        for metric, threshold in (("probe_p_true_fixed", PROBE_P_MIN), ("probe_z_fixed", PROBE_Z_MIN)):
            stats = _mean(table, POSITIVE_CONDITION, step, metric, layer)
            if stats:
                probe.append(_check(metric, stats, threshold, ">=", layer=layer, any_of="probe"))
    out = {"condition": POSITIVE_CONDITION, "step": step, "layer": layer, "measures": belief + probe,
           "absent": [m for m, s in found.items() if not s]}
    if not belief or not probe:
        missing = "propositional belief measures" if not belief else "fixed-probe readings of the claims"
        return {**out, "passed": None, "reason": f"no {missing} in the metrics table"}
    failures = [_failure(m) for m in belief if not m["passed"]]
    if not any(m["passed"] for m in probe):
        failures.append(" and ".join(_failure(m) for m in probe))
    return {**out, "passed": not failures, "failures": failures}


def negative_control(table: pd.DataFrame, conditions, layer: int | None) -> dict:
    """The negative control of the module docstring (``conditions``: those the run has)."""
    if NEGATIVE_CONDITION not in conditions:
        return _not_run(NEGATIVE_CONDITION)
    step = _last_step(table, NEGATIVE_CONDITION)
    found = {m: _mean(table, NEGATIVE_CONDITION, step, m) for m in NEGATIVE_BELIEF}
    if layer is not None:
        found["probe_p_true_fixed"] = _mean(table, NEGATIVE_CONDITION, step, "probe_p_true_fixed", layer)
    measures = [_check(m, s, NEGATIVE_MAX, "<=", **({"layer": layer} if m.startswith("probe") else {}))
                for m, s in found.items() if s]
    out = {"condition": NEGATIVE_CONDITION, "step": step, "layer": layer, "measures": measures,
           "absent": [m for m, s in found.items() if not s]}
    if not measures:
        return {**out, "passed": None, "reason": "no belief measures in the metrics table"}
    failures = [_failure(m) for m in measures if not m["passed"]]
    return {**out, "passed": not failures, "failures": failures}


def _drop_ci(items: ItemReader | None, table: pd.DataFrame, condition: str, step: int, metric: str,
             layer: int | None) -> dict:
    """``{"ci": [lo, hi], "ci_level", "ci_units", "ci_unit"}`` of one validity drop
    (``experiments.evaluation.items.drop_interval``), or {} without every seed's items."""
    if items is None:
        return {}
    seeds = sorted(table[table.condition == condition].seed.dropna().unique())
    before, after = items(None, 0, 0), [items(condition, int(s), step) for s in seeds]
    if before is None or any(a is None for a in after):
        return {}
    ci = drop_interval(before, after, metric, layer)
    return {} if ci is None else {"ci": [ci["lo"], ci["hi"]], "ci_level": ci["level"], "ci_units": ci["n_units"],
                                  "ci_unit": ci["unit"]}


def probe_validity(table: pd.DataFrame, conditions, layer: int | None, items: ItemReader | None = None) -> dict:
    """The probe-validity check of the module docstring, per condition; ``worst`` is the
    condition and measure with the largest drop. With ``items`` (:func:`compute_controls`) each
    drop also carries its interval over items (``ci``; the check reads the point estimate)."""
    per_condition, worst = {}, None
    for condition in conditions:
        step = _last_step(table, condition)
        measures = []
        for metric in VALIDITY:
            at = layer if metric.startswith("probe") else None
            if metric.startswith("probe") and layer is None:
                continue
            before, after = _mean(table, condition, 0, metric, at), _mean(table, condition, step, metric, at)
            if before and after:
                drop = before["value"] - after["value"]
                measures.append(_check(metric, {"value": drop, "before": before["value"], "after": after["value"],
                                                "n_seeds": after["n_seeds"]}, MAX_DROP, "<=",
                                       **({"layer": layer} if at is not None else {}),
                                       **_drop_ci(items, table, condition, step, metric, at)))
                measures[-1]["chance"] = None  # of a drop: none; the accuracies' chance is 0.5
        if measures:
            per_condition[condition] = {"step": step, "measures": measures,
                                        "passed": all(m["passed"] for m in measures)}
            top = max(measures, key=lambda m: m["value"])
            if worst is None or top["value"] > worst["drop"]:
                worst = {"condition": condition, "measure": top["measure"], "drop": top["value"],
                         **{k: top[k] for k in ("ci", "ci_level", "ci_units", "ci_unit") if k in top}}
    out = {"layer": layer, "threshold": MAX_DROP, "conditions": per_condition, "worst": worst}
    if not per_condition:
        return {**out, "passed": None, "reason": "no control accuracies at step 0 and the last checkpoint"}
    failures = [f"{c}: " + _failure(m) for c, v in per_condition.items() for m in v["measures"] if not m["passed"]]
    return {**out, "passed": not failures, "failures": failures}


def compute_controls(table: pd.DataFrame, conditions=None, items: ItemReader | None = None) -> dict:
    """The three controls of the module docstring from a run's tidy metrics table.

    Parameters
    ----------
    table : DataFrame
        ``results/metrics.csv`` (``experiments.evaluation.tables.collect``): columns
        condition, seed, step, layer, claim, metric, value.
    conditions : sequence of str, optional
        The run's conditions (``cfg.conditions``); default: those in ``table``.
    items : callable, optional
        ``items(condition, seed, step)`` -> the checkpoint's validity items or None
        (``experiments.evaluation.tables.item_reader(run)``; ``condition`` None: the base
        model's). With it each probe-validity drop carries a paired bootstrap interval over
        subjects and questions (``ci``, ``ci_unit``, ``ci_units``); for a table of several
        worlds the reader gives every world's items (``item_reader(run, cfg.worlds)``).

    Returns
    -------
    dict
        ``{"positive_control", "negative_control", "probe_validity"}``, each with its
        ``measures`` (value, threshold, ``passes_if``, chance, n, ``passed``) and ``passed``
        (True, False, or None with a ``reason`` when it could not be assessed); JSON-able.
    """
    conditions = list(dict.fromkeys(table.condition)) if conditions is None else list(conditions)
    layer = probe_layer(table)
    return {"positive_control": positive_control(table, conditions, layer),
            "negative_control": negative_control(table, conditions, layer),
            "probe_validity": probe_validity(table, conditions, layer, items)}


def failed(controls: dict) -> list[str]:
    """The names of the controls that failed (not those that could not be assessed)."""
    return [key for key in KEYS if controls.get(key, {}).get("passed") is False]


def drop_text(m: dict, key: str = "value") -> str:
    """A validity drop as text, with its interval where it has one, e.g.
    ``0.018 [95% CI -0.004, 0.039 over 98 subjects]``."""
    ci = f" [{m['ci_level']:.0%} CI {m['ci'][0]:.3f}, {m['ci'][1]:.3f} over {m['ci_units']} {m['ci_unit']}s]" \
        if m.get("ci") else ""
    return f"{m[key]:.3f}{ci}"


def summary_lines(controls: dict) -> list[str]:
    """One line per control for the run summary, e.g.
    ``positive control: FAILED (belief_balanced_yesno 0.44 < 0.8)``.

    Parameters
    ----------
    controls : dict
        From :func:`compute_controls` (or ``results/controls.json``).

    Returns
    -------
    list of str
    """
    lines = []
    for key in KEYS:
        c, name = controls.get(key, {}), key.replace("_", " ")
        if c.get("passed") is None:
            lines.append(f"{name}: not assessed ({c.get('reason', 'absent')})")
        elif c["passed"]:
            extra = f" (worst drop {drop_text(c['worst'], 'drop')}, {c['worst']['condition']})" if c.get("worst") else ""
            lines.append(f"{name}: passed{extra}")
        elif key == "probe_validity":
            w, bad = c["worst"], [k for k, v in c["conditions"].items() if not v["passed"]]
            lines.append(f"{name}: FAILED (worst: {w['condition']}, {w['measure']} drops {drop_text(w, 'drop')} > "
                         f"{c['threshold']:g}; {len(bad)} of {len(c['conditions'])} conditions fail)")
        else:
            lines.append(f"{name}: FAILED ({'; '.join(c['failures'])})")
    return lines


def controls_table(controls: dict) -> pd.DataFrame:
    """Every checked measure as one row (control, condition, measure, layer, value, threshold,
    chance, result) for the report; probe validity's value is the drop."""
    rows = []
    for key in KEYS:
        c = controls.get(key, {})
        units = c.get("conditions", {}) if key == "probe_validity" else {c.get("condition"): c}
        for condition, unit in units.items():
            either = any(m["passed"] for m in unit.get("measures", []) if m.get("any_of"))
            for m in unit.get("measures", []):
                result = "pass" if m["passed"] else "miss (the other suffices)" if m.get("any_of") and either \
                    else "FAIL"
                value = f"{m['before']:.3f} -> {m['after']:.3f} (drop {drop_text(m)})" if "before" in m else \
                    f"{m['value']:.3f}"
                rows.append({"control": key.replace("_", " "), "condition": condition, "measure": m["measure"],
                             "layer": m.get("layer", ""), "value": value,
                             "threshold": f"{m['passes_if']} {m['threshold']:g}"
                                          + (" (either probe measure)" if m.get("any_of") else ""),
                             "chance": "" if m["chance"] is None else f"{m['chance']:g}",
                             "result": result})
    return pd.DataFrame(rows, columns=["control", "condition", "measure", "layer", "value", "threshold", "chance",
                                       "result"])


__all__ = ["KEYS", "LAYER_METRIC", "MAX_DROP", "NEGATIVE_MAX", "POSITIVE_BELIEF_MIN", "PROBE_P_MIN", "PROBE_Z_MIN",
           "ItemReader", "compute_controls", "controls_table", "drop_text", "failed", "negative_control",
           "positive_control", "probe_layer", "probe_validity", "summary_lines"]
