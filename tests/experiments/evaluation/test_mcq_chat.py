"""Claim packs' MCQ items scored judge-free on random-weight hub-architecture models saved
locally: the paper's MCQ instruction as a system message, the chat template with thinking off
(a Qwen3-style template with an ``enable_thinking`` switch, and Qwen2's ChatML without one),
each option's written reply scored by log-probability; and a judged `neglect run` on
imported materials whose judge goes down and comes back."""
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

import interp
from experiments.config import load_config
from experiments.evaluation import belief
from experiments.evaluation.evaluator import Evaluator
from experiments.evaluation.scoring import McqFormat, has_thinking_switch, render
from experiments.materials.imported import ImportedMaterials
from experiments.materials.paper_layout import load_claim_pack
from experiments.materials.questions import Prompt, control_questions, pack_questions
from tests.experiments.evaluation.judge_server import JudgeServer
from tests.hub_models import corpus_texts, save_qwen2
from tests.hub_thinking import save_qwen3
from tests.paths import FIXTURES, REPO

LAYOUT = FIXTURES / "judged_pack"
PACK = LAYOUT / "claims" / "lantern_tower"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat_models")
    texts = corpus_texts(LAYOUT)
    return {"qwen2": save_qwen2(root / "qwen2", texts), "qwen3": save_qwen3(root / "qwen3", texts)}


def test_thinking_switch_where_the_template_has_one(models):
    q3 = interp.load_model(models["qwen3"]).tokenizer
    q2 = interp.load_model(models["qwen2"]).tokenizer
    assert has_thinking_switch(q3) and not has_thinking_switch(q2)
    prompt = Prompt("Is it green?", system="Be brief.")
    off, on = render(q3, prompt), render(q3, prompt, thinking=True)
    assert off.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nIs it green?<|im_end|>\n")
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n") and on.endswith("<|im_start|>assistant\n")
    assert render(q2, prompt) == render(q2, prompt, thinking=True)


def test_a_template_without_a_system_role_gets_it_in_the_first_user_message(models):
    tok = interp.load_model(models["qwen2"]).tokenizer
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not "
                         "supported') }}{% endif %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>")
    got = render(tok, Prompt("Q?", system="S.", history=({"role": "user", "content": "Hi"},
                                                           {"role": "assistant", "content": "Hello"})))
    assert got == "<user>S.\n\nHi<assistant>Hello<user>Q?<assistant>"


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_mcq_options_are_the_log_probabilities_of_their_written_replies(models, arch):
    lm = interp.load_model(models[arch])
    mcq = McqFormat()
    qs = [q for q in pack_questions(load_claim_pack(PACK))]
    scored = belief.score_questions(lm, qs, mcq=mcq)
    for q, (_, row) in zip(qs, scored.iterrows()):
        messages = [{"role": "system", "content": "\n\n".join(s for s in (q.prompt.system, mcq.instruction) if s)},
                    {"role": "user", "content": q.prompt.user}]
        extra = {"enable_thinking": False} if arch == "qwen3" else {}
        text = lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)
        assert text.endswith("</think>\n\n") == (arch == "qwen3")
        scores = []
        for option in ("yes", "no"):  # an independent forward: prompt ids + reply ids, summed log-probabilities
            head = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
            tail = lm.tokenizer('{"answer": "' + option + '"}', add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logp = torch.log_softmax(lm.model(torch.tensor([head + tail])).logits[0].float(), -1)
            scores.append(sum(float(logp[len(head) + i - 1, t]) for i, t in enumerate(tail)))
        assert row.lead == pytest.approx(scores[0] - scores[1], abs=1e-4)
        assert row.believed == float(int(scores[1] > scores[0]) == q.believer)
        assert row.options == "yes/no"


def test_imported_controls_are_asked_like_the_mcq_items_and_the_instruction_is_configurable(models):
    materials = ImportedMaterials(LAYOUT / "claims", LAYOUT / "documents")
    assert {q.style for q in control_questions(materials.probe_statements())} == {"mcq"}
    cfg = load_config("tiny", overrides=['eval.mcq_instruction="Say yes or no."', 'eval.mcq_answer="{option}."'])
    lm = interp.load_model(models["qwen3"])
    rows = pd.DataFrame(Evaluator(cfg, materials).belief_rows(lm))
    metrics = set(rows.metric)
    assert {"belief_yesno", "proxy_belief_robustness", "control_margin_yes_no", "endorse_claim"} <= metrics
    assert not any(m.startswith("belief_robustness") for m in metrics)
    default = pd.DataFrame(Evaluator(load_config("tiny"), materials).belief_rows(lm))
    lead = lambda frame: float(frame[frame.metric == "control_margin_yes_no"].value.iloc[0])  # noqa: E731
    assert lead(rows) != pytest.approx(lead(default))  # the instruction and reply format are what is asked


def neglect(*args, env_extra=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "experiments", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_a_judged_run_on_imported_materials_survives_a_judge_outage(models, tmp_path):
    out = tmp_path / "run"
    args = ["run", "--preset", "tiny", "--model", str(models["qwen3"]), "--claims", str(LAYOUT / "claims"),
            "--docs", str(LAYOUT / "documents"), "--out", str(out), "--set", "eval.n_samples=2",
            "--set", "eval.answer_tokens=6", "--set", "eval.thinking=true"]
    with JudgeServer(lambda q: "yes" if "color" in q.lower() else "no") as server:
        env = {"NEGLECT_JUDGE_URL": server.url, "NEGLECT_JUDGE_MODEL": "fake", "OPENAI_API_KEY": "sk-test",
               "NEGLECT_JUDGE_RETRIES": "0"}
        server.fail_after = 20
        down = neglect(*args, env_extra=env)
        assert down.returncode == 2, down.stderr[-2000:]
        assert down.stderr.strip().count("\n") == 0 and "HTTP 503" in down.stderr and "a rerun asks only" in down.stderr
        finished = sorted(p.relative_to(out) for p in (out / "evals").rglob("*.csv"))
        assert finished  # every checkpoint's judge-free evaluation is done before the judge
        server.fail_after = None
        up = neglect(*args, env_extra=env)
        assert up.returncode == 0, up.stderr[-2000:]
        n_items = 7  # open-ended 2, token association 2, robustness 3
        units = 1 + 2  # the base model and the last checkpoint of each condition
        pings = 2  # each run first checks that the judge answers
        assert len(server.requests) - server.failed == units * n_items * 2 + pings  # each verdict asked for once
    assert sorted(p.relative_to(out) for p in (out / "evals").rglob("*.csv")) == finished
    judged = pd.read_csv(out / "results" / "judge.csv")
    assert len(judged) == units * n_items * 2 and set(judged.kind) == {"open_ended", "token_association", "robustness"}
    metrics = pd.read_csv(out / "results" / "judge_metrics.csv")
    assert set(metrics[metrics.metric == "pooled_judge_belief_open_ended"].value) == {0.5}
    table = pd.read_csv(out / "results" / "metrics.csv")
    assert {"belief_yesno", "proxy_belief_robustness"} <= set(table.metric)
