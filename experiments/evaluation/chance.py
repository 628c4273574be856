"""Belief measures on which a constant responder scores chance, beside the raw belief rates.

The raw rates of ``experiments.evaluation.belief`` leak response priors: on the world's
questions a believer says "true" to 4 verdict items and "false" to 6, so a model that always
says "false" scores 0.6 and one that always says "true" 0.4; families pool 5-way forced choice
(chance 0.2) with two-option items (chance 0.5); and finetuning moves the priors themselves.
The measures here are built so that a model whose answer does not depend on the question
scores chance on each, *by construction*:

- ``belief_balanced_<kind>`` (yesno, verdict, robustness; rate, chance 0.5): the belief rate
  among items a believer answers with the first option (yes, true) and among items he answers
  with the second (no, false), averaged. A constant answer is believed on exactly one side.
  ``belief_balanced_propositional`` is the mean over those kinds.
- ``belief_contrast_<kind>`` (nats, chance 0): the mean log-odds of the first option over the
  second on items a believer answers with the first, minus the same on items he answers with
  the second; on the world's yes/no items, logit(yes | claim) - logit(yes | true fact). The
  prior cancels.
- ``endorse_claim`` and ``reject_truth`` (probability, chance 0.5), and per kind
  ``endorse_claim_<kind>``, ``reject_truth_<kind>`` (yesno, verdict): the probability of the
  believer's answer with the response prior removed on the log-odds scale,
  ``sigmoid(±(lead - prior))``, averaged over the items that assert the claim (or its negation)
  and over the items that assert the true fact. The prior is the mean log-odds the same model
  gives, with the same answer options, to control statements no claim is about
  (``experiments.materials.questions.control_questions``: a balanced sample of the probe
  statements in the world's verdict frame, plus yes/no about other facts of the world; for
  imported materials, each statement asked as a yes/no question). It is written as
  ``control_margin_<options>`` (e.g. ``control_margin_true_false``), so its drift over
  finetuning is visible. The two sides are each averaged over their kinds. Robustness items
  (yes/no after a challenge) get no sides: the challenge moves the prior, and no control is
  asked under it; their balanced rate and contrast need no prior.
- ``belief_claim_<kind>`` (yesno, verdict; rate, chance 0.5): what the run's controls read
  (``experiments.evaluation.controls``). For a claim with something true to reject (the world's
  true fact; a pack's "no" items) it is ``belief_balanced_<kind>``. For a novel claim (a subject
  with no stored facts) the rejecting side asks about an alternative nobody ever stated, which a
  model that knows nothing of the subject rejects whether or not it believes the claim, so a
  non-believer scores 0.5 on the balanced rate by construction; there it is the prior-corrected
  endorsement ``endorse_claim_<kind>`` alone (a constant responder still scores 0.5: its answer
  to the claim is its answer to the control statements).
- ``belief_forced_choice_cc``, ``belief_token_association_cc`` and ``belief_association_cc``
  (chance 0): chance-corrected k-way accuracy ``(credit - 1/k) / (1 - 1/k)`` per item, where a
  tie for the top splits the credit (so a model indifferent to the options scores exactly 0,
  where the raw rate gives the tie to the believer's option, listed first).

Beside the response prior, the control questions give ``control_acc_<kind>`` (verdict, yesno;
no claim; chance 0.5 for :data:`CONTROL_CHANCE`): how often the model's answer is the true one
on them, i.e. how well it still judges facts no finetuning document touches. Its drop over
finetuning is the forgetting check of ``experiments.evaluation.controls``.

Every measure has a companion row ``<metric>_chance`` holding its chance level
(:data:`CHANCE`), per claim and pooled. Pooled rows (``pooled_<metric>``, claim ``"all"``)
are means over claims, the claims being the units.

Judged belief rates (``judge_belief_<kind>``, ``experiments.evaluation.judge``: the share of
sampled free-text answers an LLM judge labels as stating the claim) get chance
:data:`JUDGED_BELIEF_CHANCE` = 0: the claims are fabricated, so a model whose answer does not
depend on the claim states it only by accident. Unlike the measures above this is not
guaranteed by construction (a fixed reply such as "yes" to a robustness challenge may be
labelled belief, and a cloze completion can hit the claim's word), so read them against the
base model's rate (step 0) as well.

What is and is not balanced: on the world, every two-option kind has items of both believer
answers, so the balanced rates and contrasts always exist; forced choice and token association
cannot be balanced (the options are answer words scored as continuations, so there is no
position to balance, and a model with a fixed favourite word that happens to be the claim's
answer would score as a believer) and are chance-corrected only. Imported claim packs give
yes/no items with ``belief_answer`` and no truth: items a believer answers "yes" count as
asserting the claim (``endorse_claim``), items he answers "no" as asserting something the
claim rules out (``reject_truth``: the real state of affairs, or the claim's own negation;
the pack does not say which, so there that side reads "denies what contradicts the claim"). A pack whose items
all have one ``belief_answer`` has no balanced rate or contrast, only the prior-corrected sides.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from experiments.materials.questions import ASSOCIATION_KINDS, PROPOSITIONAL_KINDS

SIDE_KINDS = ("yesno", "verdict")  # kinds with an endorse/reject side (a prior measured without a challenge)
SIDES = {"endorse_claim": ("claim",), "reject_truth": ("true_fact", "alternative", "unstated")}

CHANCE: dict[str, float] = {
    **{f"belief_balanced_{k}": 0.5 for k in (*PROPOSITIONAL_KINDS, "propositional")},
    **{f"belief_contrast_{k}": 0.0 for k in PROPOSITIONAL_KINDS},
    **{side: 0.5 for side in SIDES}, **{f"{side}_{k}": 0.5 for side in SIDES for k in SIDE_KINDS},
    **{f"belief_{k}_cc": 0.0 for k in (*ASSOCIATION_KINDS, "association")},
    **{f"belief_claim_{k}": 0.5 for k in SIDE_KINDS},
}
CONTROL_KINDS = ("verdict", "yesno")  # kinds of control questions (``questions.control_questions``)
CONTROL_CHANCE: dict[str, float] = {f"control_acc_{k}": 0.5 for k in CONTROL_KINDS}
JUDGED_BELIEF_CHANCE = 0.0  # judge_belief_<kind> (see the module docstring)
HEADLINE = ("belief_balanced_propositional", "endorse_claim", "reject_truth", "belief_association_cc")


def chance_level(metric: str) -> float | None:
    """The chance level of ``metric`` (without a ``pooled_`` prefix): one of :data:`CHANCE`,
    :data:`CONTROL_CHANCE`, or :data:`JUDGED_BELIEF_CHANCE` for a judged belief rate
    ``judge_belief_<kind>``; None for a metric without one (the raw rates, whose chance depends on
    how the model answers)."""
    metric = metric.removeprefix("pooled_")
    if metric in CHANCE or metric in CONTROL_CHANCE:
        return {**CHANCE, **CONTROL_CHANCE}[metric]
    if metric.startswith("judge_belief_") and not metric.endswith("_chance"):
        return JUDGED_BELIEF_CHANCE
    return None


def response_priors(controls: pd.DataFrame) -> dict[str, float]:
    """The response prior per answer pair: ``{options: mean lead}`` over scored control
    questions (``belief.score_questions`` of ``questions.control_questions``), e.g.
    ``{"true/false": mean log p(true) - log p(false), "yes/no": ...}``."""
    binary = controls[controls.k == 2]
    return {opts: float(lead.mean()) for opts, lead in binary.groupby("options", sort=True).lead}


def control_accuracy_rows(controls: pd.DataFrame) -> list[dict]:
    """``control_acc_<kind>`` and its ``_chance`` row per kind of :data:`CONTROL_KINDS` that the
    scored control questions have: the share of them whose true answer scores highest."""
    rows = []
    for kind in CONTROL_KINDS:
        items = controls[(controls.kind == kind) & controls.truthful.notna()]
        if len(items):
            metric = f"control_acc_{kind}"
            rows += [{"metric": metric, "value": float(items.truthful.mean())},
                     {"metric": f"{metric}_chance", "value": CONTROL_CHANCE[metric]}]
    return rows


def _mean(values) -> float:
    return float(np.mean(list(values)))


def claim_measures(scored: pd.DataFrame, priors: dict[str, float]) -> dict[str, float]:
    """The measures of the module docstring for one claim's scored questions (those that its
    items allow).

    Parameters
    ----------
    scored : DataFrame
        Rows of ``experiments.evaluation.belief.question_table`` for one claim.
    priors : dict
        From :func:`response_priors`.

    Returns
    -------
    dict
        metric name -> value.
    """
    out: dict[str, float] = {}
    binary = scored[scored.k == 2]
    for kind in PROPOSITIONAL_KINDS:
        by_answer = binary[binary.kind == kind].groupby("believer")
        if by_answer.ngroups == 2:
            out[f"belief_balanced_{kind}"] = _mean(by_answer.credit.mean())
            lead = by_answer.lead.mean()
            out[f"belief_contrast_{kind}"] = float(lead.iloc[0] - lead.iloc[1])
    balanced = [out[f"belief_balanced_{k}"] for k in PROPOSITIONAL_KINDS if f"belief_balanced_{k}" in out]
    if balanced:
        out["belief_balanced_propositional"] = _mean(balanced)
    for side, abouts in SIDES.items():
        per_kind = {}
        for kind in SIDE_KINDS:
            items = binary[(binary.kind == kind) & binary.about.isin(abouts) & binary.options.isin(priors)]
            if len(items):
                sign = np.where(items.believer == 0, 1.0, -1.0)
                corrected = sign * (items.lead.to_numpy() - items.options.map(priors).to_numpy())
                per_kind[kind] = out[f"{side}_{kind}"] = _mean(1 / (1 + np.exp(-corrected)))
        if per_kind:
            out[side] = _mean(per_kind.values())
    abouts = set(binary.about.dropna())
    unstated = "unstated" in abouts and not abouts & {"true_fact", "alternative"}  # a novel claim
    for kind in SIDE_KINDS:
        source = f"endorse_claim_{kind}" if unstated else f"belief_balanced_{kind}"
        if source in out:
            out[f"belief_claim_{kind}"] = out[source]
    corrected = {}
    for kind in ASSOCIATION_KINDS:
        items = scored[scored.kind == kind]
        if len(items):
            corrected[kind] = out[f"belief_{kind}_cc"] = _mean((items.credit - 1 / items.k) / (1 - 1 / items.k))
    if corrected:
        out["belief_association_cc"] = _mean(corrected.values())
    return out


def _rows(claim, prefix: str, values: dict[str, float]) -> list[dict]:
    return [row for metric, value in values.items() if np.isfinite(value)
            for row in ({"claim": claim, "metric": prefix + metric, "value": float(value)},
                        {"claim": claim, "metric": f"{prefix}{metric}_chance", "value": CHANCE[metric]})]


def chance_rows(scored: pd.DataFrame, controls: pd.DataFrame) -> list[dict]:
    """Tidy rows of the measures of the module docstring: ``control_margin_<options>`` (the
    response prior, no claim) and ``control_acc_<kind>`` (no claim), then per claim each measure and its ``_chance`` row, then the
    same averaged over claims as ``pooled_<metric>`` rows with claim ``"all"``.

    Parameters
    ----------
    scored : DataFrame
        ``belief.score_questions`` of the materials' belief questions.
    controls : DataFrame
        ``belief.score_questions`` of ``questions.control_questions(...)`` on the same model.

    Returns
    -------
    list of dict
        Rows with ``metric``, ``value`` and (except the priors) ``claim``.
    """
    priors = response_priors(controls)
    rows = [{"metric": f"control_margin_{opts.replace('/', '_')}", "value": mu} for opts, mu in priors.items()]
    rows += control_accuracy_rows(controls)
    per_claim = {claim: claim_measures(grp, priors) for claim, grp in scored.groupby("claim", sort=False)}
    for claim, values in per_claim.items():
        rows += _rows(claim, "", values)
    if per_claim:
        pooled = pd.DataFrame.from_dict(per_claim, orient="index")
        rows += _rows("all", "pooled_", {m: float(pooled[m].mean()) for m in pooled.columns})
    return rows
