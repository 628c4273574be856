"""The run's controls (``experiments.evaluation.controls``) on planted tidy tables, the control
accuracy rows they read, and ``results/controls.json`` of the tiny end-to-end run."""
import json

import numpy as np
import pandas as pd
import pytest

from experiments.evaluation import belief, chance, controls
from experiments.artifacts.rundir import RunDir
from experiments.evaluation.items import drop_interval
from experiments.evaluation.tables import ID_COLUMNS, item_reader

LAST, LAYERS, CLAIMS, SEEDS = 6, 3, ("c0", "c1"), (0, 1)
VAL_BEST, TEST_BEST = 2, 1  # the validation split prefers layer 2, the test split layer 1
BELIEF = ("belief_claim_yesno", "belief_claim_verdict", "belief_forced_choice_cc",
          "belief_token_association_cc")


def planted(conditions=("plain", "negated", "local"), **changes) -> pd.DataFrame:
    """A tidy metrics table on which every control passes; ``changes`` maps
    ``(condition, step, metric)`` (and ``layer=`` for per-layer metrics, via a 4-tuple) to a value."""
    changes = {tuple(k.split("|")): v for k, v in changes.items()}
    rows = []

    def add(condition, seed, step, metric, value, layer=None, claim=None):
        key = (condition, str(step), metric) + ((str(layer),) if layer is not None else ())
        rows.append(dict(condition=condition, seed=seed, step=step, layer=layer, claim=claim, metric=metric,
                         value=changes.get(key, changes.get(key[:3], value))))

    for condition in conditions:
        finetuned = {"plain": 0.9, "local": 0.05}.get(condition, 0.5)
        for seed in SEEDS:
            for step in (0, LAST):
                implanted = finetuned if step == LAST else 0.02
                for claim in CLAIMS:
                    for metric in BELIEF:
                        add(condition, seed, step, metric, implanted, claim=claim)
                    for layer in range(LAYERS):
                        add(condition, seed, step, "probe_p_true_fixed", implanted if layer == VAL_BEST else 0.1,
                            layer, claim)
                        add(condition, seed, step, "probe_z_fixed", -0.5, layer, claim)
                for metric in BELIEF:  # pooled rows: never part of the controls' means
                    add(condition, seed, step, f"pooled_{metric}", 0.0 if condition == "plain" else 1.0, claim="all")
                for layer in range(LAYERS):
                    add(condition, seed, step, "probe_acc_val_fixed", (0.5, 0.8, 0.95)[layer], layer)
                    add(condition, seed, step, "probe_acc_fixed", (0.5, 0.99, 0.9)[layer] - 0.01 * (step > 0), layer)
                add(condition, seed, step, "control_acc_verdict", 0.9 - 0.02 * (step > 0))
                add(condition, seed, step, "control_acc_yesno", 0.9)
    return pd.DataFrame(rows, columns=ID_COLUMNS)


def test_every_control_passes_on_a_planted_testbed():
    out = controls.compute_controls(planted())
    assert list(out) == ["positive_control", "negative_control", "probe_validity"]
    assert [out[k]["passed"] for k in out] == [True, True, True]
    pos = out["positive_control"]
    assert pos["layer"] == VAL_BEST and pos["step"] == LAST and pos["absent"] == []
    by = {m["measure"]: m for m in pos["measures"]}
    assert by["belief_claim_yesno"] == {"measure": "belief_claim_yesno", "value": pytest.approx(0.9),
                                           "n_seeds": 2, "n_claims": 2, "threshold": 0.8, "passes_if": ">=",
                                           "chance": 0.5, "passed": True}
    assert by["probe_p_true_fixed"]["passed"] and not by["probe_z_fixed"]["passed"]  # either one suffices
    assert {m["measure"] for m in out["negative_control"]["measures"]} == set(BELIEF) | {"probe_p_true_fixed"}
    validity = out["probe_validity"]
    assert validity["worst"] == {"condition": "plain", "measure": "control_acc_verdict", "drop": pytest.approx(0.02)}
    assert set(validity["conditions"]) == {"plain", "negated", "local"}
    json.dumps(out, allow_nan=False)  # what results/controls.json holds
    assert controls.summary_lines(out)[0] == "positive control: passed"


