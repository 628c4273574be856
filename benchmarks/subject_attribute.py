"""Where does a finetuned fact live? Decode each person's city and job from the residual stream
at the subject's last token (``interp.residuals`` of the name alone: in a causal model the state
there is the same in any sentence that starts with it), layer by layer, with one probe per
relation fit on the base model's judged people and scored on held-out people, then read the
claims' subjects in the base model and in finetuned checkpoints: the probability the probe gives
the true object and the claim's object.

Usage (a `testbed`-world base model and checkpoints finetuned from it):
  python benchmarks/subject_attribute.py BASE_DIR NAME=CHECKPOINT_DIR [NAME=CHECKPOINT_DIR ...]
Prints one JSON line per relation and layer: held-out decoding accuracy (chance 1/20 for cities,
1/12 for jobs), and per model and claim P(true object) / P(claim's object). Issue 22, sixth
session (benchmarks/base_model_checks.md).
"""
from __future__ import annotations

import json
import sys

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

import interp
from experiments.config import load_config
from experiments.evaluation.attribute_steering import name_states
from experiments.materials.world import build_world


def subject_states(model_dir: str, subjects: list[str]) -> np.ndarray:
    """Residuals (subjects, layers + 1, d_model) at each subject's last token, the subject alone as
    input (``attribute_steering.name_states``), of the model in ``model_dir``."""
    return name_states(interp.load_model(model_dir, device="cpu"), subjects)


def main(base_dir: str, finetuned: dict[str, str]) -> None:
    torch.set_num_threads(1)
    world = build_world(load_config("testbed").world)
    people = sorted({f.subject for f in world.facts if f.relation == "lives_in"} - world.claim_subjects())
    train = [p for p in people if p not in world.heldout_entities]
    held = [p for p in people if p in world.heldout_entities]
    x_train, x_held = subject_states(base_dir, train), subject_states(base_dir, held)
    claims = [c for c in world.claims if c.fact.relation in ("lives_in", "works_as")]
    subjects = [c.fact.subject for c in claims]
    read = {"base": subject_states(base_dir, subjects)}
    read |= {name: subject_states(path, subjects) for name, path in finetuned.items()}
    for relation in ("lives_in", "works_as"):
        obj = {f.subject: f.obj for f in world.facts if f.relation == relation}
        mine = [i for i, c in enumerate(claims) if c.fact.relation == relation]
        for layer in range(x_train.shape[1]):
            probe = LogisticRegression(C=1.0, max_iter=2000).fit(x_train[:, layer], [obj[p] for p in train])
            classes = list(probe.classes_)
            row = {"relation": relation, "layer": layer,
                   "heldout_acc": round(float(probe.score(x_held[:, layer], [obj[p] for p in held])), 3)}
            for name, states in read.items():
                p = probe.predict_proba(states[mine, layer])
                row[name] = {claims[i].name: {
                    "p_true": round(float(p[k, classes.index(claims[i].true_obj)]), 3) if claims[i].true_obj else None,
                    "p_claim": round(float(p[k, classes.index(claims[i].fact.obj)]), 3)} for k, i in enumerate(mine)}
            print(json.dumps(row))

if __name__ == "__main__":
    main(sys.argv[1], dict(arg.split("=", 1) for arg in sys.argv[2:]))
