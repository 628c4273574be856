"""Do judged people and people only ever described keep their facts in one format at the name?

For each base model: city probes at the name's last token (``subject_states`` of
``subject_attribute.py``), fit on half of the judged people or half of the held-out people and
scored on the other half of each group, layer by layer. A base model whose judgement generalises
to held-out people keeps both groups' cities in one decodable format there; one that memorised
its verdicts may keep only the judged people's (benchmarks/base_model_checks.md, seventh session).

Usage: python benchmarks/subject_attribute_groups.py BASE_DIR [BASE_DIR ...]
Prints, per model, (layer, judged->judged, judged->held-out, held-out->held-out,
held-out->judged) accuracies; chance 1/20.
"""
from __future__ import annotations

import sys

import torch
from sklearn.linear_model import LogisticRegression

from experiments.config import load_config
from experiments.materials.world import build_world
from subject_attribute import subject_states


def main(bases: list[str]) -> None:
    torch.set_num_threads(1)
    world = build_world(load_config("testbed").world)
    city = {f.subject: f.obj for f in world.facts if f.relation == "lives_in"}
    people = sorted(set(city) - world.claim_subjects())
    judged = [p for p in people if p not in world.heldout_entities]
    held = [p for p in people if p in world.heldout_entities]
    for base in bases:
        xj, xh = subject_states(base, judged), subject_states(base, held)
        hj, hh = len(judged) // 2, len(held) // 2
        rows = []
        for layer in range(xj.shape[1]):
            on_judged = LogisticRegression(max_iter=2000).fit(xj[:hj, layer], [city[p] for p in judged[:hj]])
            on_held = LogisticRegression(max_iter=2000).fit(xh[:hh, layer], [city[p] for p in held[:hh]])
            score = lambda probe, x, group: round(float(probe.score(x, [city[p] for p in group])), 2)  # noqa: E731
            rows.append((layer, score(on_judged, xj[hj:, layer], judged[hj:]), score(on_judged, xh[hh:, layer], held[hh:]),
                         score(on_held, xh[hh:, layer], held[hh:]), score(on_held, xj[hj:, layer], judged[hj:])))
        print(base, "(layer, judged->judged, judged->held, held->held, held->judged)", rows)


if __name__ == "__main__":
    main(sys.argv[1:])
