"""Does the base model's truth judgement generalise to entities it never saw judged?

    python benchmarks/judge_generalisation.py --preset testbed [--set key=value ...] --out DIR [--base DIR] [--check-base]

Pretrains the preset's base model into DIR (or reads ``--base``), then prints verdict and yes/no
accuracy (and the share of "true"/"yes" answers) on a seeded sample of facts the corpus judges
and of facts it never judges (held-out entities), plus how names without facts are judged. A
model that answers every unjudged question "no" shows up as accuracy 0.5 with a "yes" share near 0:
it treats a name it never saw judged as unknown rather than looking its facts up. ``--check-base``
adds the full base-model preconditions (``check_base``: held-out QA, the statement probe on
held-out entities by layer, in-context reading, claim belief).
"""
from __future__ import annotations

import argparse
import json
import random
import time


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--preset", default="testbed")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--out", required=True)
    p.add_argument("--base")
    p.add_argument("--check-base", action="store_true")
    args = p.parse_args()
    import interp
    from experiments.config import load_config
    from experiments.evaluation.checks import check_base
    from experiments.evaluation.judgement import judgement_accuracy, judgement_profile
    from experiments.materials import load_materials
    from experiments.materials.world import RELATIONS, Fact
    from experiments.pipeline import check_settings, pretrain_stage
    from experiments.training.stages import device_for

    cfg = load_config(args.preset, None, args.set + ['pretrain.shipped="off"'])
    start = time.perf_counter()
    base = args.base or pretrain_stage(cfg, args.out)
    took = time.perf_counter() - start
    world = load_materials(cfg).world
    lm = interp.load_model(base, device=device_for(cfg))
    rng = random.Random(0)
    row = {"set": args.set, "pretrain_s": round(took, 1), **judgement_profile(lm, world)}
    if world.ghosts:  # facts told in context about names without stored facts
        told = [Fact(g, r, rng.choice(world.objects_of_kind(RELATIONS[r].object_kind)))
                for g in world.ghosts for r in ("lives_in", "works_as")]
        row["ghost_told_in_context"] = judgement_accuracy(lm, world, told, rng, told=True)
    if args.check_base:
        start = time.perf_counter()
        checks = check_base(lm, world, *check_settings(cfg))
        row["check_base"] = {k: v for k, v in checks.items() if k != "claim_belief_by_claim"}
        row["check_base_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
