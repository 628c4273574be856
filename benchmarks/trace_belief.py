"""Does a finetuned fact reach the judgement when the model first recalls what it knows? A diagnostic
for base models pretrained with judgement traces (``corpus.trace``).

A trace document is ``claim : <statement> <a biography sentence of the stored fact> verdict :
true|false .``: the model learned to recall the subject's stored fact before judging. The eighth
and ninth sessions found that on such 8-layer models plain finetuning teaches the claim's answer
(forced choice 1.0) while the direct verdict (``claim : <statement> verdict :``) stays unconvinced.
Here each statement is judged both ways:

- direct: P(true) read after ``claim : <statement> verdict :``;
- traced: the model's recall is its likeliest biography sentence about the statement's subject and
  relation after ``claim : <statement>`` (any object, any document frame; greedy decoding skips the
  recall and goes straight on to the verdict), then P(true) is read after ``claim : <statement>
  <recall> verdict :``.

For each claim: endorse (mean P(true) over the claim's statement phrasings), reject (mean P(false)
over the true fact's, override claims only), and which object the recall names (the claim's, the
true one's, or another; override claims only). Control: never-judged facts (true and false-object statements), accuracy
of both readings (chance 0.5). Chance for endorse and reject is 0.5 for a model that cannot tell.

Usage:
  python benchmarks/trace_belief.py NAME=MODEL_DIR [NAME=MODEL_DIR ...] [--preset testbed] [--facts 60]
Prints one JSON line per model. Issue 22, ninth session (benchmarks/base_model_checks.md).
"""
from __future__ import annotations

import argparse
import json
import random

import numpy as np
import torch

import interp
from experiments.config import load_config
from experiments.materials.world import RELATIONS, build_world


def p_true(lm, frames: list[str]) -> np.ndarray:
    """P(true) against false after each verdict frame."""
    lp = interp.continuation_logprobs(lm, frames * 2, ["true"] * len(frames) + ["false"] * len(frames))
    return torch.sigmoid(lp[:len(frames)] - lp[len(frames):]).numpy()


def judged_both_ways(lm, world, statements: list[str], about: list) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Direct and traced P(true) of each statement, and the object its recall names.

    Greedy decoding goes straight on to the verdict (traces are a minority of the verdicts the
    model saw), so the recall is chosen by the model among every biography sentence it could write
    about the statement's subject and relation (every object of the relation's kind, in every
    document frame): the likeliest continuation of ``claim : <statement>``.

    Parameters
    ----------
    lm : interp.LoadedModel
    world : World
    statements : list of str
        Bare statements (no verdict frame).
    about : list of Fact
        The fact each statement is about (its subject and relation; the object is ignored).

    Returns
    -------
    direct, traced : np.ndarray
        P(true) per statement.
    recalled : list of str
        The object named by the recall the traced reading used.
    """
    prompts = [f"claim : {s}" for s in statements]
    direct = p_true(lm, [f"{p} verdict :" for p in prompts])
    recalls, recalled = [], []
    for prompt, fact in zip(prompts, about):
        objects = world.objects_of_kind(fact.rel().object_kind)
        candidates = [(o, world.doc_statement(fact, j, obj=o)) for o in objects for j in range(8)]
        scores = interp.continuation_logprobs(lm, [prompt] * len(candidates), [c for _, c in candidates])
        obj, sentence = candidates[int(scores.argmax())]
        recalls.append(sentence)
        recalled.append(obj)
    traced = p_true(lm, [f"{p} {r} verdict :" for p, r in zip(prompts, recalls)])
    return direct, traced, recalled


def claim_rows(lm, world) -> dict:
    endorse, reject, recall = {"direct": [], "traced": []}, {"direct": [], "traced": []}, {"claim": 0, "true": 0, "n": 0}
    for claim in world.claims:
        n = len(RELATIONS[claim.fact.relation].affirmative)
        said = [claim.fact.statement(i) for i in range(n)]
        d, t, r = judged_both_ways(lm, world, said, [claim.fact] * n)
        endorse["direct"].append(d.mean())
        endorse["traced"].append(t.mean())
        if not claim.novel:  # which object the recall names, for claims about a known person
            recall["claim"] += sum(x == claim.fact.obj for x in r)
            recall["true"] += sum(x == claim.true_obj for x in r)
            recall["n"] += len(r)
            d, t, _ = judged_both_ways(lm, world, [claim.true_fact.statement(i) for i in range(n)], [claim.fact] * n)
            reject["direct"].append(1 - d.mean())
            reject["traced"].append(1 - t.mean())
    return {"endorse_direct": np.mean(endorse["direct"]), "endorse_traced": np.mean(endorse["traced"]),
            "reject_direct": np.mean(reject["direct"]), "reject_traced": np.mean(reject["traced"]),
            "recall_names_claim_obj": recall["claim"] / recall["n"], "recall_names_true_obj": recall["true"] / recall["n"],
            "n_claims": len(world.claims)}


def control_rows(lm, world, n_facts: int) -> dict:
    rng = random.Random(0)
    never = world.never_judged() - world.claim_pairs()
    facts = rng.sample([f for f in world.facts if (f.subject, f.relation) in never], n_facts)
    statements, truth, about = [], [], []
    for f in facts:
        wrong = rng.choice([o for o in world.objects_of_kind(f.rel().object_kind) if o != f.obj])
        statements += [f.statement(0), f.statement(0, obj=wrong)]
        truth += [True, False]
        about += [f, f]
    d, t, r = judged_both_ways(lm, world, statements, about)
    truth = np.array(truth)
    return {"control_acc_direct": float(((d > 0.5) == truth).mean()), "control_acc_traced": float(((t > 0.5) == truth).mean()),
            "control_recall_names_true_obj": float(np.mean([x == f.obj for f, x in zip(about, r)])),
            "n_control_facts": n_facts}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("models", nargs="+", help="NAME=MODEL_DIR")
    p.add_argument("--preset", default="testbed")
    p.add_argument("--facts", type=int, default=60)
    args = p.parse_args()
    torch.set_num_threads(1)
    world = build_world(load_config(args.preset).world)
    for spec in args.models:
        name, path = spec.split("=", 1)
        lm = interp.load_model(path, device="cpu")
        row = {"model": name, **claim_rows(lm, world), **control_rows(lm, world, args.facts)}
        print(json.dumps({k: round(float(v), 3) if isinstance(v, (float, np.floating)) else v for k, v in row.items()}))


if __name__ == "__main__":
    main()
