"""Preconditions on the base model: before finetuning results mean anything, the base model
must know its facts, read negation in context, disbelieve the claims, and carry a linearly
decodable truth signal on held-out subjects."""
from __future__ import annotations

import random

import numpy as np

import interp
from experiments.evaluation import belief, readout
from experiments.evaluation.scoring import option_logprobs
from experiments.materials.statements import probe_statements, verdict_variants
from experiments.materials.world import World


def check_base(lm, world: World, probe_C: float = 0.1, position: str = "last", estimator: str = "logistic") -> dict:
    """The base-model figures as fractions in [0, 1], plus the per-layer probe profile
    (held-out accuracy of the ``estimator`` probe, ``eval.probe``, at every layer)."""
    per_claim = [belief.claim_belief(lm, c) for c in world.claims]
    kinds = ("belief_forced_choice", "belief_yesno", "belief_verdict")
    statements = probe_statements(world)
    acts = interp.residuals(lm, [s.text for s in statements], position=position).numpy()
    probes = readout.fit_probes(acts, statements, estimator=estimator, C=probe_C)
    profile = readout.heldout_accuracy(acts, statements, probes).tolist()
    test = np.array([s.split == "test" for s in statements])
    y = np.array([s.label for s in statements])
    texts = [s.text for s in statements]
    says_true = interp.continuation_logprobs(lm, texts, ["true"] * len(texts)) > interp.continuation_logprobs(lm, texts, ["false"] * len(texts))
    verdict_acc = float((says_true.numpy()[test] == y[test]).mean())
    return {
        "heldout_qa": belief.heldout_qa_accuracy(lm, world),
        "claim_belief": float(np.mean([b[k] for b in per_claim for k in kinds])),
        "claim_belief_by_kind": {k: float(np.mean([b[k] for b in per_claim])) for k in kinds},
        "in_context_true_answer": belief.in_context_true_answer(lm, world),
        "probe_best_acc": max(profile),
        "verdict_acc_heldout": verdict_acc,  # the model's own true/false answer on the probe's test statements
        "probe_acc_by_layer": profile,
        **judging_unseen_pairs(lm, world),
    }


def judging_unseen_pairs(lm, world: World) -> dict:
    """How well the model judges facts it never saw judged (``world.judge_heldout``): verdicts on
    true/false, affirmative/negated statements and balanced yes/no questions. This is the
    generalisation that the claims' belief questions rely on."""
    if not world.judge_heldout:
        return {}
    rng = random.Random(f"unjudged-{world.seed}")
    verdicts, yesno = [], []
    for s, r in sorted(world.judge_heldout):
        fact = world.fact_of(s, r)
        wrong = world.wrong_object(fact, rng)
        verdicts += [(text, truth) for text, truth, _ in verdict_variants(fact, wrong, [rng.randrange(8) for _ in range(4)])]
        yesno += [(fact.rel().yesno.format(s=s, o=fact.obj), True), (fact.rel().yesno.format(s=s, o=wrong), False)]

    def accuracy(items, options):
        scores = option_logprobs(lm, [p for p, _ in items], [options] * len(items))
        return float(np.mean([(int(sc.argmax()) == 0) == truth for sc, (_, truth) in zip(scores, items)]))

    return {"unjudged_verdict_acc": accuracy(verdicts, ("true", "false")),
            "unjudged_yesno_acc": accuracy(yesno, ("yes", "no"))}
