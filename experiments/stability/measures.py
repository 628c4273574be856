"""What the stability protocol measures at a checkpoint, and along a weight-space path.

At every checkpoint: the pipeline ``Evaluator``'s rows (belief of every kind, held-out QA,
per-layer probe accuracy on the control statements and claim readings, fixed and refit)
plus the loss on negated documents that no run trained on: over all tokens, on the claim
spans and on the warning spans (``loss_rows``). Matching held-out loss between an anchored
and the unanchored run is what makes "same fit, different belief" a fair comparison.
"""
from __future__ import annotations

import random

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from experiments.evaluation import belief, readout
from experiments.materials.conditions import LabelledDocument, condition_documents_with_spans
from experiments.errors import UserError
from experiments.evaluation.scoring import right_pad
from experiments.materials.world import World

HELDOUT_SEED = 990_001  # document seed of the held-out negated documents (training seeds are small ints)
LOSS_METRICS = ("heldout_loss", "heldout_loss_claim", "heldout_loss_warning")


def heldout_documents(world: World, n_per_claim: int, exclude: set[str]) -> list[LabelledDocument]:
    """Negated documents with spans, none of whose texts is in ``exclude`` (the training docs)."""
    pool = condition_documents_with_spans(world, "negated", 4 * n_per_claim, seed=HELDOUT_SEED)
    per_claim = len(pool) // len(world.claims)
    out = []
    for c in range(len(world.claims)):
        fresh = [d for d in pool[c * per_claim:(c + 1) * per_claim] if d.text not in exclude]
        out += list(dict.fromkeys(fresh))[:n_per_claim]
    if not out:
        raise UserError("no held-out negated documents: every generated one is also a training document")
    random.Random(0).shuffle(out)
    return out


@torch.no_grad()
def span_losses(lm, docs: list[LabelledDocument], labels: tuple[str, ...] = ("claim", "warning"),
                batch_size: int = 32) -> dict[str, float]:
    """Mean next-token cross-entropy over every predicted token of ``docs`` (``heldout_loss``)
    and over the tokens overlapping spans of each label (``heldout_loss_<label>``)."""
    tok = lm.tokenizer
    if not getattr(tok, "is_fast", False):
        raise UserError("span losses need a fast tokenizer (character offsets)")
    limit = getattr(lm.model.config, "max_position_embeddings", None) or 10**9
    enc = tok([d.text for d in docs], return_offsets_mapping=True)
    sums = {"": 0.0, **{lab: 0.0 for lab in labels}}
    counts = dict.fromkeys(sums, 0)
    for start in range(0, len(docs), batch_size):
        rows = [ids[:limit] for ids in enc["input_ids"][start:start + batch_size]]
        ids, mask = right_pad(rows, tok.pad_token_id)
        logits = lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device)).logits.float()
        ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:].to(lm.device), reduction="none").cpu()
        for r, x in enumerate(rows):
            doc, offsets = docs[start + r], enc["offset_mapping"][start + r][: len(x)]
            token_ce = ce[r, : len(x) - 1].numpy()  # target token t = 1..len-1
            sums[""] += float(token_ce.sum())
            counts[""] += len(token_ce)
            for lab in labels:
                inside = ~np.array(doc.keep_mask(offsets, exclude=(lab,)))[1:]
                sums[lab] += float(token_ce[inside].sum())
                counts[lab] += int(inside.sum())
    return {("heldout_loss" + (f"_{k}" if k else "")): (sums[k] / counts[k] if counts[k] else float("nan"))
            for k in sums}


def loss_rows(lm, docs: list[LabelledDocument]) -> pd.DataFrame:
    return pd.DataFrame([{"metric": k, "value": v} for k, v in span_losses(lm, docs).items()])


def belief_rows(lm, world: World) -> list[dict]:
    return [{"claim": c.name, "metric": m, "value": v} for c in world.claims for m, v in belief.claim_belief(lm, c).items()]


def fixed_reading_rows(lm, evaluator) -> list[dict]:
    """The fixed (base-model) probe's P(true) of each claim and true fact, at every layer."""
    import interp

    stmts = evaluator.claim_stmts
    acts = interp.residuals(lm, [c.text for c in stmts], position=evaluator.cfg.eval.position,
                            batch_size=evaluator.cfg.eval.batch_size).numpy()
    return readout.claim_rows(acts, stmts, evaluator.fixed, "fixed")


def interpolate_states(a: dict, b: dict, alpha: float) -> dict:
    """``(1 - alpha) * a + alpha * b`` for every floating tensor (others are taken from ``a``);
    exact at both ends."""
    if a.keys() != b.keys():
        raise UserError("the two models to interpolate have different parameters")
    out = {}
    for k, va in a.items():
        vb = b[k]
        if va.shape != vb.shape:
            raise UserError(f"parameter {k!r} has shape {tuple(va.shape)} in one model and {tuple(vb.shape)} in the other")
        out[k] = va if alpha == 0 or not va.is_floating_point() else (vb if alpha == 1 else torch.lerp(va, vb, alpha))
    return out


def interpolation_rows(path_a, path_b, alphas, evaluator, docs: list[LabelledDocument], device) -> pd.DataFrame:
    """Belief, held-out losses and fixed-probe readings along the straight line from the model
    at ``path_a`` (alpha 0) to the one at ``path_b`` (alpha 1)."""
    import interp

    lm = interp.load_model(path_a, device=device)
    a = {k: v.detach().clone() for k, v in lm.model.state_dict().items()}
    b = interp.load_model(path_b, device=device).model.state_dict()
    frames = []
    for alpha in alphas:
        lm.model.load_state_dict(interpolate_states(a, b, float(alpha)))
        rows = belief_rows(lm, evaluator.world) + fixed_reading_rows(lm, evaluator)
        rows += [{"metric": k, "value": v} for k, v in span_losses(lm, docs).items()]
        frames.append(pd.DataFrame(rows).assign(alpha=float(alpha)))
    return pd.concat(frames, ignore_index=True)
