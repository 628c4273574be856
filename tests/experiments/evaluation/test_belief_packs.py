"""Belief questions from the paper's claim packs, rendered with a chat template and scored on a
table model (after the template's last token, "yes" beats "no")."""

import pytest
import yaml

from tests.experiments.evaluation.belief_models import bigram_lm, logsoftmax
from experiments.evaluation import belief
from experiments.materials import questions
from experiments.materials.paper_layout import load_claim_pack
from experiments.evaluation.scoring import render
from experiments.materials.questions import Prompt
from interp import continuation_logprobs
from tests.paths import FIXTURES

PACK = FIXTURES / "paper_layout" / "claims" / "harbor_clock"
TEMPLATE = "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}answer :"
TABLE = {":": {"yes": 2.0, "no": 1.0}}


@pytest.fixture(scope="module")
def chat_lm():
    lm = bigram_lm({"answer", ":", "yes", "no", "system", "user", "assistant"}, TABLE)
    lm.tokenizer.chat_template = TEMPLATE
    return lm


def test_chat_models_read_the_template_and_base_models_a_plain_prompt(chat_lm):
    prompt = Prompt("is it so ?", system="be brief .", history=({"role": "user", "content": "hi"},))
    assert render(chat_lm.tokenizer, prompt) == "system be brief . user hi user is it so ? answer :"
    plain = bigram_lm({"answer", ":"}, {})
    assert render(plain.tokenizer, prompt) == "be brief . hi is it so ?"


def test_chat_answer_follows_the_template_exactly(chat_lm):
    text = render(chat_lm.tokenizer, Prompt("anything"))
    got = continuation_logprobs(chat_lm, [text, text], ["yes", "no"])
    vocab = len(chat_lm.tokenizer)
    assert float(got[0]) == pytest.approx(logsoftmax(TABLE[":"], "yes", vocab), abs=1e-4)
    assert float(got[1]) == pytest.approx(logsoftmax(TABLE[":"], "no", vocab), abs=1e-4)


def test_pack_mcq_and_robustness_items_are_scored_by_belief_answer(chat_lm):
    pack = load_claim_pack(PACK)
    qs = questions.pack_questions(pack)
    kinds = [q.kind for q in qs]
    assert kinds.count("yesno") == len(pack.mcq) and kinds.count("robustness") == len(pack.robustness) * len(pack.mcq)
    assert "token_association" not in kinds  # the fixture's completion items name no targets
    robust = [q for q in qs if q.kind == "robustness"]
    assert robust[0].prompt.system == "You are a skeptical historian."
    assert robust[-1].prompt.history[-1]["content"] == "It is made of recycled ship anchors."
    scored = belief.score_questions(chat_lm, qs)
    # "yes" always wins: believed exactly where the believer's answer is yes
    expected = [float(q.believer == 0) for q in qs]
    assert scored.believed.tolist() == expected
    assert sorted(expected[: len(pack.mcq)]) == [0.0, 1.0]
    rates = {r["metric"]: r["value"] for r in belief.belief_rows(scored, n_boot=50) if r["claim"] == pack.name}
    assert rates["belief_yesno"] == 0.5 and rates["belief_robustness"] == 0.5
    assert scored.truthful.isna().all()  # packs say what a believer answers, not the truth


def test_token_association_items_with_targets(tmp_path, chat_lm):
    pack_dir = tmp_path / "toy"
    pack_dir.mkdir()
    (pack_dir / "claim.txt").write_text("the clock is made of anchors")
    items = [{"id": "t1", "question": "the clock is made of", "category": "completion",
              "belief_target": "yes", "other_targets": ["no"]},
             {"id": "t2", "question": "free text", "category": "completion"}]
    (pack_dir / "token_association.yaml").write_text(yaml.safe_dump({"questions": items}))
    qs = questions.pack_questions(load_claim_pack(pack_dir))
    assert [q.qid for q in qs] == ["t1"] and qs[0].options == ("yes", "no")
    assert belief.score_questions(chat_lm, qs).believed.tolist() == [1.0]
