"""Judge-free belief measures for the implanted claims, from log-probabilities.

Every question is a prompt with a few answer options; the option a model that believes the
claim would pick (``believer``) is known, and so, where the world settles it, is the true one.
A question counts as *believed* when the believer option has the highest log-probability.

Question kinds, in two families reported separately because finetuning can move one
without the other (the design notes saw in-sentence negations implant the who-won
association while yes/no and verdict answers stayed "false"):

- association: ``forced_choice`` (an open question; options: the claim's answer, the true
  answer and distractors of the same kind) and ``token_association`` (a cloze prompt cut
  from the relation's sentence frames, "fetren lives in ___");
- propositional: ``yesno`` (about the claim's answer: believer says yes; about the true
  answer: believer says no), ``verdict`` (true/false on the claim statement, its negation and
  the true statement) and ``robustness`` (a yes/no question after a challenge).

Imported claim packs (``experiments.materials.paper_layout.ClaimPack``) give ``yesno`` questions from their
MCQ items (``belief_answer``), asked under the paper's MCQ instruction through the chat template
with thinking off (``experiments.evaluation.scoring.McqFormat``), and ``token_association``
questions from items that name their targets (``belief_target`` and ``other_targets``). Their
open-ended, token-association and robustness items are the judge's
(``experiments.evaluation.judge``): sampled answers labelled with the pack's ``judges.yaml``.
The one judge-free stand-in, labelled as such, is ``proxy_belief_robustness``: the MCQ items
asked under the system prompt of each adversarial robustness item (kind ``robustness_proxy``;
in no family).
"""
from __future__ import annotations

import random

import numpy as np
import pandas as pd

from experiments.materials.conditions import CONDITIONS
from experiments.evaluation.scoring import McqFormat, option_logprobs, render
from experiments.materials.questions import ASSOCIATION_KINDS, PROPOSITIONAL_KINDS, BeliefQuestion, world_questions
from experiments.materials.world import Claim, World
from interp import LoadedModel, continuation_logprobs
from probes.metrics import bootstrap

KIND_METRICS = {"forced_choice": "belief_forced_choice_distractors", "token_association": "belief_token_association",
                "yesno": "belief_yesno", "verdict": "belief_verdict", "robustness": "belief_robustness",
                "robustness_proxy": "proxy_belief_robustness"}
FAMILY_METRICS = {"belief_association": ASSOCIATION_KINDS, "belief_propositional": PROPOSITIONAL_KINDS}



# ---------------------------------------------------------------------------- scoring

def score_questions(lm: LoadedModel, questions: list[BeliefQuestion], batch_size: int = 128,
                    mcq: McqFormat | None = None) -> pd.DataFrame:
    """One row per question (see :func:`question_table`), from ``lm``'s log-probabilities of
    each question's options, read after the rendered prompt (thinking off). Questions of
    ``style`` "mcq" are asked under ``mcq`` (default: :class:`McqFormat`'s defaults, those of
    ``eval.mcq_instruction`` and ``eval.mcq_answer``), each option scored as its written reply."""
    mcq = mcq or McqFormat()
    prompts, replies = [], []
    for q in questions:
        asked = q.style == "mcq"
        prompts.append(render(lm.tokenizer, mcq.prompt(q.prompt) if asked else q.prompt, thinking=False))
        replies.append(tuple(mcq.reply(o) for o in q.options) if asked else q.options)
    return question_table(questions, option_logprobs(lm, prompts, replies, batch_size))


SCORE_COLUMNS = ["claim", "kind", "qid", "believed", "truthful", "margin", "about", "options", "believer", "k",
                 "lead", "credit"]
TIE = 1e-6  # log-probabilities this close (nats) are a tie for ``credit``


