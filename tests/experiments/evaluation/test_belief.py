"""Belief scoring on a model whose logits are a hand-written table: which answer wins, and so
every belief rate, is known by construction."""
import numpy as np
import pytest

from tests.experiments.evaluation.belief_models import logsoftmax, tiny_world, world_lm
from experiments.evaluation import belief
from experiments.materials import questions
from interp import continuation_logprobs


@pytest.fixture(scope="module")
def world():
    return tiny_world()


def _table(world, *, yes=2.0, no=1.0, true=1.0, false=2.0, cloze_truth=True):
    """After ":" (the last token of every question and verdict prompt) the claim's answer beats the
    true one; after a cloze prompt's last word the true answer wins (association by cloze says no)."""
    colon = {"yes": yes, "no": no, "true": true, "false": false}
    for c in world.claims:
        colon[c.fact.obj], colon[c.true_obj] = 5.0, 3.0
    table = {":": colon}
    if cloze_truth:
        for c in world.claims:
            for prompt in questions.cloze_prompts(c):
                table.setdefault(prompt.split()[-1], {})[c.true_obj] = 4.0
    return table


def _expected(questions, kind, believer_wins):
    """Belief rate of ``kind`` when the option at index ``believer_wins[kind]`` always wins."""
    qs = [q for q in questions if q.kind == kind]
    return float(np.mean([q.believer == believer_wins for q in qs]))


def test_rates_follow_the_table(world):
    lm = world_lm(world, _table(world))
    for claim in world.claims:
        qs = questions.world_questions(world, claim, tokenizer=lm.tokenizer)
        got = belief.claim_belief(lm, claim, world)
        assert got["belief_forced_choice"] == 1.0 and got["belief_forced_choice_distractors"] == 1.0
        assert got["margin_forced_choice"] == pytest.approx(2.0, abs=1e-4)  # 5 - 3, a log-softmax difference
        assert got["belief_token_association"] == 0.0
        # "yes" and "false" always win: the yes/no and robustness rates are 1/2 because a believer
        # says yes about the claim's answer and no about the true one; verdicts count the
        # negated and true statements (believer: false) as believed.
        assert got["belief_yesno"] == 0.5 == _expected(qs, "yesno", 0)
        assert got["belief_robustness"] == 0.5
        assert got["belief_verdict"] == pytest.approx(_expected(qs, "verdict", 1))
        n_fc = sum(q.kind == "forced_choice" for q in qs)
        n_ta = sum(q.kind == "token_association" for q in qs)
        assert got["belief_association"] == pytest.approx(n_fc / (n_fc + n_ta))
        assert 0 < got["belief_association"] < 1  # the families separate association from belief


def test_the_belief_frame_screen_leaves_its_frames_out_of_the_verdict_rate(world):
    """``skip_frames`` (a run's belief-frame screen) removes the claim's and the true fact's
    verdict items in that frame, and only those: "false" always wins, so the verdict rate is the
    kept items' share of false-believers, which the screen changes."""
    lm = world_lm(world, _table(world))
    claim = world.claims[0]
    frame = claim.fact.rel().affirmative[0]
    every, screened = belief.claim_belief(lm, claim, world), belief.claim_belief(lm, claim, world, skip_frames=(frame,))
    kept = questions.world_questions(world, claim, tokenizer=lm.tokenizer, skip_frames=(frame,))
    assert screened["belief_verdict"] == pytest.approx(_expected(kept, "verdict", 1))
    assert screened["belief_verdict"] != pytest.approx(every["belief_verdict"])
    pooled = ("verdict", "propositional")  # propositional pools the yes/no and verdict items
    assert {k: v for k, v in screened.items() if not k.endswith(pooled)} == {
        k: v for k, v in every.items() if not k.endswith(pooled)}


