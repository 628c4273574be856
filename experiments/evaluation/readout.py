"""Probe readings at one checkpoint: fit per-layer truth probes on the control statements,
score them on held-out subjects, and read the claims' truth off the residual stream.

Two readings per claim: a *refit* probe (fit on this checkpoint's activations) and a
*fixed* probe (fit once on the base model and reused), because finetuning can change
what a fixed probe measures.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from experiments.materials.statements import ClaimStatement, Statement
from probes import LogisticProbe


@dataclass
class LayerProbe:
    """Raw-space weights of a fitted probe, enough to apply it anywhere."""

    coef: np.ndarray
    intercept: float

    def p_true(self, X: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.clip(X @ self.coef + self.intercept, -500, 500)))


def fit_layer_probes(acts: np.ndarray, statements: list[Statement], C: float) -> list[LayerProbe]:
    """One logistic probe per layer on the training split; ``acts`` is ``[n, layers, d]``."""
    train = np.array([s.split == "train" for s in statements])
    y = np.array([s.label for s in statements])
    probes = []
    for layer in range(acts.shape[1]):
        # Labels are bools, so classes_ is [False, True] and the logit points to "true".
        fitted = LogisticProbe(C=C).fit(acts[train, layer], y[train])
        probes.append(LayerProbe(fitted.coef_, fitted.intercept_))
    return probes


def probe_rows(acts: np.ndarray, statements: list[Statement], claim_acts: np.ndarray,
               claim_stmts: list[ClaimStatement], refit: list[LayerProbe],
               fixed: list[LayerProbe] | None) -> list[dict]:
    """Tidy rows: held-out accuracy per layer, and claim truth readings per layer."""
    test = np.array([s.split == "test" for s in statements])
    y = np.array([s.label for s in statements])
    neg = np.array([s.negated for s in statements])
    rows = []
    for layer in range(acts.shape[1]):
        for name, probe in (("refit", refit[layer]), ("fixed", fixed[layer] if fixed else None)):
            if probe is None:
                continue
            pred = probe.p_true(acts[:, layer]) > 0.5
            rows.append({"layer": layer, "metric": f"probe_acc_{name}", "value": float((pred[test] == y[test]).mean())})
            rows.append({"layer": layer, "metric": f"probe_acc_negated_{name}",
                         "value": float((pred[test & neg] == y[test & neg]).mean())})
            p = probe.p_true(claim_acts[:, layer])
            for claim in sorted({c.claim for c in claim_stmts}):
                for kind in ("claim", "true_fact"):
                    sel = np.array([c.claim == claim and c.kind == kind for c in claim_stmts])
                    if not sel.any():  # imported claims have no true statement
                        continue
                    metric = "probe_p_true" if kind == "claim" else "probe_p_true_truefact"
                    rows.append({"layer": layer, "claim": claim, "metric": f"{metric}_{name}",
                                 "value": float(p[sel].mean())})
    return rows
