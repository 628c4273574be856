"""The base model's preconditions: what ``neglect check-base`` must show before any finetuning
result on the synthetic world means something (issue: testbed v2).

Each is a figure of ``experiments.evaluation.checks.check_base`` and a bound:

- ``heldout_entity_qa`` >= 0.95: questions about entities pretraining only described (answers
  never in a question, answer or judgement); ``heldout_qa`` where the world holds out pairs.
- ``unjudged_verdict_acc``, ``unjudged_yesno_acc`` >= 0.95: facts never judged in pretraining
  are judged right (chance 0.5).
- ``statement_probe_best_acc`` >= 0.90: a probe on the bare statement's final token, held-out
  entities, at some layer before the last (chance 0.5).
- ``in_context_true_answer`` >= 0.9 (a negated document in context keeps the true answer) and
  ``in_context_plain_answer`` >= 0.5 (a plain one moves it): the model reads context both ways.
- ``claim_belief_max`` <= 0.05: no claim is believed before finetuning on any measure the
  controls read (``checks.claim_belief_figures``: chance-corrected, so a constant responder
  fails it; the raw rates are reported beside as ``claim_belief_raw*``).
"""
from __future__ import annotations

PRECONDITIONS: dict[str, tuple[str, float]] = {
    "heldout_entity_qa": (">=", 0.95),
    "unjudged_verdict_acc": (">=", 0.95),
    "unjudged_yesno_acc": (">=", 0.95),
    "statement_probe_best_acc": (">=", 0.90),
    "in_context_true_answer": (">=", 0.9),
    "in_context_plain_answer": (">=", 0.5),
    "claim_belief_max": ("<=", 0.05),
}
FALLBACK = {"heldout_entity_qa": "heldout_qa"}  # worlds that hold out pairs, not entities


def precondition_table(figures: dict) -> list[dict]:
    """One row per precondition: ``{name, value, op, bound, passed}`` (value None, passed None
    when the figure is missing or undefined).

    Parameters
    ----------
    figures : dict
        ``check_base`` output (``results/check_base.json``).

    Returns
    -------
    list of dict
    """
    rows = []
    for name, (op, bound) in PRECONDITIONS.items():
        key = name if name in figures else FALLBACK.get(name, name)
        value = figures.get(key)
        ok = None
        if isinstance(value, (int, float)) and value == value:
            ok = value >= bound if op == ">=" else value <= bound
        rows.append({"name": key, "value": value, "op": op, "bound": bound, "passed": ok})
    return rows


def failure_line(figures: dict) -> str | None:
    """One line naming every failed precondition, or None when all pass."""
    failed = [r for r in precondition_table(figures) if r["passed"] is False]
    if not failed:
        return None
    inverse = {">=": "<", "<=": ">"}
    return "base model fails its preconditions: " + "; ".join(
        f"{r['name']} {r['value']:.3f} {inverse[r['op']]} {r['bound']}" for r in failed)
