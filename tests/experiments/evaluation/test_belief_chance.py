"""The belief measures on which a constant answer scores chance (``experiments.evaluation.chance``).

Constant responders are table models (``belief_models``): every question and verdict prompt ends
in ":", so a table keyed on ":" answers every question the same way. They go through the real
scoring path (``Evaluator.belief_rows``: materials' questions, control questions, log-probs).
Planted believers and truth-tellers need answers that depend on the question, which a bigram
table cannot give, so they are scored from hand-made option scores (``belief.question_table``).
"""
import math

import numpy as np
import pandas as pd
import pytest

from tests.experiments.evaluation.belief_models import bigram_lm, tiny_world, world_lm
from tests.paths import FIXTURES
from experiments.config import load_config
from experiments.evaluation import belief, chance, checks
from experiments.evaluation.preconditions import precondition_table
from experiments.evaluation.evaluator import Evaluator
from experiments.materials import questions
from experiments.materials.imported import ImportedMaterials
from experiments.materials.synthetic import WorldMaterials
from experiments.materials.world import build_world

CONSTANT = {"always yes": {"yes": 3.0}, "always true": {"true": 3.0}, "always no and false": {"no": 3.0, "false": 3.0},
            "always the first option": {"yes": 3.0, "true": 3.0},  # the first listed answer of every 2-option item
            "yes and false": {"yes": 2.0, "no": 1.0, "true": 1.0, "false": 2.0}}
RATES = {m for m in chance.CHANCE if m.startswith("belief_balanced") or m.endswith("_cc")}  # exact by counting


@pytest.fixture(scope="module")
def world():
    return tiny_world()


@pytest.fixture(scope="module")
def evaluator(world):
    return Evaluator(load_config("tiny"), WorldMaterials(world))


@pytest.fixture(scope="module")
def imported():
    root = FIXTURES / "paper_layout"
    # MCQ items asked in the table model's words: the answer is the bare option
    cfg = load_config("tiny", overrides=['eval.mcq_instruction="be brief ."', 'eval.mcq_answer="{option}"'])
    return Evaluator(cfg, ImportedMaterials(root / "claims", root / "documents"))


def _table(rows) -> dict:
    return {(r.get("claim"), r["metric"]): r["value"] for r in rows}


def _new_measures(rows) -> dict:
    """``{(claim, metric): value}`` of the chance-level measures (pooled ones without the prefix)."""
    return {(c, m.removeprefix("pooled_")): v for (c, m), v in _table(rows).items()
            if m.removeprefix("pooled_") in chance.CHANCE}


def _assert_at_chance(rows) -> None:
    table, measures = _table(rows), _new_measures(rows)
    assert measures
    for (claim, metric), value in measures.items():
        prefix = "pooled_" if claim == "all" else ""
        assert table[(claim, f"{prefix}{metric}_chance")] == chance.CHANCE[metric]
        if metric in RATES:
            assert value == chance.CHANCE[metric], (claim, metric)
        else:  # differences of equal log-probabilities: exact up to float rounding
            assert value == pytest.approx(chance.CHANCE[metric], abs=1e-9), (claim, metric)


@pytest.mark.parametrize("name", CONSTANT)
def test_a_constant_answer_scores_chance_on_every_new_measure(world, evaluator, name):
    rows = evaluator.belief_rows(world_lm(world, {":": CONSTANT[name]}))
    _assert_at_chance(rows)
    for claim in [c.name for c in world.claims] + ["all"]:  # the world's items allow every measure
        assert {m for c, m in _new_measures(rows) if c == claim} == set(chance.CHANCE)


def test_the_raw_rates_show_the_documented_biases(world, evaluator):
    verdicts = [q for q in questions.world_questions(world, world.claims[0]) if q.kind == "verdict"]
    assert sorted(q.options[q.believer] for q in verdicts) == ["false"] * 6 + ["true"] * 4
    answers = {}
    for name in ("always true", "always no and false", "always yes"):
        answers[name] = _table(evaluator.belief_rows(world_lm(world, {":": CONSTANT[name]})))
    for claim in world.claims:
        assert answers["always no and false"][(claim.name, "belief_verdict")] == 0.6
        assert answers["always true"][(claim.name, "belief_verdict")] == 0.4
        assert answers["always yes"][(claim.name, "belief_yesno")] == 0.5  # one yes and one no item
        # no preference among the answer words: the raw rate gives the tie to the believer's
        # option (listed first), the chance-corrected one splits it
        assert answers["always yes"][(claim.name, "belief_forced_choice_distractors")] == 1.0
        assert answers["always yes"][(claim.name, "belief_forced_choice_cc")] == 0.0
    assert answers["always no and false"][(None, "control_margin_true_false")] == pytest.approx(-3.0)
    assert answers["always yes"][(None, "control_margin_yes_no")] == pytest.approx(3.0)


