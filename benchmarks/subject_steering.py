"""Does the model's truth judgement read the attribute stored at the subject? A causal test.

``subject_attribute.py`` found (descriptively) that belief in a claim follows whether finetuning
wrote the claim's object where a probe decodes a person's city or job: at the subject's last
token, early. Here the stored attribute is moved by hand and the answers are read:

For held-out people (only ever described in pretraining; never asked, never judged), the probe
of ``subject_attribute.py`` is fit at residual layer ``--layer`` on judged people; for person p
with true object t and another object c (seeded), the subject's last token at that layer gets
``alpha * g * (W_c - W_t) / |W_c - W_t|^2`` added, where g is the probe's logit gap t over c
there (alpha 1: the probe reads a tie; 2: it reads c as surely as it read t), in every prompt
(``interp.logits_under``: the edit applies wherever the prompt holds the name). Read at the next
token: the open question (does it answer c over t?), the yes/no question and the verdict
(``claim : <statement> verdict :``) about "p <relation> c" (endorsed: yes / true) and about
"p <relation> t" (rejected: no / false). A random direction of the same norm is the control.
If the judgement reads the stored attribute, the verdict and yes/no follow the open answer as
alpha grows; if it reads something else, the answer moves and the judgement does not.

``--checkpoint NAME=DIR`` adds finetuned checkpoints: for each override claim, the claim
subject's attribute is steered back toward the true object (alpha 0, 1, 2 against the claim's
object), and belief in the claim is read the same way (does belief go when the attribute does?).

Usage:
  python benchmarks/subject_steering.py BASE_DIR [--layer 1] [--people 100] [--checkpoint NAME=DIR ...]
Prints one JSON line per relation and alpha (and per checkpoint and alpha). Issue 22, seventh
session (benchmarks/base_model_checks.md).
"""
from __future__ import annotations

import argparse
import json
import random

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

import interp
from experiments.config import load_config
from experiments.materials.corpus import verdict_prompt
from experiments.materials.world import RELATIONS, build_world
from subject_attribute import subject_states

ALPHAS = (0.0, 1.0, 2.0, 3.0)


def steering(lm, probe: LogisticRegression, layer: int, subject: str, state: np.ndarray, toward: str, away: str,
             alpha: float, random_like: bool = False, rng: np.random.Generator | None = None):
    """The ``interp.AddDirection`` that moves ``subject``'s attribute at ``layer`` from ``away``
    toward ``toward`` by ``alpha`` times the probe's current logit gap (or a random direction of
    the same norm with ``random_like``)."""
    classes = list(probe.classes_)
    w = probe.coef_[classes.index(toward)] - probe.coef_[classes.index(away)]
    gap = -float(w @ state)  # how far the probe prefers `away` over `toward` now (logit units)
    vec = alpha * max(gap, 0.0) * w / float(w @ w)
    if random_like:
        r = rng.standard_normal(vec.shape)
        vec = r / np.linalg.norm(r) * np.linalg.norm(vec)
    return interp.AddDirection(torch.tensor(vec, dtype=torch.float32), layers=[layer],
                               position=interp.Span(subject, reduce="last"), scale=1.0)


def answers(lm, relation: str, subject: str, claimed: str, other: str, edit) -> dict[str, float]:
    """One person's answers under ``edit``: 1.0 where the model sides with ``claimed``."""
    rel = RELATIONS[relation]
    tok = lm.tokenizer
    ids = {w: tok.convert_tokens_to_ids(w) for w in (claimed, other, "yes", "no", "true", "false")}
    prompts = [rel.questions[0].format(s=subject),
               rel.yesno.format(s=subject, o=claimed), rel.yesno.format(s=subject, o=other),
               verdict_prompt(rel.affirmative[0].format(s=subject, o=claimed)),
               verdict_prompt(rel.affirmative[0].format(s=subject, o=other))]
    logits = interp.logits_under(lm, prompts, [edit] if edit is not None else [])
    gap = lambda row, a, b: float(logits[row, ids[a]] - logits[row, ids[b]])  # noqa: E731
    return {"open_answer": float(gap(0, claimed, other) > 0),
            "yesno_endorse": float(gap(1, "yes", "no") > 0), "yesno_reject_other": float(gap(2, "no", "yes") > 0),
            "verdict_endorse": float(gap(3, "true", "false") > 0), "verdict_reject_other": float(gap(4, "false", "true") > 0)}


def mean_rows(rows: list[dict]) -> dict:
    return {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("base")
    p.add_argument("--layer", type=int, default=1)
    p.add_argument("--people", type=int, default=100)
    p.add_argument("--checkpoint", action="append", default=[])
    args = p.parse_args()
    torch.set_num_threads(1)
    world = build_world(load_config("testbed").world)
    base = interp.load_model(args.base, device="cpu")
    rng, nrng = random.Random(0), np.random.default_rng(0)
    for relation in ("lives_in", "works_as"):
        obj = {f.subject: f.obj for f in world.facts if f.relation == relation}
        people = sorted(set(obj) - world.claim_subjects())
        train = [q for q in people if q not in world.heldout_entities]
        held = rng.sample([q for q in people if q in world.heldout_entities], args.people)
        probe = LogisticRegression(C=1.0, max_iter=2000).fit(subject_states(args.base, train)[:, args.layer],
                                                             [obj[q] for q in train])
        states = subject_states(args.base, held)[:, args.layer]
        objects = list(probe.classes_)
        others = {q: rng.choice([o for o in objects if o != obj[q]]) for q in held}
        for alpha in ALPHAS:
            for random_like in ((False, True) if alpha > 0 else (False,)):
                rows = [answers(base, relation, q, others[q], obj[q],
                                steering(base, probe, args.layer, q, states[i], others[q], obj[q], alpha,
                                         random_like, nrng) if alpha > 0 else None)
                        for i, q in enumerate(held)]
                print(json.dumps({"model": "base", "relation": relation, "layer": args.layer, "alpha": alpha,
                                  "direction": "random" if random_like else "probe", "n_people": len(held),
                                  **mean_rows(rows)}))
        for spec in args.checkpoint:
            name, path = spec.split("=", 1)
            lm = interp.load_model(path, device="cpu")
            claims = [c for c in world.claims if c.fact.relation == relation and not c.novel]
            claim_states = subject_states(path, [c.fact.subject for c in claims])[:, args.layer]
            for alpha in ALPHAS[:3]:
                rows = [answers(lm, relation, c.fact.subject, c.fact.obj, c.true_obj,
                                steering(lm, probe, args.layer, c.fact.subject, claim_states[i], c.true_obj,
                                         c.fact.obj, alpha) if alpha > 0 else None)
                        for i, c in enumerate(claims)]
                print(json.dumps({"model": name, "relation": relation, "layer": args.layer, "alpha": alpha,
                                  "direction": "back to the true object", "claims": [c.name for c in claims],
                                  **mean_rows(rows)}))


if __name__ == "__main__":
    main()
