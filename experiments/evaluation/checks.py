"""Preconditions on the base model: before finetuning results mean anything, the base model
must know its facts, read negation in context, disbelieve the claims, and carry a linearly
decodable truth signal on held-out subjects."""
from __future__ import annotations

import random

import numpy as np

import interp
from experiments.evaluation import belief, chance, readout
from experiments.evaluation.stats import subject_interval
from experiments.evaluation.frames import unjudged_frames
from experiments.evaluation.judgement import judged_and_unjudged, judgement_accuracy, verdict_accuracy_by_frame
from experiments.materials.questions import control_questions, world_questions
from experiments.materials.statements import probe_statements
from experiments.materials.world import World

KINDS = ("belief_forced_choice", "belief_yesno", "belief_verdict")  # the raw rates (claim_belief_raw*)
CLAIM_MEASURES = ("belief_claim_yesno", "belief_claim_verdict")  # what the run's controls read


def probe_profile(lm, world: World, frame: str = "statement", probe_C: float = 0.1, position: str = "last",
                  estimator: str = "logistic"):
    """The truth probe as check-base fits it (on the world's probe statements in ``frame``, one
    per layer, on the training subjects), read on the held-out subjects' statements.

    Returns
    -------
    correct : array of bool, ``[L, n_test]``
        Which held-out statements each layer's probe reads right.
    tested : list of Statement
        Those statements, in that order.
    """
    statements = probe_statements(world, frame)
    acts = interp.residuals(lm, [s.text for s in statements], position=position).numpy()
    probes = readout.fit_probes(acts, statements, estimator=estimator, C=probe_C, device=lm.device)
    return readout.heldout_correct(acts, statements, probes), [s for s in statements if s.split == "test"]


def probe_accuracy_by_frame(correct: np.ndarray, statements) -> dict[str, dict]:
    """A probe's held-out accuracy per statement frame.

    Parameters
    ----------
    correct : array of bool, ``[n]``
        Which held-out statements the probe reads right (one layer of
        ``readout.heldout_correct``).
    statements : list of Statement
        Those statements, in that order; each ``template`` names its frame
        (``Fact.frame``; statements without one are left out).

    Returns
    -------
    dict
        frame template -> ``acc`` (chance 0.5: the statements are half true, half false in every
        frame) and ``n`` (held-out statements in it), in the order frames first occur.
    """
    frames = np.array([s.template for s in statements], dtype=object)
    return {t: {"acc": float(correct[frames == t].mean()), "n": int((frames == t).sum())}
            for t in dict.fromkeys(frames) if t}


