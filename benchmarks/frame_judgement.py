"""Which statement frames can a base model judge, and where does its truth probe read them?

`neglect check-base` reports one verdict accuracy on facts never judged in pretraining and one
bare-statement probe accuracy, each a mean over every statement frame. This splits both by frame:
for each relation and each of its statement frames (affirmative and negated), the verdict accuracy
on never-judged facts stated with their true object and with a wrong one (chance 0.5 each; a model
that always says "false" scores 0 and 1; `experiments.evaluation.judgement.verdict_accuracy_by_frame`,
which check-base reports too), and the bare-statement truth probe's held-out accuracy
per layer on that frame's probe statements (the probe fit as check-base fits it, on every frame
of the training subjects; chance 0.5). Issue 22, thirteenth session
(benchmarks/base_model_checks.md).

Usage (`testbed`-world base models):
  python benchmarks/frame_judgement.py NAME=BASE_DIR [NAME=BASE_DIR ...] [--facts N]
Prints one JSON line per model, relation and frame, then the probe over all frames.
"""
from __future__ import annotations

import json
import random

from experiments.evaluation.checks import probe_accuracy_by_frame, probe_profile
from experiments.evaluation.judgement import judged_and_unjudged, verdict_accuracy_by_frame
from experiments.materials.world import RELATIONS
from testbed_models import testbed_models_cli


def all_frames() -> list[tuple[str, bool, str]]:
    """``(relation, negated, frame)`` for every statement frame of every relation."""
    return [(rel.name, negated, frame) for rel in RELATIONS.values()
            for negated, frames in ((False, rel.affirmative), (True, rel.negated)) for frame in frames]


def probe_by_frame(lm, world) -> dict[str, dict]:
    """Per frame, and over all of them (``"all"``: check-base's statement probe profile): the
    bare-statement probe's held-out accuracy at every layer and its number of test statements."""
    correct, tested = probe_profile(lm, world)  # [L, n_test]
    by_layer = [probe_accuracy_by_frame(layer, tested) for layer in correct]
    out = {frame: {"probe_acc_by_layer": [round(layer[frame]["acc"], 3) for layer in by_layer], "n_probe": f["n"]}
           for frame, f in by_layer[0].items()}
    out["all"] = {"probe_acc_by_layer": [round(float(v), 3) for v in correct.mean(axis=1)], "n_probe": len(tested)}
    return out


def main() -> None:
    args, world, models = testbed_models_cli(__doc__, lambda p: p.add_argument(
        "--facts", type=int, default=120, help="never-judged facts per relation"))
    _, never = judged_and_unjudged(world)
    for name, lm in models:
        verdicts = verdict_accuracy_by_frame(lm, world, never, random.Random("frame-judgement-0"), args.facts)
        probe = probe_by_frame(lm, world)
        for relation, negated, frame in all_frames():
            print(json.dumps({"model": name, "relation": relation, "negated": negated, "frame": frame,
                              **{k: round(v, 3) if isinstance(v, float) else v for k, v in verdicts.get(frame, {}).items()
                                 if k not in ("relation", "negated")},
                              **probe.get(frame, {"probe_acc_by_layer": None})}))
        print(json.dumps({"model": name, "frame": "all", **probe["all"]}))


if __name__ == "__main__":
    main()