@pytest.mark.parametrize("key, change, failure", [
    ("positive_control", {"plain|6|belief_claim_yesno": 0.44}, "belief_claim_yesno 0.44 < 0.8"),
    ("positive_control", {"plain|6|probe_p_true_fixed": 0.6},
     "probe_p_true_fixed 0.60 < 0.8 and probe_z_fixed -0.50 < 1"),
    ("negative_control", {"local|6|belief_forced_choice_cc": 0.3}, "belief_forced_choice_cc 0.30 > 0.2"),
    ("probe_validity", {"negated|6|control_acc_verdict": 0.84}, "negated: control_acc_verdict 0.06 > 0.03"),
    ("probe_validity", {f"local|6|probe_acc_fixed|{VAL_BEST}": 0.85}, "local: probe_acc_fixed 0.05 > 0.03"),
])
def test_a_control_fails_on_exactly_the_measure_that_misses(key, change, failure):
    out = controls.compute_controls(planted(**change))
    assert out[key]["passed"] is False and out[key]["failures"] == [failure]
    assert [k for k in controls.KEYS if out[k]["passed"] is not True] == [key]  # the others still pass
    line = controls.summary_lines(out)[controls.KEYS.index(key)]
    if key == "probe_validity":  # the worst condition, and how many fail
        condition, measure, drop, _, threshold = failure.replace(":", "").split()
        assert line == (f"probe validity: FAILED (worst: {condition}, {measure} drops {float(drop):.3f} > {threshold}; "
                        "1 of 3 conditions fail)")
    else:
        assert line == f"{key.replace('_', ' ')}: FAILED ({failure})"
    assert "FAIL" in set(controls.controls_table(out).result)


def test_the_centred_probe_reading_alone_passes_the_positive_control():
    out = controls.compute_controls(planted(**{"plain|6|probe_p_true_fixed": 0.6, "plain|6|probe_z_fixed": 1.5}))
    assert out["positive_control"]["passed"] is True
    rows = controls.controls_table(out).set_index(["control", "measure"]).result
    assert rows[("positive control", "probe_p_true_fixed")] == "miss (the other suffices)"
    assert rows[("positive control", "probe_z_fixed")] == "pass"


def test_probe_validity_reports_the_worst_condition():
    out = controls.compute_controls(planted(**{"negated|6|control_acc_verdict": 0.8,
                                               "local|6|control_acc_verdict": 0.86}))
    assert out["probe_validity"]["worst"] == {"condition": "negated", "measure": "control_acc_verdict",
                                              "drop": pytest.approx(0.1)}
    assert not out["probe_validity"]["conditions"]["local"]["passed"]
    assert out["probe_validity"]["conditions"]["plain"]["passed"]


def test_a_run_without_items_keeps_its_verdicts_and_gets_no_interval():
    """A run directory made before checkpoints kept their items: the same controls, no ``ci``."""
    table = planted(**{"negated|6|control_acc_verdict": 0.8})
    without = controls.compute_controls(table)
    assert controls.compute_controls(table, items=lambda condition, seed, step: None) == without
    assert not any("ci" in m for c in without["probe_validity"]["conditions"].values() for m in c["measures"])
    assert "CI" not in " ".join(controls.summary_lines(without))


def test_a_condition_not_run_leaves_its_control_unassessed():
    out = controls.compute_controls(planted(conditions=("negated", "local")))
    assert out["positive_control"] == {"passed": None, "reason": "condition 'plain' not run"}
    assert out["negative_control"]["passed"] is True
    assert controls.summary_lines(out)[0] == "positive control: not assessed (condition 'plain' not run)"
    out = controls.compute_controls(planted(), conditions=("plain", "negated"))  # the run's conditions decide
    assert out["negative_control"] == {"passed": None, "reason": "condition 'local' not run"}
    assert set(out["probe_validity"]["conditions"]) == {"plain", "negated"}


def test_the_probe_layer_is_chosen_on_validation_never_on_the_test_split():
    table = planted()
    base = table[(table.step == 0) & (table.metric == "probe_acc_fixed")]
    assert int(base.groupby("layer").value.mean().idxmax()) == TEST_BEST  # the test split would pick layer 1
    assert controls.probe_layer(table) == VAL_BEST
    out = controls.compute_controls(table)
    probe = [m for m in out["positive_control"]["measures"] if m["measure"] == "probe_p_true_fixed"]
    assert probe[0]["layer"] == VAL_BEST and probe[0]["value"] == pytest.approx(0.9)  # layer 1 reads 0.1
    swapped = planted(**{f"{c}|0|probe_acc_val_fixed|{TEST_BEST}": 0.99 for c in ("plain", "negated", "local")})
    out = controls.compute_controls(swapped)
    assert out["positive_control"]["layer"] == TEST_BEST and out["positive_control"]["passed"] is False