def check_base(lm, world: World, probe_C: float = 0.1, position: str = "last", estimator: str = "logistic",
               belief_frames: str = "all") -> dict:
    """The base-model preconditions (fractions in [0, 1]) and the per-layer probe profiles.

    Parameters
    ----------
    lm : interp.LoadedModel
        The base model.
    world : World
    probe_C, position, estimator
        The probe settings (``eval.probe_C``, ``eval.position``, ``eval.probe``).
    belief_frames : str
        ``eval.belief_frames``: "judged" screens the claims' belief items
        (``experiments.evaluation.frames``) before ``claim_belief*`` is computed, and adds
        ``belief_frames_skipped`` (the frames left out) and, when one is, ``claim_belief_max_all_frames``
        (the figure over every frame).

    Returns
    -------
    dict
        ``heldout_qa`` (questions never asked in pretraining; ``heldout_entity_qa`` too when the
        world holds out whole entities), ``unjudged_verdict_acc`` and ``unjudged_yesno_acc``
        (facts never judged in pretraining; with ``unjudged_yesno_yes_share``,
        ``unjudged_tagged_acc``, ``unjudged_cloze_acc``, the verdicts per statement frame
        ``unjudged_verdict_by_frame`` and the frame judged worst ``unjudged_verdict_worst_frame``
        beside them), ``statement_probe_best_acc`` with its
        ``statement_probe_best_layer`` (the probe on the bare statement's final token, held-out
        subjects, best layer before the last; ``statement_probe_best_ci``, its 95% bootstrap
        interval over the ``statement_probe_ci_subjects`` held-out subjects; at that layer, per
        statement frame, ``statement_probe_by_frame`` and the frame read worst
        ``statement_probe_worst_frame``, :func:`probe_accuracy_by_frame`), beside ``verdict_probe_best_acc`` (read in the
        verdict frame) and ``verdict_logit_acc`` (the model's own logit(true) - logit(false) on
        the same test statements); ``in_context_true_answer`` (a negated document in context,
        the true answer kept) and ``in_context_plain_answer`` (a plain document in context, the
        claim's answer taken: the model reads context both ways); the claims' belief before
        finetuning (:func:`claim_belief_figures`: ``claim_belief``, ``claim_belief_max``,
        ``claim_belief_by_claim``, and the raw rates as ``claim_belief_raw*``); and the layer
        profiles.
    """
    statement_correct, tested = probe_profile(lm, world, "statement", probe_C, position, estimator)
    statement_profile = statement_correct.mean(1).tolist()
    verdict_profile = probe_profile(lm, world, "verdict", probe_C, position, estimator)[0].mean(1).tolist()
    before_last = statement_profile[:-1] or statement_profile
    best_layer = int(np.argmax(before_last))
    best = subject_interval(statement_correct[best_layer], [s.subject for s in tested])
    probe_by_frame = probe_accuracy_by_frame(statement_correct[best_layer], tested)
    statements = probe_statements(world, "verdict")
    test = np.array([s.split == "test" for s in statements])
    y = np.array([s.label for s in statements])
    texts = [s.text for s in statements]
    says_true = interp.continuation_logprobs(lm, texts, ["true"] * len(texts)) > interp.continuation_logprobs(lm, texts, ["false"] * len(texts))
    out = {"heldout_qa": belief.heldout_qa_accuracy(lm, world)}
    if world.heldout_entities:
        out["heldout_entity_qa"] = out["heldout_qa"]
    out |= judging_unseen_pairs(lm, world)
    skip_frames = ()
    if belief_frames == "judged":
        skip_frames = tuple(unjudged_frames(out.get("unjudged_verdict_by_frame", {})))
        out["belief_frames_skipped"] = list(skip_frames)
    return out | {
        "statement_probe_best_acc": before_last[best_layer],
        "statement_probe_best_layer": best_layer,
        "statement_probe_best_ci": [best["lo"], best["hi"]],
        "statement_probe_ci_subjects": best["n_subjects"],
        "statement_probe_by_frame": probe_by_frame,
        "statement_probe_worst_frame": min(probe_by_frame, key=lambda t: probe_by_frame[t]["acc"]) if probe_by_frame else None,
        "verdict_probe_best_acc": max(verdict_profile),
        "verdict_logit_acc": float((says_true.numpy()[test] == y[test]).mean()),
        "in_context_true_answer": belief.in_context_true_answer(lm, world),
        "in_context_plain_answer": 1 - belief.in_context_true_answer(lm, world, condition="plain"),
        **claim_belief_figures(lm, world, skip_frames),
        "statement_probe_acc_by_layer": statement_profile,
        "verdict_probe_acc_by_layer": verdict_profile,
    }


def claim_belief_figures(lm, world: World, skip_frames=()) -> dict:
    """How much the base model believes each claim before finetuning, on the measures the run's
    controls read, beside the raw rates.

    Per claim: ``belief_claim_yesno`` and ``belief_claim_verdict``
    (``experiments.evaluation.chance``: for a claim with a true fact the balanced rate, for a
    novel claim the endorsement with the response prior removed; a non-believer scores 0, a
    constant responder 0.5), and for a claim with a true fact ``belief_forced_choice`` (the
    claim's answer preferred to the true one). A novel claim's forced choice (its answer against
    an alternative nobody stated, about a person the model never read of) has no answer that a
    non-believer gives, so it is reported (``forced_choice_novel``) but read by no bound. The
    response prior comes from control questions about the probe statements (as in a run).

    Parameters
    ----------
    lm : interp.LoadedModel
    world : World
    skip_frames : statement-frame templates whose verdict items are left out (the belief-frame
        screen, ``experiments.evaluation.frames``).

    Returns
    -------
    dict
        ``claim_belief`` (mean over claims and measures), ``claim_belief_max`` (the largest: the
        precondition), ``claim_belief_by_claim`` (claim -> measure -> value), and the raw rates
        (``experiments.evaluation.belief``, whose chance depends on the model's answer priors):
        ``claim_belief_raw``, ``claim_belief_raw_max``, ``claim_belief_raw_by_kind``. A claim
        whose every verdict item ``skip_frames`` leaves out has no verdict measures. With
        ``skip_frames``, also ``claim_belief_max_all_frames`` (the same items scored once, every
        frame kept).
    """
    questions = [q for c in world.claims for q in world_questions(world, c, tokenizer=lm.tokenizer)]
    scored = belief.score_questions(lm, questions)  # every frame, once; the screen keeps a subset of the rows
    priors = chance.response_priors(belief.score_questions(lm, control_questions(probe_statements(world), world)))
    kept = {(q.claim, q.qid) for c in world.claims for q in world_questions(world, c, tokenizer=lm.tokenizer,
                                                                            skip_frames=skip_frames)}
    screened = _claim_figures(scored[[key in kept for key in zip(scored.claim, scored.qid)]], priors, world)
    if skip_frames:
        screened["claim_belief_max_all_frames"] = _claim_figures(scored, priors, world)["claim_belief_max"]
    return screened


