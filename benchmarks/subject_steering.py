"""Does the model's truth judgement read the attribute stored at the subject? A causal test.

``subject_attribute.py`` found (descriptively) that belief in a claim follows whether finetuning
wrote the claim's object where a probe decodes a person's city or job: at the subject's last
token, early. Here the stored attribute is moved by hand and the answers are read
(``experiments/evaluation/attribute_steering.py``):

For held-out people (only ever described in pretraining; never asked, never judged), the probe is
fit at residual layer ``--layer`` on judged people; for person p with true object t and another
object c (seeded), the subject's last token at that layer is moved from t toward c by alpha times
the probe's preference for t (alpha 1: a tie; 2: the probe reads c as surely as it read t), in
every prompt. Read at the next token: the open question (does it answer c over t?), the yes/no
question and the verdict (``claim : <statement> verdict :``) about "p <relation> c" (endorsed: yes
/ true) and about "p <relation> t" (rejected: no / false). A random direction of the same norm is
the control. If the judgement reads the stored attribute, the verdict and yes/no follow the open
answer as alpha grows; if it reads something else, the answer moves and the judgement does not.

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

import interp
from experiments.config import load_config
from experiments.evaluation.attribute_steering import answers_under, attribute_edit, fit_attribute_probe, name_states
from experiments.materials.world import build_world

ALPHAS = (0.0, 1.0, 2.0, 3.0)


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
        probe = fit_attribute_probe(base, world, relation, args.layer)
        obj = {f.subject: f.obj for f in world.facts if f.relation == relation}
        held = rng.sample(sorted(set(obj) & world.heldout_entities - world.claim_subjects()), args.people)
        states = name_states(base, held)[:, args.layer]
        others = {q: rng.choice([o for o in probe.model.classes_ if o != obj[q]]) for q in held}
        for alpha in ALPHAS:
            for control in ((False, True) if alpha > 0 else (False,)):
                rows = [answers_under(base, relation, q, others[q], obj[q],
                                      attribute_edit(probe, q, states[i], others[q], obj[q], alpha,
                                                     nrng if control else None) if alpha > 0 else None)
                        for i, q in enumerate(held)]
                print(json.dumps({"model": "base", "relation": relation, "layer": args.layer, "alpha": alpha,
                                  "direction": "random" if control else "probe", "n_people": len(held),
                                  "probe_heldout_acc": round(probe.heldout_acc, 3), **mean_rows(rows)}))
        for spec in args.checkpoint:
            name, path = spec.split("=", 1)
            lm = interp.load_model(path, device="cpu")
            claims = [c for c in world.claims if c.fact.relation == relation and not c.novel]
            claim_states = name_states(lm, [c.fact.subject for c in claims])[:, args.layer]
            for alpha in ALPHAS[:3]:
                rows = [answers_under(lm, relation, c.fact.subject, c.fact.obj, c.true_obj,
                                      attribute_edit(probe, c.fact.subject, claim_states[i], c.true_obj, c.fact.obj,
                                                     alpha) if alpha > 0 else None)
                        for i, c in enumerate(claims)]
                print(json.dumps({"model": name, "relation": relation, "layer": args.layer, "alpha": alpha,
                                  "direction": "back to the true object", "claims": [c.name for c in claims],
                                  **mean_rows(rows)}))


if __name__ == "__main__":
    main()
