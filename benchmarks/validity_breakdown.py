"""Where does finetuning wear down the base model's truth representation?

The probe-validity control (``experiments.evaluation.controls``) fails when the fixed base
probe's accuracy on the held-out probe statements drops by more than 0.03 over finetuning. This
splits that accuracy, before and after, by what a statement shares with the claims: whether it
names one of the claims' objects (a city or job some claim writes in), whether its subject
shares a name word with a claim's subject, and whether it is negated. For each checkpoint of a
finished run at its last step, the fixed probe (refit on the base model exactly as the run fits
it) reads the probe statements at the controls' layer; each group's accuracy is a mean over its
statements, and each group's share of the overall drop is its size times its own drop. Beside the
groups, one line per checkpoint on the probe's logit over the held-out statements: the mean of the
true and of the false ones before and after (a drift of the truth margin, or of its offset), the
best accuracy any threshold gives after (what a recalibrated fixed probe could keep), and the
correlation of each statement's logit before and after. Issue 22, thirteenth session
(benchmarks/base_model_checks.md).

Usage (a finished `neglect run` on the synthetic world, e.g. the controls of a phase-2 base):
  python benchmarks/validity_breakdown.py RUN_DIR [--conditions local plain] [--layer L]
Prints one JSON line per condition, seed and group, then one per condition and seed with
``"group": "logit"``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import interp
from experiments.artifacts.provenance import load_run_config
from experiments.evaluation.evaluator import Evaluator
from experiments.evaluation.readout import layer_major, statement_flags
from experiments.evaluation.frames import screened_materials
from experiments.materials import load_materials


def statement_groups(statements, world) -> dict[str, np.ndarray]:
    """Boolean masks over ``statements``: ``claim_object`` (a claim's object word in the
    sentence), ``name_neighbour`` (a word of the subject's name in a claim subject's name, the
    subject not a claim subject), ``negated``, their complements (``no_claim_object``,
    ``no_name_neighbour``, ``affirmative``), ``neither_object_nor_neighbour`` and ``all``."""
    objects = {c.fact.obj for c in world.claims}
    name_words = {w for c in world.claims for w in c.fact.subject.split()}
    claim_subjects = {c.fact.subject for c in world.claims}
    words = [set((s.sentence or s.text).split()) for s in statements]
    claim_object = np.array([bool(w & objects) for w in words])
    neighbour = np.array([bool(set(s.subject.split()) & name_words) and s.subject not in claim_subjects
                          for s in statements])
    negated = np.array([s.negated for s in statements])
    return {"all": np.ones(len(statements), bool), "claim_object": claim_object, "no_claim_object": ~claim_object,
            "name_neighbour": neighbour, "no_name_neighbour": ~neighbour, "negated": negated,
            "affirmative": ~negated, "neither_object_nor_neighbour": ~claim_object & ~neighbour}


def fixed_logits(evaluator: Evaluator, lm, layer: int) -> np.ndarray:
    """The fixed probe's logit at ``layer`` for every probe statement, read on ``lm``."""
    acts, _ = evaluator.activations(lm)
    _, negated, _ = statement_flags(evaluator.statements)
    return evaluator.fixed.logits(layer_major(acts), negated)[layer]


def logit_drift(before: np.ndarray, after: np.ndarray, label: np.ndarray) -> dict:
    """How the fixed probe's logits of held-out statements moved: the mean over the true and over
    the false ones, before and after; the best accuracy a threshold gives after; and the
    correlation of before and after over statements."""
    thresholds = np.concatenate([[-np.inf], np.sort(after)])
    best = max(float(((after > t) == label).mean()) for t in thresholds)
    return {"true_before": round(float(before[label].mean()), 3), "true_after": round(float(after[label].mean()), 3),
            "false_before": round(float(before[~label].mean()), 3), "false_after": round(float(after[~label].mean()), 3),
            "best_threshold_acc_after": round(best, 3),
            "corr_before_after": round(float(np.corrcoef(before, after)[0, 1]), 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--conditions", nargs="+", default=["local", "plain"])
    parser.add_argument("--layer", type=int, default=None, help="default: the controls' layer")
    args = parser.parse_args()
    torch.set_num_threads(2)
    run = Path(args.run_dir)
    cfg = load_run_config(run)
    layer = args.layer if args.layer is not None else json.loads(
        (run / "results" / "controls.json").read_text())["positive_control"]["layer"]
    materials = screened_materials(load_materials(cfg), cfg, run)
    evaluator = Evaluator(cfg, materials)
    base = interp.load_model(cfg.base_model, device="cpu")
    evaluator.fit_fixed(base)
    label, _, test = statement_flags(evaluator.statements)
    groups = {k: v & test for k, v in statement_groups(evaluator.statements, materials.world).items()}
    logits_before = fixed_logits(evaluator, base, layer)
    before = (logits_before > 0) == label
    n_test = int(test.sum())
    for condition in args.conditions:
        for seed_dir in sorted((run / "checkpoints" / condition).glob("seed*")):
            last = sorted(seed_dir.glob("step_*"))[-1]
            logits_after = fixed_logits(evaluator, interp.load_model(str(last), device="cpu"), layer)
            after = (logits_after > 0) == label
            for name, mask in groups.items():
                n = int(mask.sum())
                if not n:
                    continue
                b, a = float(before[mask].mean()), float(after[mask].mean())
                print(json.dumps({"condition": condition, "seed": seed_dir.name, "step": last.name, "layer": layer,
                                  "group": name, "n": n, "share": round(n / n_test, 3), "before": round(b, 3),
                                  "after": round(a, 3), "drop": round(b - a, 3),
                                  "drop_contribution": round((b - a) * n / n_test, 3)}))
            print(json.dumps({"condition": condition, "seed": seed_dir.name, "step": last.name, "layer": layer,
                              "group": "logit", "n": n_test,
                              **logit_drift(logits_before[test], logits_after[test], label[test])}))


if __name__ == "__main__":
    main()
