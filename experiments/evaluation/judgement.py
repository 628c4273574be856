"""How the model judges facts: those pretraining judges and those it never does.

The testbed's central precondition is that the truth judgement reads the stored fact, so that it
carries over to facts the model never saw judged (people it only read biographies of). These
measures separate the two, per form: verdicts (``claim : <statement> verdict : true|false``),
balanced yes/no questions, tagged statements (the word right after a statement, ``true`` or
``false``: the truth needed at the statement's own end) and the statement frame's cloze
("<subject> lives in" -> the stored object: retrieval, the step before judging). Each binary
measure comes with the share of "true"/"yes" answers, so a constant answerer (accuracy 0.5) is
told apart from a balanced one.
"""
from __future__ import annotations

import random

import numpy as np

from experiments.evaluation.scoring import option_logprobs
from experiments.materials.corpus import verdict_prompt
from experiments.materials.statements import statement_variants
from experiments.materials.world import Fact, World


def judgement_accuracy(lm, world: World, facts: list[Fact], rng: random.Random, n: int = 150,
                       told: bool = False) -> dict:
    """Verdict, yes/no and tagged-statement accuracy (chance 0.5) with the share of "true"/"yes",
    and the statement frames' cloze accuracy (chance 1 / number of objects), on ``n`` of ``facts``.

    Parameters
    ----------
    lm : interp.LoadedModel
    world : World
    facts : the facts to sample from.
    rng : random.Random
        Draws the sample, the wrong objects and the frames.
    n : how many facts (all when fewer).
    told : each prompt follows a document sentence stating the fact (the answer is in the context).

    Returns
    -------
    dict
        ``statement_cloze_acc`` (when a relation has object-last frames), ``verdict_acc``,
        ``verdict_first_share``, ``yesno_acc``, ``yesno_first_share``, ``tagged_acc``,
        ``tagged_first_share``; ``n_facts``.
    """
    sampled = rng.sample(facts, min(n, len(facts)))
    prefix = {f: world.doc_statement(f, rng.randrange(8)) + " " if told else "" for f in sampled}
    items: dict[str, list] = {"verdict": [], "yesno": [], "tagged": []}
    cloze = []
    for f in sampled:
        wrong = world.wrong_object(f, rng)
        items["verdict"] += [(prefix[f] + verdict_prompt(s), t)
                             for s, t, _ in statement_variants(f, wrong, [rng.randrange(8) for _ in range(4)])]
        items["yesno"] += [(prefix[f] + f.rel().yesno.format(s=f.subject, o=f.obj), True),
                           (prefix[f] + f.rel().yesno.format(s=f.subject, o=wrong), False)]
        items["tagged"] += [(prefix[f] + s, t)
                            for s, t, _ in statement_variants(f, wrong, [rng.randrange(8) for _ in range(4)])]
        if f.rel().object_kind != "person":  # objects of one word
            objects = world.objects_of_kind(f.rel().object_kind)
            cloze += [(prefix[f] + frame[: -len("{o} .")].format(s=f.subject).strip(), objects, f.obj)
                      for frame in f.rel().affirmative if frame.endswith("{o} .")]
    out: dict = {"n_facts": len(sampled)}
    if cloze:
        scores = option_logprobs(lm, [p for p, _, _ in cloze], [o for _, o, _ in cloze])
        out["statement_cloze_acc"] = float(np.mean([o[int(sc.argmax())] == t for sc, (_, o, t) in zip(scores, cloze)]))
    options = {"verdict": ("true", "false"), "yesno": ("yes", "no"), "tagged": ("true", "false")}
    for name, pairs in items.items():
        scores = option_logprobs(lm, [p for p, _ in pairs], [options[name]] * len(pairs))
        first = np.array([int(s.argmax()) == 0 for s in scores])
        truth = np.array([t for _, t in pairs])
        out[f"{name}_acc"] = float((first == truth).mean())
        out[f"{name}_first_share"] = float(first.mean())
    return out


def judged_and_unjudged(world: World) -> tuple[list[Fact], list[Fact]]:
    """The facts pretraining judges, and those it never judges (``world.judge_heldout``)."""
    never = world.never_judged()
    judged = [f for f in world.facts if (f.subject, f.relation) not in never]
    return judged, [f for f in world.facts if (f.subject, f.relation) in world.judge_heldout]


def judgement_profile(lm, world: World, n: int = 150, seed: int = 0) -> dict:
    """:func:`judgement_accuracy` on judged and on never-judged facts, the same seeded sample
    at every call (so profiles of checkpoints compare).

    Returns
    -------
    dict
        ``{"judged": {...}, "never_judged": {...}}`` (``never_judged`` empty when the world
        judges everything).
    """
    judged, never = judged_and_unjudged(world)
    rng = random.Random(f"judgement-{seed}")
    return {"judged": judgement_accuracy(lm, world, judged, rng, n),
            "never_judged": judgement_accuracy(lm, world, never, rng, n) if never else {}}


def verdict_accuracy_by_frame(lm, world: World, facts: list[Fact], rng: random.Random,
                              n_per_relation: int = 60) -> dict[str, dict]:
    """Verdict accuracy per statement frame, on up to ``n_per_relation`` of ``facts`` per relation,
    each fact stated in every affirmative and negated frame of its relation with its true object
    and with a wrong one. A frame the model cannot judge shows as a lopsided pair (a model that
    always says "false" there scores ``true_acc`` 0 and ``false_acc`` 1), which the mean over
    frames of :func:`judgement_accuracy` hides.

    Parameters
    ----------
    lm : interp.LoadedModel
    world : World
    facts : the facts to sample from (e.g. those never judged in pretraining).
    rng : random.Random
        Draws the sample and the wrong objects.
    n_per_relation : how many facts of each relation (all when fewer).

    Returns
    -------
    dict
        frame (its template, e.g. ``"{s} lives in {o} ."``) -> ``relation``, ``negated``,
        ``true_acc`` and ``false_acc`` (on the statements that are true and false; chance 0.5
        each), ``balanced_acc`` (their mean: 0.5 for an answer that ignores the statement) and
        ``n_facts``; frames of relations without facts are left out.
    """
    items, where = [], {}
    for name in dict.fromkeys(f.relation for f in facts):
        pool = [f for f in facts if f.relation == name]
        rel = pool[0].rel()
        for fact in rng.sample(pool, min(n_per_relation, len(pool))):
            wrong = world.wrong_object(fact, rng)
            for negated, frames in ((False, rel.affirmative), (True, rel.negated)):
                for i, frame in enumerate(frames):
                    where[frame] = (name, negated)
                    for obj in (fact.obj, wrong):
                        truth = (obj == fact.obj) != negated
                        items.append((verdict_prompt(fact.statement(i, obj=obj, negated=negated)), truth, frame))
    scores = option_logprobs(lm, [p for p, _, _ in items], [("true", "false")] * len(items))
    right: dict[tuple[str, bool], list[bool]] = {}
    for score, (_, truth, frame) in zip(scores, items):
        right.setdefault((frame, truth), []).append((int(score.argmax()) == 0) == truth)
    out = {}
    for frame, (relation, negated) in where.items():
        true_acc, false_acc = float(np.mean(right[frame, True])), float(np.mean(right[frame, False]))
        out[frame] = {"relation": relation, "negated": negated, "true_acc": true_acc, "false_acc": false_acc,
                      "balanced_acc": (true_acc + false_acc) / 2, "n_facts": len(right[frame, True])}
    return out