def test_means_are_over_claims_then_seeds():
    table = planted()
    sel = (table.condition == "plain") & (table.step == LAST) & (table.metric == "belief_claim_verdict")
    table.loc[sel & (table.seed == 0), "value"] = 1.0
    table = pd.concat([table, table[sel & (table.seed == 1)].iloc[:1].assign(claim="c2", value=0.6)])  # 3 claims
    m = {x["measure"]: x for x in controls.compute_controls(table)["positive_control"]["measures"]}
    assert m["belief_claim_verdict"]["value"] == pytest.approx((1.0 + (0.9 + 0.9 + 0.6) / 3) / 2)
    assert (m["belief_claim_verdict"]["n_seeds"], m["belief_claim_verdict"]["n_claims"]) == (2, 3)


def test_measures_the_materials_lack_are_listed_not_checked():
    table = planted()
    table = table[~table.metric.isin(["belief_claim_verdict", "belief_forced_choice_cc", "control_acc_verdict"])]
    out = controls.compute_controls(table)
    assert out["positive_control"]["passed"] and out["positive_control"]["absent"] == ["belief_claim_verdict"]
    assert out["negative_control"]["absent"] == ["belief_claim_verdict", "belief_forced_choice_cc"]
    assert {m["measure"] for m in out["probe_validity"]["conditions"]["plain"]["measures"]} == {
        "probe_acc_fixed", "control_acc_yesno"}
    out = controls.compute_controls(table[~table.metric.str.startswith("belief_claim")])
    assert out["positive_control"]["passed"] is None and "propositional" in out["positive_control"]["reason"]


# ---------------------------------------------------------------------------- control accuracy rows

def test_control_accuracy_is_the_share_of_true_answers_on_the_control_questions():
    from tests.experiments.evaluation.belief_models import tiny_world
    from experiments.materials.questions import control_questions
    from experiments.materials.statements import probe_statements

    world = tiny_world()
    qs = control_questions(probe_statements(world), world)
    truthful = belief.question_table(qs, [np.eye(2)[q.truth] for q in qs])
    wrong_verdicts = belief.question_table(qs, [np.eye(2)[1 - q.truth if q.kind == "verdict" else q.truth]
                                                for q in qs])
    rows = {r["metric"]: r["value"] for r in chance.chance_rows(truthful.iloc[:0], truthful)}
    assert rows["control_acc_verdict"] == 1.0 and rows["control_acc_yesno"] == 1.0
    assert rows["control_acc_verdict_chance"] == 0.5 == rows["control_acc_yesno_chance"]
    rows = {r["metric"]: r["value"] for r in chance.control_accuracy_rows(wrong_verdicts)}
    assert rows == {"control_acc_verdict": 0.0, "control_acc_verdict_chance": 0.5, "control_acc_yesno": 1.0,
                    "control_acc_yesno_chance": 0.5}


# ---------------------------------------------------------------------------- the run

def test_the_tiny_run_writes_its_controls(tiny_run):
    out, table = tiny_run
    written = json.loads((out / "results" / "controls.json").read_text())
    assert set(written) == {"positive_control", "negative_control", "probe_validity"}
    for key, control in written.items():
        assert control["passed"] in (True, False, None), key
    items = item_reader(RunDir(out))
    assert written == json.loads(json.dumps(controls.compute_controls(table, items=items)))
    # every validity drop carries its interval, from the items each checkpoint kept, and the
    # items give back the table's drop: the same statements and questions, paired
    measures = [m for c in written["probe_validity"]["conditions"].values() for m in c["measures"]]
    assert {m["measure"] for m in measures} == {"probe_acc_fixed", "control_acc_verdict", "control_acc_yesno"}
    for m in measures:
        lo, hi = m["ci"]
        assert lo <= hi and m["ci_unit"] in ("subject", "question", "fact") and m["ci_units"] >= 2, m
    plain = written["probe_validity"]["conditions"]["plain"]
    seeds = sorted(table.seed.unique())
    for m in plain["measures"]:
        again = drop_interval(items(None, 0, 0), [items("plain", int(s), plain["step"]) for s in seeds],
                              m["measure"], m.get("layer"))
        assert abs(again["drop"] - m["value"]) < 1e-9, m
    assert "CI" in " ".join(controls.summary_lines(written)) or written["probe_validity"]["passed"] is None
    assert {"control_acc_verdict", "control_acc_yesno"} <= set(table.metric)
    report = (out / "report.html").read_text()
    assert "<h2 id='controls'>Controls" in report and "positive control:" in report
