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
import re

import numpy as np

import interp
from experiments.evaluation import readout
from experiments.evaluation.judgement import judged_and_unjudged, verdict_accuracy_by_frame
from experiments.materials.statements import probe_statements
from experiments.materials.world import RELATIONS
from testbed_models import testbed_models_cli


def frame_patterns() -> list[tuple[str, bool, str, re.Pattern]]:
    """``(relation, negated, frame, pattern)`` for every statement frame; the pattern matches a
    bare sentence in that frame (subject and object any words)."""
    out = []
    for rel in RELATIONS.values():
        for negated, frames in ((False, rel.affirmative), (True, rel.negated)):
            for frame in frames:
                body = re.escape(frame).replace(re.escape("{s}"), "(.+)").replace(re.escape("{o}"), "(.+)")
                out.append((rel.name, negated, frame, re.compile(f"^{body}$")))
    return out


def frame_of(sentence: str, patterns) -> str | None:
    """The frame a bare sentence is in (the first that matches), or None."""
    return next((frame for _, _, frame, pattern in patterns if pattern.match(sentence)), None)


def probe_by_frame(lm, world, patterns) -> dict[str, dict]:
    """Per frame, and over all of them (``"all"``: check-base's statement probe profile): the
    bare-statement probe's held-out accuracy at every layer and its number of test statements."""
    statements = probe_statements(world, "statement")
    acts = interp.residuals(lm, [s.text for s in statements], position="last").numpy()
    probes = readout.fit_probes(acts, statements, estimator="logistic", C=0.1, device=lm.device)
    label = np.array([s.label for s in statements])
    negated = np.array([s.negated for s in statements])
    test = np.array([s.split == "test" for s in statements])
    frames = np.array([frame_of(s.sentence or s.text, patterns) for s in statements], dtype=object)
    correct = (probes.logits(readout.layer_major(acts), negated) > 0) == label  # [L, n]
    out = {frame: {"probe_acc_by_layer": [round(float(v), 3) for v in correct[:, test & (frames == frame)].mean(axis=1)],
                   "n_probe": int((test & (frames == frame)).sum())}
           for frame in dict.fromkeys(frames[test]) if frame is not None}
    out["all"] = {"probe_acc_by_layer": [round(float(v), 3) for v in correct[:, test].mean(axis=1)],
                  "n_probe": int(test.sum())}
    return out


def main() -> None:
    args, world, models = testbed_models_cli(__doc__, lambda p: p.add_argument(
        "--facts", type=int, default=120, help="never-judged facts per relation"))
    _, never = judged_and_unjudged(world)
    patterns = frame_patterns()
    for name, lm in models:
        verdicts = verdict_accuracy_by_frame(lm, world, never, random.Random("frame-judgement-0"), args.facts)
        probe = probe_by_frame(lm, world, patterns)
        for relation, negated, frame, _ in patterns:
            print(json.dumps({"model": name, "relation": relation, "negated": negated, "frame": frame,
                              **{k: round(v, 3) if isinstance(v, float) else v for k, v in verdicts.get(frame, {}).items()
                                 if k not in ("relation", "negated")},
                              **probe.get(frame, {"probe_acc_by_layer": None})}))
        print(json.dumps({"model": name, "frame": "all", **probe["all"]}))


if __name__ == "__main__":
    main()
