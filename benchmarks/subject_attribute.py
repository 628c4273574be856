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

import torch

import interp
from experiments.config import load_config
from experiments.evaluation.attribute_steering import fit_attribute_probe, name_states
from experiments.materials.world import build_world


def main(base_dir: str, finetuned: dict[str, str]) -> None:
    torch.set_num_threads(1)
    world = build_world(load_config("testbed").world)
    base = interp.load_model(base_dir, device="cpu")
    claims = [c for c in world.claims if c.fact.relation in ("lives_in", "works_as")]
    subjects = [c.fact.subject for c in claims]
    read = {"base": name_states(base, subjects)}
    read |= {name: name_states(interp.load_model(path, device="cpu"), subjects) for name, path in finetuned.items()}
    for relation in ("lives_in", "works_as"):
        mine = [i for i, c in enumerate(claims) if c.fact.relation == relation]
        for layer in range(base.n_layers + 1):
            probe = fit_attribute_probe(base, world, relation, layer)
            row = {"relation": relation, "layer": layer, "heldout_acc": round(probe.heldout_acc, 3)}
            for name, states in read.items():
                p = probe.proba(states[mine, layer])
                row[name] = {claims[i].name: {
                    "p_true": round(float(p[claims[i].true_obj][k]), 3) if claims[i].true_obj else None,
                    "p_claim": round(float(p[claims[i].fact.obj][k]), 3)} for k, i in enumerate(mine)}
            print(json.dumps(row))


if __name__ == "__main__":
    main(sys.argv[1], dict(arg.split("=", 1) for arg in sys.argv[2:]))
