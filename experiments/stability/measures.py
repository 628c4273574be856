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

import interp
from experiments.evaluation import readout
from experiments.materials import Materials
from experiments.materials.conditions import LabelledDocument
from experiments.errors import UserError

HELDOUT_SEED = 990_001  # document seed of the held-out negated documents (training seeds are small ints)
LOSS_METRICS = ("heldout_loss", "heldout_loss_claim", "heldout_loss_warning")


def heldout_documents(materials: Materials, n_per_claim: int, exclude: set[str]) -> list[LabelledDocument]:
    """Negated documents with spans, none of whose texts is in ``exclude`` (the training docs)."""
    pool = materials.documents("negated", 4 * n_per_claim, seed=HELDOUT_SEED)
    per_claim = len(pool) // len(materials.claims)
    out = []
    for c in range(len(materials.claims)):
        fresh = [d for d in pool[c * per_claim:(c + 1) * per_claim] if d.text not in exclude]
        out += list(dict.fromkeys(fresh))[:n_per_claim]
    if not out:
        raise UserError("no held-out negated documents: every generated one is also a training document")
    random.Random(0).shuffle(out)
    return out


def span_losses(lm, docs: list[LabelledDocument], labels: tuple[str, ...] = ("claim", "warning"),
                batch_size: int | None = None) -> dict[str, float]:
    """Mean next-token cross-entropy over every predicted token of ``docs`` (``heldout_loss``)
    and over the tokens overlapping spans of each label (``heldout_loss_<label>``)."""
    sums = {"": 0.0, **{lab: 0.0 for lab in labels}}
    counts = dict.fromkeys(sums, 0)
    scored = interp.token_logprobs(lm, [d.text for d in docs], offsets=True, batch_size=batch_size)
    for doc, tokens in zip(docs, scored):
        token_ce = tokens.losses.numpy()  # target token t = 1..len-1
        sums[""] += float(token_ce.sum())
        counts[""] += len(token_ce)
        for lab in labels:
            inside = ~np.array(doc.keep_mask(tokens.offsets, exclude=(lab,)))[1:]
            sums[lab] += float(token_ce[inside].sum())
            counts[lab] += int(inside.sum())
    return {("heldout_loss" + (f"_{k}" if k else "")): (sums[k] / counts[k] if counts[k] else float("nan"))
            for k in sums}


def loss_rows(lm, docs: list[LabelledDocument]) -> pd.DataFrame:
    return pd.DataFrame([{"metric": k, "value": v} for k, v in span_losses(lm, docs).items()])


def fixed_reading_rows(lm, evaluator) -> list[dict]:
    """The fixed (base-model) probe's P(true) of each claim and true fact, at every layer."""
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
    lm = interp.load_model(path_a, device=device)
    a = {k: v.detach().clone() for k, v in lm.model.state_dict().items()}
    b = interp.load_model(path_b, device=device).model.state_dict()
    frames = []
    for alpha in alphas:
        lm.model.load_state_dict(interpolate_states(a, b, float(alpha)))
        rows = evaluator.belief_rows(lm) + fixed_reading_rows(lm, evaluator)  # as at every checkpoint, screened alike
        rows += [{"metric": k, "value": v} for k, v in span_losses(lm, docs).items()]
        frames.append(pd.DataFrame(rows).assign(alpha=float(alpha)))
    return pd.concat(frames, ignore_index=True)
