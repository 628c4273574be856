"""Planted probe statements and activations with a known truth direction, as
``materials.statements`` and ``interp.residuals`` make them (shared by the readout tests)."""
from __future__ import annotations

import numpy as np

from experiments.materials.statements import ClaimStatement, Statement

N_LAYERS, D = 3, 16


def planted_statements(n_subjects=80, facts_per_subject=2, seed=0, dataset="synthetic"):
    """Statements as ``materials.statements`` makes them: per fact A(o), A(o'), not A(o),
    not A(o'); a quarter of the subjects held out."""
    out = []
    for s in range(n_subjects):
        split = "test" if s % 4 == 0 else "train"
        for f in range(facts_per_subject):
            for negated in (False, True):
                for correct in (True, False):
                    out.append(Statement(f"s{s} f{f} {'not ' * negated}{correct}", correct != negated, negated,
                                         f"s{s}", split, dataset))
    return out


def basis(seed=1):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(D, 4)))
    return q.T  # rows: two truth directions (a checkpoint's and a rotated one), negation offset, spare


def plant(truth: list[bool], negated: list[bool], direction: np.ndarray, seed: int, margin: float = 6.0):
    """``[n, L, d]``: content shared by each group of four statements (one fact) + a negation
    offset + (+-margin/2) along ``direction`` at layers 1.. (layer 0 carries no truth, like
    the embeddings) + noise."""
    rng = np.random.default_rng(seed)
    q = basis()
    tau = np.where(truth, 1.0, -1.0)[:, None]
    pol = np.where(negated, -1.0, 1.0)[:, None]
    content = rng.normal(size=((len(truth) + 3) // 4, D))[np.arange(len(truth)) // 4]
    base = content + 0.5 * rng.normal(size=content.shape) + 2.0 * pol * q[2]
    acts = np.stack([base + 0.3 * rng.normal(size=base.shape) for _ in range(N_LAYERS)], axis=1)
    acts[:, 1:] += (tau * margin / 2 * direction)[:, None, :]
    return acts.astype(np.float32)


# Claim statements: "c_false" is placed on the false side and has a true fact on the true side;
# "c_true" (as in an imported claim pack) has only the claim, placed on the true side.
CLAIMS = ([ClaimStatement("c_false", "claim", f"false claim {i}") for i in range(3)]
          + [ClaimStatement("c_false", "true_fact", f"true fact {i}") for i in range(3)]
          + [ClaimStatement("c_true", "claim", f"true claim {i}") for i in range(3)])
CLAIM_TRUTH = [False] * 3 + [True] * 3 + [True] * 3


def checkpoint(direction, seed):
    stmts = planted_statements()
    acts = plant([s.label for s in stmts], [s.negated for s in stmts], direction, seed)
    claim_acts = plant(CLAIM_TRUTH, [False] * len(CLAIMS), direction, seed + 100)
    return stmts, acts, claim_acts
