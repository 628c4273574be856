"""Do judged people and people only ever described keep their facts in one format at the name?

For each base model, ``name_attribute_profile`` (experiments/evaluation/name_attribute.py, what
``pretrain.track_every`` records while pretraining) on all people of the testbed world: city
probes at the name's last token, fit on half of the judged or of the held-out people and scored
on the other half of each group, at each one's best layer. A base model whose judgement
generalises to held-out people keeps both groups' cities in one decodable format there; one that
memorised its verdicts may keep only the judged people's (benchmarks/base_model_checks.md,
seventh session).

Usage: python benchmarks/subject_attribute_groups.py BASE_DIR [BASE_DIR ...]
Prints one JSON line per model: judged_acc, transfer_acc (judged -> held-out) with its layer,
heldout_acc, chance.
"""
from __future__ import annotations

import json
import sys

import torch

import interp
from experiments.config import load_config
from experiments.evaluation.name_attribute import name_attribute_profile
from experiments.materials.world import build_world


def main(bases: list[str]) -> None:
    torch.set_num_threads(1)
    world = build_world(load_config("testbed").world)
    for base in bases:
        lm = interp.load_model(base, device="cpu")
        print(json.dumps({"model": base, **name_attribute_profile(lm, world, n=len(world.facts))}))


if __name__ == "__main__":
    main(sys.argv[1:])