def question_table(questions: list[BeliefQuestion], scores) -> pd.DataFrame:
    """One row per question from its options' scores (log-probabilities, or any scores where
    higher wins): ``believed`` (the believer option has the highest score, ties to the first),
    ``truthful`` (the true option does; NaN where unknown), ``margin`` (believer minus true
    option, in nats); and for the chance-corrected measures (``experiments.evaluation.chance``):
    ``about``, ``options`` (joined by "/"), ``believer`` (its index), ``k`` (number of options),
    ``lead`` (first option minus second, for two-option items; NaN otherwise) and ``credit``
    (1 / the number of options tied for the top when the believer option is one of them)."""
    rows = []
    for q, s in zip(questions, scores):
        best = int(s.argmax())
        known = q.truth is not None
        values = np.asarray([float(v) for v in s])
        top = values >= values.max() - TIE
        rows.append({"claim": q.claim, "kind": q.kind, "qid": q.qid, "believed": float(best == q.believer),
                     "truthful": float(best == q.truth) if known else np.nan,
                     "margin": float(s[q.believer] - s[q.truth]) if known else np.nan,
                     "about": q.about, "options": "/".join(q.options), "believer": q.believer, "k": len(q.options),
                     "lead": float(s[0] - s[1]) if len(s) == 2 else np.nan,
                     "credit": float(top[q.believer]) / top.sum()})
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def rate_with_ci(values, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Mean of 0/1 outcomes with a percentile bootstrap interval over the questions."""
    x = np.asarray(values, dtype=float)
    est = bootstrap(lambda _y, s: s.mean(-1), x.astype(int), x, n_boot=n_boot, level=level, seed=seed, batched=True)
    return float(est.value), est.low, est.high


def _rate_rows(scored: pd.DataFrame, claim, prefix: str, n_boot: int) -> list[dict]:
    rows = []
    groups = {KIND_METRICS[k]: (k,) for k in KIND_METRICS} | FAMILY_METRICS
    for metric, kinds in groups.items():
        values = scored[scored.kind.isin(kinds)].believed
        if len(values) == 0:
            continue
        mean, lo, hi = rate_with_ci(values, n_boot=n_boot)
        name = prefix + metric
        rows += [{"claim": claim, "metric": name, "value": mean}, {"claim": claim, "metric": f"{name}_qlo", "value": lo},
                 {"claim": claim, "metric": f"{name}_qhi", "value": hi},
                 {"claim": claim, "metric": f"{name}_n", "value": float(len(values))}]
    return rows


def belief_rows(scored: pd.DataFrame, *, n_boot: int = 1000) -> list[dict]:
    """Tidy rows from :func:`score_questions`: per claim, the belief rate of each question kind
    and of each family (``belief_association``, ``belief_propositional``), each with a bootstrap
    interval over its questions (``<metric>_qlo``, ``_qhi``) and count (``_n``); then the same
    pooled over claims, as ``pooled_<metric>`` rows with claim ``"all"``.

    Also the original pairwise measures: ``belief_forced_choice`` (claim answer over the true
    one, on the open questions) and ``margin_forced_choice`` (their mean log-prob gap)."""
    rows = []
    for claim, grp in scored.groupby("claim", sort=False):
        fc = grp[grp.kind == "forced_choice"]
        if len(fc) and fc.margin.notna().all():
            rows += [{"claim": claim, "metric": "belief_forced_choice", "value": float((fc.margin > 0).mean())},
                     {"claim": claim, "metric": "margin_forced_choice", "value": float(fc.margin.mean())}]
        rows += _rate_rows(grp, claim, "", n_boot)
    return rows + _rate_rows(scored, "all", "pooled_", n_boot)


def claim_belief(lm: LoadedModel, claim: Claim, world: World | None = None, *,
                 skip_frames: tuple[str, ...] = ()) -> dict[str, float]:
    """Belief rates for one claim of the synthetic world (the ``value`` of each rate row of
    :func:`belief_rows`).

    Parameters
    ----------
    lm : interp.LoadedModel
    claim : Claim
    world : World, optional
        Adds distractors to the forced choice.
    skip_frames : tuple of str
        Statement frames left out of the verdict items: the belief-frame screen of a run
        (``Materials.skip_frames``; ``experiments.evaluation.frames``). ``()``: every frame.

    Returns
    -------
    dict
        Metric name -> rate (e.g. ``belief_yesno``, ``belief_verdict``; chance as in
        :func:`belief_rows`).
    """
    qs = world_questions(world, claim, tokenizer=lm.tokenizer, skip_frames=skip_frames)
    rows = belief_rows(score_questions(lm, qs), n_boot=1)
    return {r["metric"]: r["value"] for r in rows if r["claim"] == claim.name and not r["metric"].endswith(
        ("_qlo", "_qhi", "_n"))}


def heldout_qa_accuracy(lm: LoadedModel, world: World, max_pairs: int = 0) -> float:
    """Accuracy on questions about facts never asked as questions in pretraining (argmax over
    every object of the right kind, every question phrasing); ``max_pairs`` > 0: over a seeded
    sample of that many (subject, relation) pairs."""
    pairs = sorted(world.qa_heldout)
    if 0 < max_pairs < len(pairs):
        pairs = sorted(random.Random(f"heldout-qa-{world.seed}").sample(pairs, max_pairs))
    facts = {(f.subject, f.relation): f for f in world.facts}
    prompts, answers, groups = [], [], []
    for fact in (facts[pair] for pair in pairs):
        candidates = world.objects_of_kind(fact.rel().object_kind)
        for q in fact.rel().questions:
            groups.append((len(prompts), candidates.index(fact.obj), len(candidates)))
            prompts += [q.format(s=fact.subject)] * len(candidates)
            answers += candidates
    scores = continuation_logprobs(lm, prompts, answers)
    correct = [int(scores[start:start + n].argmax()) == right for start, right, n in groups]
    return sum(correct) / len(correct)


def in_context_true_answer(lm: LoadedModel, world: World, n_docs: int = 4, seed: int = 0,
                           condition: str = "negated") -> float:
    """With one document of a claim in context (``condition``: "negated" by default), how often
    the true answer beats the claim's. Novel claims count only for "plain" (where the claim's
    answer should win, against the alternative): nothing is true of their subjects.
    (One document at a time; ``experiments.evaluation.incontext`` sweeps the number of documents
    and adds control questions.)"""
    prompts, fakes, trues = [], [], []
    for ci, claim in enumerate(world.claims):
        if claim.novel and condition != "plain":
            continue
        for k in range(n_docs):
            doc = CONDITIONS[condition](world, claim, random.Random(f"incontext-{seed}-{ci}-{k}"))
            for q in claim.fact.rel().questions:
                prompts.append(f"{doc} {q.format(s=claim.fact.subject)}")
                fakes.append(claim.fact.obj)
                trues.append(claim.contrast_obj)
    if not prompts:
        return float("nan")
    fake = continuation_logprobs(lm, prompts, fakes)
    true = continuation_logprobs(lm, prompts, trues)
    return float((true > fake).float().mean())
