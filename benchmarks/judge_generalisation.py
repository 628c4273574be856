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

import numpy as np


def accuracy(lm, world, facts, rng, n: int = 150, told: bool = False) -> dict:
    """Verdict, yes/no and tagged-statement accuracy (and the share of "true"/"yes") on ``n`` of
    ``facts``, and the statement frames' cloze accuracy (the object after "<subject> lives in");
    ``told``: each prompt follows a document sentence stating the fact (the answer is in the context)."""
    from experiments.evaluation.scoring import option_logprobs
    from experiments.materials.corpus import verdict_prompt
    from experiments.materials.statements import statement_variants

    verdicts, yesno = [], []
    sampled = rng.sample(facts, min(n, len(facts)))
    prefixes = {f: world.doc_statement(f, rng.randrange(8)) + " " if told else "" for f in sampled}
    prefix_of = prefixes.__getitem__
    for f in sampled:
        wrong = world.wrong_object(f, rng)
        prefix = prefix_of(f)
        verdicts += [(prefix + verdict_prompt(s), t) for s, t, _ in statement_variants(f, wrong, [rng.randrange(8)] * 4)]
        yesno += [(prefix + f.rel().yesno.format(s=f.subject, o=f.obj), True),
                  (prefix + f.rel().yesno.format(s=f.subject, o=wrong), False)]
    cloze, tagged = [], []  # the object after a statement frame's prefix; the truth word after a whole statement
    for f in sampled:
        objects = world.objects_of_kind(f.rel().object_kind)
        for frame in f.rel().affirmative:
            if frame.endswith("{o} .") and f.relation != "won_by":
                cloze.append((prefix_of(f) + frame[: -len("{o} .")].format(s=f.subject).strip(), objects, f.obj))
        wrong = world.wrong_object(f, rng)
        tagged += [(prefix_of(f) + s, t) for s, t, _ in statement_variants(f, wrong, [rng.randrange(8)] * 4)]
    out = {}
    if cloze:
        scores = option_logprobs(lm, [p for p, _, _ in cloze], [o for _, o, _ in cloze])
        out["statement_cloze_acc"] = round(float(np.mean([o[int(sc.argmax())] == t for sc, (_, o, t) in zip(scores, cloze)])), 3)
    for name, items, options in (("verdict", verdicts, ("true", "false")), ("yesno", yesno, ("yes", "no")),
                                 ("tagged", tagged, ("true", "false"))):
        scores = option_logprobs(lm, [p for p, _ in items], [options] * len(items))
        first = np.array([int(s.argmax()) == 0 for s in scores])
        truth = np.array([t for _, t in items])
        out[f"{name}_acc"] = round(float((first == truth).mean()), 3)
        out[f"{name}_first_share"] = round(float(first.mean()), 3)
    return out


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
    from experiments.materials.world import RELATIONS
    from experiments.pipeline import pretrain_stage
    from experiments.training.stages import device_for

    cfg = load_config(args.preset, None, args.set + ['pretrain.shipped="off"'])
    start = time.perf_counter()
    base = args.base or pretrain_stage(cfg, args.out)
    took = time.perf_counter() - start
    from experiments.materials import load_materials

    world = load_materials(cfg).world
    lm = interp.load_model(base, device=device_for(cfg))
    rng = random.Random(0)
    never = world.never_judged()
    judged = [f for f in world.facts if (f.subject, f.relation) not in never]
    held = [f for f in world.facts if (f.subject, f.relation) in world.judge_heldout]
    row = {"set": args.set, "pretrain_s": round(took, 1), "judged": accuracy(lm, world, judged, rng),
           "never_judged": accuracy(lm, world, held, rng)}
    if world.ghosts:  # facts told in context about names without stored facts
        from experiments.materials.world import Fact

        told = [Fact(g, r, rng.choice(world.objects_of_kind(RELATIONS[r].object_kind)))
                for g in world.ghosts for r in ("lives_in", "works_as")]
        row["ghost_told_in_context"] = accuracy(lm, world, told, rng, told=True)
    if args.check_base:
        from experiments.evaluation.checks import check_base
        from experiments.pipeline import check_settings

        start = time.perf_counter()
        checks = check_base(lm, world, *check_settings(cfg))
        row["check_base"] = {k: v for k, v in checks.items() if k != "claim_belief_by_claim"}
        row["check_base_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