def test_saying_no_to_everything_does_not_fake_disbelief(world):
    lm = world_lm(world, _table(world, yes=1.0, no=2.0, true=2.0, false=1.0))
    rates = belief.claim_belief(lm, world.claims[0], world)
    assert rates["belief_yesno"] == 0.5 and rates["belief_robustness"] == 0.5
    qs = questions.world_questions(world, world.claims[0], tokenizer=lm.tokenizer)
    assert rates["belief_verdict"] == pytest.approx(_expected(qs, "verdict", 0))


def test_scores_are_exact_log_probabilities(world):
    table = _table(world)
    lm = world_lm(world, table)
    claim = world.claims[0]
    q = claim.fact.rel().questions[0].format(s=claim.fact.subject)
    got = continuation_logprobs(lm, [q, q], [claim.fact.obj, "yes"])
    vocab = len(lm.tokenizer)
    assert float(got[0]) == pytest.approx(logsoftmax(table[":"], claim.fact.obj, vocab), abs=1e-4)
    assert float(got[1]) == pytest.approx(logsoftmax(table[":"], "yes", vocab), abs=1e-4)


def test_questions_cover_every_kind_and_distractors_are_of_the_claims_kind(world):
    for claim in world.claims:
        qs = questions.world_questions(world, claim)
        assert {q.kind for q in qs} == set(belief.KIND_METRICS) - set(questions.PROXY_KINDS)
        fc = [q for q in qs if q.kind == "forced_choice"][0]
        assert fc.options[:2] == (claim.fact.obj, claim.true_obj)
        kind_pool = set(world.objects_of_kind(claim.fact.rel().object_kind))
        assert set(fc.options) <= kind_pool and len(set(fc.options)) == len(fc.options) == 5
        for q in qs:
            if q.kind in ("yesno", "verdict", "robustness"):
                assert q.truth == 1 - q.believer  # two options: the believer's and the truth's
        yn = [q.believer for q in qs if q.kind == "yesno"]
        assert sorted(yn) == [0, 1]  # balanced: one yes, one no


def test_challenges_the_tokenizer_cannot_encode_are_left_out(world):
    lm = world_lm(world, {})
    qs = questions.world_questions(world, world.claims[0], tokenizer=lm.tokenizer)
    prompts = [q.prompt.user for q in qs if q.kind == "robustness"]
    assert prompts and not any("some say" in p for p in prompts)
    assert any("some say" in q.prompt.user for q in questions.world_questions(world, world.claims[0]))


def test_rows_have_question_intervals_and_pooled_rates(world):
    lm = world_lm(world, _table(world))
    qs = [q for c in world.claims for q in questions.world_questions(world, c, tokenizer=lm.tokenizer)]
    scored = belief.score_questions(lm, qs)
    assert len(scored) == len(qs) and set(scored.believed) <= {0.0, 1.0}
    rows = {(r["claim"], r["metric"]): r["value"] for r in belief.belief_rows(scored, n_boot=500)}
    for claim in [c.name for c in world.claims] + ["all"]:
        prefix = "pooled_" if claim == "all" else ""
        for metric in ("belief_propositional", "belief_verdict"):
            value, lo, hi = (rows[(claim, prefix + metric + s)] for s in ("", "_qlo", "_qhi"))
            assert lo <= value <= hi
    # a rate of 1 over its questions has a degenerate interval; a mixed one does not
    c0 = world.claims[0].name
    assert rows[(c0, "belief_forced_choice_distractors_qlo")] == 1.0
    assert rows[("all", "pooled_belief_verdict_qlo")] < rows[("all", "pooled_belief_verdict")] < \
        rows[("all", "pooled_belief_verdict_qhi")]
    pooled = scored[scored.kind == "verdict"].believed.mean()
    assert rows[("all", "pooled_belief_verdict")] == pytest.approx(pooled)


def test_rate_with_ci_is_seeded_and_brackets_the_mean():
    values = [1, 0, 1, 1, 0, 1, 1, 1]
    a, b = belief.rate_with_ci(values, seed=3), belief.rate_with_ci(values, seed=3)
    assert a == b and a[0] == 0.75 and a[1] < 0.75 < a[2]
    assert belief.rate_with_ci([1, 1, 1]) == (1.0, 1.0, 1.0)
