"""The in-context control: questions, k bounded by the context, and scoring known by
construction on a table model."""
import pandas as pd
import pytest

from tests.experiments.evaluation.belief_models import tiny_world, world_lm
from experiments.evaluation import incontext
from experiments.materials.corpus import WARN_AFTER, WARN_BEFORE
from experiments.materials.world import RELATIONS


@pytest.fixture(scope="module")
def world():
    return tiny_world()


def _names(text: str, world) -> set[str]:
    return {n for n in world.people + world.events if f" {n} " in f" {text} "}


def test_controls_ask_about_the_context_sentences(world):
    items = incontext.incontext_items(world, "negated", ks=(0, 1, 2), n_draws=2)
    claims = {c.name: c for c in world.claims}
    for k, claim, measure, user, options, hit in items:
        context, question = (user.rsplit(" question : ", 1) if " question : " in user
                             else user.rsplit(" q : ", 1)) if k else ("", user)
        if measure.startswith("belief"):
            assert claims[claim].fact.subject in question
        elif k:  # the control's subject is in a context sentence of the documents in context
            assert _names(question, world) & _names(context, world)
            assert any(w in context for w in WARN_BEFORE)  # negated documents carry their retraction
    for prefix in ("belief_yesno", "control_yesno"):  # balanced: a "no to everything" model gets 1/2
        hits = [hit for *_, m, _u, _o, hit in items if m == prefix]
        assert hits.count(0) == hits.count(1) > 0


def test_a_model_that_says_no_to_everything_fails_the_control(world):
    colon = {"yes": 1.0, "no": 3.0}
    for c in world.claims:
        colon[c.fact.obj], colon[c.true_obj] = 5.0, 2.0  # context-blind: the claim's answer always wins
    lm = world_lm(world, {":": colon})
    sweep = incontext.incontext_sweep(lm, world, "negated", ks=(0, 1, 2), n_draws=2)
    by = sweep.groupby(["k", "measure"]).value.mean()
    for k in (0, 1, 2):
        assert by[(k, "belief_yesno")] == 0.5  # not 0: saying no is not disbelief
        assert by[(k, "control_yesno")] == 0.5  # and the control catches it
        assert by[(k, "belief_forced_choice")] == 1.0
    assert set(sweep.columns) == {"condition", "seed", "k", "claim", "measure", "value", "n_questions"}
    rows = incontext.incontext_rows(sweep)
    assert {r["metric"] for r in rows} >= {"incontext_control_yesno_k2", "incontext_belief_forced_choice_k0"}


def test_k_is_bounded_by_the_context(world):
    lm = world_lm(world, {}, max_len=64)
    items = incontext.incontext_items(world, "negated", ks=(0, 1, 2, 4), n_draws=2)
    longest = {}
    for k, *_, user, _o, _h in items:
        longest[k] = max(longest.get(k, 0), len(lm.tokenizer(user)["input_ids"]))
    fits = sorted(k for k, n in longest.items() if n + 4 <= 64)
    assert 0 in fits and 4 not in fits
    sweep = incontext.incontext_sweep(lm, world, "negated", ks=(0, 1, 2, 4), n_draws=2)
    assert sorted(sweep.k.unique()) == fits


def test_documents_follow_the_condition_and_seed(world):
    a = incontext.incontext_items(world, "plain", ks=(1,), seed=0, n_draws=1)
    b = incontext.incontext_items(world, "plain", ks=(1,), seed=1, n_draws=1)
    assert a != b and not any(w in u for *_, u, _o, _h in a for w in WARN_BEFORE + WARN_AFTER)
    assert a == incontext.incontext_items(world, "plain", ks=(1,), seed=0, n_draws=1)
    assert all(r.yesno.endswith("answer :") for r in RELATIONS.values())


def test_the_run_has_the_incontext_sweep(tiny_run):
    out, table = tiny_run
    base = table[table.step == 0]
    assert {"incontext_belief_yesno_k0", "incontext_control_yesno_k1"} <= set(base.metric)
    sweep = pd.read_csv(out / "results" / "incontext.csv")
    assert set(sweep.step) == {0, int(table.step.max())} and set(sweep.seed) == {0}
    assert set(sweep.condition) == set(table.condition) and sweep.value.between(0, 1).all()
    for metric in ("belief_association", "belief_propositional", "belief_robustness", "pooled_belief_verdict_qhi"):
        assert metric in set(table.metric)
    report = (out / "report.html").read_text()
    for name in ("belief table", "association vs belief", "incontext control", "belief over seeds"):
        assert name in report, name
