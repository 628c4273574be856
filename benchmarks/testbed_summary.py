"""One line per run and condition of the testbed sweep: belief and probe readings at the last
checkpoint, split by claim kind (override claims about known people vs novel claims).

    python benchmarks/testbed_summary.py RUN_DIR [RUN_DIR ...]

Reads each run's results/metrics.csv (and results/check_base.json when present) and prints
JSON lines. Means are over the claims of a kind and the run's seeds (n given).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

BELIEF = ("belief_balanced_yesno", "belief_balanced_verdict", "endorse_claim", "reject_truth",
          "belief_forced_choice_cc", "belief_token_association_cc")


def summarise(run: Path) -> list[dict]:
    t = pd.read_csv(run / "results" / "metrics.csv")
    base = t[t.step == 0]
    val = base[base.metric == "probe_acc_val_fixed"].groupby("layer").value.mean()
    layer = int(val.idxmax()) if len(val) else None
    last = t.step.max()
    out = []
    for condition, grp in t.groupby("condition"):
        for step in (0, last):
            g = grp[grp.step == step]
            claims = g[g.claim.notna() & (g.claim != "all") & (g.claim != "(control)")]
            for kind, sel in (("novel", claims.claim.str.startswith("novel")),
                              ("override", ~claims.claim.str.startswith("novel"))):
                c = claims[sel]
                if c.empty:
                    continue
                row = {"run": run.name, "condition": condition, "step": int(step), "claims": kind,
                       "n_claims": int(c.claim.nunique()), "n_seeds": int(g.seed.nunique()), "layer": layer}
                for m in BELIEF:
                    v = c[c.metric == m].value
                    if len(v):
                        row[m] = round(float(v.mean()), 3)
                for m in ("probe_p_true_fixed", "probe_z_fixed", "probe_p_true_truefact_fixed", "probe_z_truefact_fixed"):
                    v = c[(c.metric == m) & (c.layer == layer)].value
                    if len(v):
                        row[m] = round(float(v.mean()), 3)
                out.append(row)
            for m in ("probe_acc_fixed", "heldout_qa", "control_acc_verdict", "control_acc_yesno"):
                v = g[(g.metric == m) & ((g.layer == layer) if m == "probe_acc_fixed" else True)].value
                if len(v):
                    out[-1][m] = round(float(v.mean()), 3)
    return out


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        run = Path(arg)
        check = run / "results" / "check_base.json"
        if check.is_file():
            c = json.loads(check.read_text())
            print(json.dumps({"run": run.name, "check_base": {k: v for k, v in c.items() if not isinstance(v, (list, dict))},
                              "statement_profile": [round(x, 3) for x in c.get("statement_probe_acc_by_layer", [])],
                              "verdict_profile": [round(x, 3) for x in c.get("verdict_probe_acc_by_layer", [])],
                              "by_claim": c.get("claim_belief_by_claim")}))
        controls = run / "results" / "controls.json"
        if controls.is_file():
            from experiments.evaluation.controls import summary_lines
            print(json.dumps({"run": run.name, "controls": summary_lines(json.loads(controls.read_text()))}))
        if (run / "results" / "metrics.csv").is_file():
            for row in summarise(run):
                print(json.dumps(row))