def _claim_figures(scored, priors: dict, world: World) -> dict:
    """:func:`claim_belief_figures` from scored claim questions and the response priors."""
    raw = {c.name: {} for c in world.claims}
    for row in belief.belief_rows(scored, n_boot=1):
        if row["claim"] in raw and row["metric"] in KINDS:
            raw[row["claim"]][row["metric"]] = row["value"]
    by_claim = {}
    for claim in world.claims:
        measures = chance.claim_measures(scored[scored.claim == claim.name], priors)
        values = {m: measures[m] for m in CLAIM_MEASURES if m in measures}
        key = "forced_choice_novel" if claim.novel else "belief_forced_choice"
        values[key] = raw[claim.name]["belief_forced_choice"]
        by_claim[claim.name] = values
    bounded = [v for values in by_claim.values() for m, v in values.items() if m != "forced_choice_novel"]
    rates = [b[k] for b in raw.values() for k in KINDS if k in b]  # a screen can leave a claim no verdict item
    return {
        "claim_belief": float(np.mean(bounded)),
        "claim_belief_max": float(max(bounded)),
        "claim_belief_by_claim": by_claim,
        "claim_belief_raw": float(np.mean(rates)),
        "claim_belief_raw_max": float(max(rates)),
        "claim_belief_raw_by_kind": {k: float(np.mean([b[k] for b in raw.values() if k in b]))
                                     for k in KINDS if any(k in b for b in raw.values())},
    }


def judging_unseen_pairs(lm, world: World) -> dict:
    """How well the model judges facts it never saw judged (``world.judge_heldout``, all of them):
    verdicts on true/false, affirmative/negated statements, balanced yes/no questions, tagged
    statements and the statement frames' cloze (:func:`judgement.judgement_accuracy`). This is the
    generalisation that the claims' belief questions rely on. Beside the means, the verdicts per
    statement frame (``unjudged_verdict_by_frame``, :func:`judgement.verdict_accuracy_by_frame`)
    and the frame judged worst (``unjudged_verdict_worst_frame``, lowest balanced accuracy): a
    frame the model cannot judge makes every belief item in it read belief or disbelief whatever
    the model holds, which the mean hides."""
    if not world.judge_heldout:
        return {}
    _, never = judged_and_unjudged(world)
    acc = judgement_accuracy(lm, world, never, random.Random(f"unjudged-{world.seed}"), n=len(never))
    out = {"unjudged_verdict_acc": acc["verdict_acc"], "unjudged_yesno_acc": acc["yesno_acc"],
           "unjudged_yesno_yes_share": acc["yesno_first_share"], "unjudged_tagged_acc": acc["tagged_acc"]}
    if "statement_cloze_acc" in acc:
        out["unjudged_cloze_acc"] = acc["statement_cloze_acc"]
    by_frame = verdict_accuracy_by_frame(lm, world, never, random.Random(f"unjudged-frames-{world.seed}"))
    worst = min(by_frame, key=lambda frame: by_frame[frame]["balanced_acc"]) if by_frame else None
    return out | {"unjudged_verdict_by_frame": by_frame, "unjudged_verdict_worst_frame": worst}