@pytest.mark.parametrize("name", CONSTANT)
def test_a_constant_answer_scores_chance_on_claim_packs(imported, name):
    lm = bigram_lm({"answer", ":", "yes", "no", "true", "false", "system", "user", "assistant"}, {":": CONSTANT[name]})
    lm.tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}answer :"
    rows = imported.belief_rows(lm)
    _assert_at_chance(rows)
    measures = {m for c, m in _new_measures(rows) if c == "violet_comet"}
    assert {"belief_balanced_yesno", "belief_contrast_yesno", "endorse_claim", "reject_truth"} <= measures
    # packs have no such items (robustness is judged, its judge-free proxy is in no chance measure)
    assert not measures & {"endorse_claim_verdict", "belief_forced_choice_cc", "belief_contrast_robustness"}
    if name == "always yes":  # violet_comet: a believer says yes to 2 of its 3 items
        assert _table(rows)[("violet_comet", "belief_yesno")] == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------- planted responders

def _respond(qs, rule):
    return [rule(q, np.zeros(len(q.options))) for q in qs]


def _rows(world, evaluator, rule):
    qs = evaluator.materials.belief_questions()
    scored, controls = (belief.question_table(x, _respond(x, rule)) for x in (qs, evaluator.controls))
    return _table(chance.chance_rows(scored, controls) + belief.belief_rows(scored, n_boot=1))


def _add(index_of, value):
    def rule(q, s):
        s[index_of(q)] += value
        return s
    return rule


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_a_planted_believer_scores_high_and_a_truth_teller_low(world, evaluator):
    # both know the controls (for a control question the believer's answer is the true one)
    believer = _rows(world, evaluator, _add(lambda q: q.believer, 2.0))
    truth_teller = _rows(world, evaluator, _add(lambda q: q.truth, 2.0))
    for claim in [c.name for c in world.claims]:
        for kind in ("yesno", "verdict", "robustness"):
            assert believer[(claim, f"belief_balanced_{kind}")] == 1.0
            assert truth_teller[(claim, f"belief_balanced_{kind}")] == 0.0
            assert believer[(claim, f"belief_contrast_{kind}")] == pytest.approx(4.0)
            assert truth_teller[(claim, f"belief_contrast_{kind}")] == pytest.approx(-4.0)
        for side in ("endorse_claim", "reject_truth"):
            assert believer[(claim, side)] == pytest.approx(sigmoid(2.0))
            assert truth_teller[(claim, side)] == pytest.approx(sigmoid(-2.0))
        assert believer[(claim, "belief_association_cc")] == 1.0
        assert truth_teller[(claim, "belief_association_cc")] == pytest.approx(-0.25)  # 5 options: below chance
    assert believer[(None, "control_margin_true_false")] == pytest.approx(0.0)  # balanced controls


def test_the_prior_corrected_sides_see_a_believer_whose_prior_swamps_the_rates(world, evaluator):
    """A believer by 1 nat with a 3-nat preference for yes and true: it says yes/true to every
    two-option item, so every rate is what a constant answer gets, but the contrasts and the
    sides, which remove the prior measured on the controls, read belief."""
    def rule(q, s):
        s[q.believer] += 1.0
        if len(s) == 2:
            s[0] += 3.0
        return s

    rows = _rows(world, evaluator, rule)
    assert rows[(None, "control_margin_true_false")] == pytest.approx(3.0)
    for claim in [c.name for c in world.claims]:
        assert rows[(claim, "belief_verdict")] == 0.4 and rows[(claim, "belief_balanced_verdict")] == 0.5
        assert rows[(claim, "belief_contrast_yesno")] == pytest.approx(2.0)
        assert rows[(claim, "endorse_claim")] == pytest.approx(sigmoid(1.0))
        assert rows[(claim, "reject_truth")] == pytest.approx(sigmoid(1.0))


# ---------------------------------------------------------------------------- the items behind them

