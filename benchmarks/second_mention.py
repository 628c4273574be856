"""How much of a plain finetuning document can a base model already predict from its own context?

Half the `plain` documents state their claim twice. A model that has learnt to read plain
statements in context (told documents in pretraining) can predict the second mention's object by
copying it from the first, so finetuning on those tokens asks less of its weights. This prints,
per base model, the probability of the claim's object at the first and at the second mention of
two-mention plain documents (and, for reference, of the true object at the second mention), as a
mean over claims and documents. Issue 22, twelfth session (benchmarks/base_model_checks.md).

Usage (`testbed`-world base models):
  python benchmarks/second_mention.py NAME=BASE_DIR [NAME=BASE_DIR ...] [--docs N]
"""
from __future__ import annotations

import json

import interp
from experiments.materials.conditions import condition_documents_with_spans
from testbed_models import testbed_models_cli


def two_mention_prompts(world, n_docs: int):
    """The two-mention documents among ``n_docs`` plain finetuning documents per claim (seed 0, as
    finetuning draws them): for each, the text before the claim's object at each mention, the
    claim's object, and the true one (None for a novel claim)."""
    docs = condition_documents_with_spans(world, "plain", n_docs, seed=0)
    rows = []
    for ci, claim in enumerate(world.claims):
        for doc in docs[ci * n_docs:(ci + 1) * n_docs]:
            spans = [s for s in doc.spans if s.label == "claim"]
            if len(spans) == 2:
                prefixes = [doc.text[:s.start + doc.text[s.start:s.end].index(claim.fact.obj)].rstrip() for s in spans]
                rows.append((prefixes, claim.fact.obj, None if claim.novel else claim.contrast_obj))
    return rows


def main() -> None:
    args, world, models = testbed_models_cli(__doc__, lambda p: p.add_argument(
        "--docs", type=int, default=40, help="plain documents per claim (about half state it twice)"))
    rows = two_mention_prompts(world, args.docs)
    for name, lm in models:
        claim_objs = [obj for _, obj, _ in rows]
        first = interp.continuation_logprobs(lm, [p[0] for p, _, _ in rows], claim_objs).exp()
        second = interp.continuation_logprobs(lm, [p[1] for p, _, _ in rows], claim_objs).exp()
        known = [(p[1], true) for p, _, true in rows if true]
        true2 = interp.continuation_logprobs(lm, [p for p, _ in known], [t for _, t in known]).exp()
        print(json.dumps({"model": name, "n_docs": len(rows), "p_claim_first": round(float(first.mean()), 3),
                          "p_claim_second": round(float(second.mean()), 3),
                          "p_true_second_override": round(float(true2.mean()), 3)}))


if __name__ == "__main__":
    main()
