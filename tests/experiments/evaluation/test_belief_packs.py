"""Belief questions from the paper's claim packs, rendered with a chat template and scored on a
table model (after the template's last token, "yes" beats "no")."""

import pytest
import yaml

from tests.experiments.evaluation.belief_models import bigram_lm, logsoftmax
from experiments.evaluation import belief
from experiments.materials import questions
from experiments.materials.paper_layout import load_claim_pack
from experiments.evaluation.scoring import McqFormat, render
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


WORDS = McqFormat(instruction="be brief .", answer="{option}")  # the table model's words only


def test_pack_mcq_items_are_scored_by_belief_answer_and_robustness_only_as_a_labelled_proxy(chat_lm):
    pack = load_claim_pack(PACK)
    qs = questions.pack_questions(pack)
    kinds = [q.kind for q in qs]
    # the one adversarial item (a system prompt, no earlier turns) asks each MCQ item under its system prompt;
    # the multi-turn item has no judge-free form, and no MCQ question is appended to any robustness prompt
    assert kinds == ["yesno"] * len(pack.mcq) + ["robustness_proxy"] * len(pack.mcq)
    assert all(q.style == "mcq" for q in qs)
    proxy = [q for q in qs if q.kind == "robustness_proxy"]
    assert [q.prompt.user for q in proxy] == [q.question for q in pack.mcq]
    assert {q.prompt.system for q in proxy} == {"You are a skeptical historian."}
    assert "token_association" not in kinds  # the fixture's completion items name no targets
    scored = belief.score_questions(chat_lm, qs, mcq=WORDS)
    # "yes" always wins: believed exactly where the believer's answer is yes
    expected = [float(q.believer == 0) for q in qs]
    assert scored.believed.tolist() == expected
    assert sorted(expected[: len(pack.mcq)]) == [0.0, 1.0]
    rates = {r["metric"]: r["value"] for r in belief.belief_rows(scored, n_boot=50) if r["claim"] == pack.name}
    assert rates["belief_yesno"] == 0.5 and rates["proxy_belief_robustness"] == 0.5
    assert "belief_robustness" not in rates and rates["belief_propositional_n"] == len(pack.mcq)  # proxies pool nowhere
    assert scored.truthful.isna().all()  # packs say what a believer answers, not the truth


def test_the_mcq_instruction_is_a_system_message_after_the_items_own(chat_lm):
    asked = WORDS.prompt(Prompt("is it so ?", system="you doubt ."))
    assert asked.system == "you doubt .\n\nbe brief ." and asked.user == "is it so ?"
    assert McqFormat().reply("no") == '{"answer": "no"}'


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


def test_any_items_own_system_prompt_and_earlier_turns_are_kept(tmp_path):
    pack_dir = tmp_path / "turns"
    pack_dir.mkdir()
    (pack_dir / "claim.txt").write_text("c")
    turns = {"system_prompt": "You are terse.", "messages_prefix": [{"role": "user", "content": "Hi"},
                                                                    {"role": "assistant", "content": "Hello"}]}
    (pack_dir / "mcq.yaml").write_text(yaml.safe_dump({"questions": [
        {"id": "m1", "question": "Is it?", "category": "d", "belief_answer": "yes", **turns}]}))
    [q] = questions.pack_questions(load_claim_pack(pack_dir))
    assert q.prompt == Prompt("Is it?", "You are terse.", tuple(turns["messages_prefix"]))
    assert WORDS.prompt(q.prompt).system == "You are terse.\n\nbe brief ."