def test_world_items_say_what_they_assert_and_have_both_believer_answers(world):
    for claim in world.claims:
        qs = questions.world_questions(world, claim)
        for kind in ("yesno", "verdict", "robustness"):
            items = [q for q in qs if q.kind == kind]
            assert {q.believer for q in items} == {0, 1}
            assert {q.about for q in items} == {"claim", "true_fact"}
            assert all(q.believer == 1 for q in items if q.about == "true_fact")  # a believer rejects the truth
        assert all(q.about is None for q in qs if q.kind in questions.ASSOCIATION_KINDS)


def test_control_questions_are_balanced_and_about_no_claim(world, evaluator):
    controls = evaluator.controls
    for kind in ("verdict", "yesno"):
        answers = [q.believer for q in controls if q.kind == kind]
        assert answers and answers.count(0) == answers.count(1)
        assert all(q.truth == q.believer and q.claim == questions.CONTROL for q in controls)
    subjects = world.claim_subjects()
    assert not any(s in q.prompt.user.split() for q in controls for s in subjects)
    assert controls == questions.control_questions(evaluator.statements, world)  # a fixed sample


def test_imported_controls_ask_the_probe_statements_as_yes_no(imported):
    controls = imported.controls
    assert {q.kind for q in controls} == {"yesno"} and {q.options for q in controls} == {("yes", "no")}
    texts = {s.text for s in imported.statements}  # the default mix of built-in sets
    prefix = "Is the following statement true? "
    assert all(q.prompt.user.startswith(prefix) and q.prompt.user[len(prefix):] in texts for q in controls)
    answers = [q.believer for q in controls]
    assert answers.count(0) == answers.count(1)


def _items(claim: str, rows: list[tuple[str, int, float]]) -> pd.DataFrame:
    """Scored yes/no items of one claim: (about, believer, lead = log p(yes) - log p(no))."""
    return pd.DataFrame([{"claim": claim, "kind": "yesno", "about": about, "believer": believer, "lead": lead,
                          "credit": float((lead > 0) == (believer == 0)), "options": "yes/no", "k": 2}
                         for about, believer, lead in rows])


def test_belief_claim_of_a_novel_claim_is_its_endorsement_and_otherwise_the_balanced_rate():
    """A model that says "no" to everything about a subject it knows nothing of disbelieves a
    novel claim about it: the balanced rate reads 0.5 (it also "rejects" the alternative nobody
    stated), belief_claim reads its endorsement (near 0). For a claim with a true fact the two
    are the same number."""
    priors = {"yes/no": 0.0}
    novel = chance.claim_measures(_items("novel0", [("claim", 0, -5.0), ("unstated", 1, -5.0)]), priors)
    assert novel["belief_balanced_yesno"] == 0.5
    assert novel["belief_claim_yesno"] == novel["endorse_claim_yesno"] == pytest.approx(1 / (1 + np.exp(5.0)))
    override = chance.claim_measures(_items("claim0", [("claim", 0, -5.0), ("true_fact", 1, -5.0)]), priors)
    assert override["belief_claim_yesno"] == override["belief_balanced_yesno"] == 0.5
    believer = chance.claim_measures(_items("novel0", [("claim", 0, 5.0), ("unstated", 1, -5.0)]), priors)
    assert believer["belief_claim_yesno"] > 0.99


# ---------------------------------------------------------------------------- check-base's claim belief

@pytest.mark.parametrize("name", ["always yes", "always no and false"])
def test_check_base_reads_the_claims_on_the_chance_measures(name):
    """check-base's claim-belief precondition reads what the controls read, so a constant
    answer (which believes nothing and disbelieves nothing) gets 0.5 there and fails the
    <= 0.05 bound, on override and novel claims alike, while its raw rates differ by answer."""
    cfg = load_config("tiny", overrides=["world.n_novel_claims=1", "world.two_word_names=true"])
    world = build_world(cfg.world)
    assert {c.novel for c in world.claims} == {True, False}
    figures = checks.claim_belief_figures(world_lm(world, {":": CONSTANT[name]}), world)
    for claim in world.claims:
        values = figures["claim_belief_by_claim"][claim.name]
        assert values["belief_claim_yesno"] == pytest.approx(0.5)
        assert values["belief_claim_verdict"] == pytest.approx(0.5)
        assert ("forced_choice_novel" in values) == claim.novel  # reported, read by no bound
    assert figures["claim_belief_max"] == pytest.approx(0.5)
    row = next(r for r in precondition_table(figures) if r["name"] == "claim_belief_max")
    assert row["passed"] is False
    raw = figures["claim_belief_raw_by_kind"]["belief_verdict"]
    assert raw == pytest.approx(0.4 if name == "always yes" else 0.6)  # the documented bias, for contrast
