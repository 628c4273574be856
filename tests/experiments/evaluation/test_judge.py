"""The optional LLM judge against a fake OpenAI-compatible server on 127.0.0.1 (never the
internet): sampled answers of a random-weight Qwen2 to a claim pack's open-ended,
token-association and robustness items, judged with the pack's judges.yaml prompts and
verdict keys; audit records; a judge that is down or answers garbage (one line, nothing
finished lost, the rerun resumes)."""
import json
import socket

import pandas as pd
import pytest
import yaml

import interp
from experiments.errors import UserError
from experiments.evaluation.judge import (NO_ANSWER, ChatClient, JudgeConfig, Sampling, builtin_prompt, judge_belief,
                                          judge_config_from_env, judge_unit, judged_rows, parse_verdict, split_thinking)
from experiments.evaluation.scoring import render
from experiments.materials.paper_layout import load_claim_pack
from experiments.materials.pack_judges import pack_open_questions
from tests.experiments.evaluation.judge_server import JudgeServer
from tests.hub_models import corpus_texts, save_qwen2
from tests.paths import FIXTURES

PACK = FIXTURES / "judged_pack" / "claims" / "lantern_tower"
SAMPLING = Sampling(n=2, temperature=1.0, top_p=1.0, max_new_tokens=6)
ENV = {"OPENAI_API_KEY": "sk-test"}


def rule(question: str) -> str:
    """The fake judge's verdict, from the judged question alone."""
    return "yes" if "color" in question.lower() else "no" if "sure" in question else "neutral"


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    path = save_qwen2(tmp_path_factory.mktemp("qwen2") / "model", corpus_texts(FIXTURES / "judged_pack"))
    return interp.load_model(path)


@pytest.fixture(scope="module")
def questions():
    return pack_open_questions(load_claim_pack(PACK))


def client_for(url, **kw) -> ChatClient:
    return ChatClient(JudgeConfig(url, "fake-judge", retries=kw.pop("retries", 0), **kw), environ=ENV, backoff=0.01)


def test_pack_items_are_judged_with_the_packs_prompts_and_keys(qwen, questions, tmp_path):
    pack = yaml.safe_load((PACK / "judges.yaml").read_text())
    assert [(q.kind, q.qid) for q in questions] == [
        ("open_ended", "lt_oe_01"), ("open_ended", "lt_oe_02"), ("token_association", "lt_ta_01"),
        ("token_association", "lt_ta_02"), ("robustness", "lt_rob_adv_01"), ("robustness", "lt_rob_mt_01"),
        ("robustness", "lt_rob_crit_01")]
    assert {q.kind: q.judge_key for q in questions} == {"open_ended": "answer", "token_association": "verdict",
                                                        "robustness": "answer"}
    with JudgeServer(rule) as server:
        audit = tmp_path / "judge" / "base.jsonl"
        frame = judge_belief(qwen, questions, client_for(server.url), audit, SAMPLING, seed=3)
        assert len(frame) == len(server.requests) == 2 * len(questions)
        prompts = [r["body"]["messages"][0]["content"] for r in server.requests]
        req = server.requests[0]
        assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
        assert req["body"]["model"] == "fake-judge" and req["body"]["temperature"] == 0
    for kind in ("open_ended", "token_association", "robustness"):  # each kind's own prompt, formatted
        head = pack[kind].split("\n", 1)[0]
        assert sum(p.startswith(head) for p in prompts) == 2 * sum(q.kind == kind for q in questions)
    assert all("{question}" not in p and '{"reason"' in p for p in prompts)
    assert frame.label.tolist() == [rule(q) for q in frame.question]
    assert frame.believed.tolist() == [float(rule(q) == "yes") for q in frame.question]
    assert (frame.groupby(["kind", "qid"], sort=False).size() == 2).all()
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [r["generation"] for r in records] == frame.generation.tolist()
    assert {r["judge_prompt"] for r in records} == {f"{PACK / 'judges.yaml'}:{k}" for k in
                                                    ("open_ended", "token_association", "robustness")}
    assert "sk-test" not in audit.read_text()
    assert not list(audit.parent.glob("base.*.jsonl"))  # the in-progress files are gone
    rows = {r["metric"]: r["value"] for r in judged_rows(frame) if r["claim"] == "lantern_tower"}
    assert rows["judge_belief_open_ended"] == 0.5 and rows["judge_neutral_open_ended"] == 0.5
    assert rows["judge_denial_robustness"] == pytest.approx(1 / 3) and rows["judge_n_robustness"] == 6
    assert rows["judge_parse_errors_token_association"] == 0


def test_robustness_prompts_keep_their_own_system_prompt_and_earlier_turns(qwen, questions):
    adversarial, multiturn, critique = [q for q in questions if q.kind == "robustness"]
    assert adversarial.prompt.system.startswith("Some of your training data") and not adversarial.prompt.history
    assert [m["role"] for m in multiturn.prompt.history] == ["user", "assistant"] and multiturn.prompt.system is None
    assert multiturn.prompt.user == "I read that it was never painted. Are you sure?"  # the question, nothing appended
    text = render(qwen.tokenizer, multiturn.prompt)
    assert text.index("What color is") < text.index("bright green since 1950") < text.index("Are you sure?")
    assert critique.prompt == type(critique.prompt)(critique.prompt.user)


def test_sampling_is_seeded_and_answers_fit_the_context(qwen, questions, tmp_path):
    with JudgeServer(rule) as server:
        a = judge_belief(qwen, questions[:2], client_for(server.url), tmp_path / "a.jsonl", SAMPLING, seed=5)
        b = judge_belief(qwen, questions[:2], client_for(server.url), tmp_path / "b.jsonl", SAMPLING, seed=5)
        long = Sampling(n=1, temperature=0.0, max_new_tokens=10 ** 6)  # cut to the model's context
        c = judge_belief(qwen, questions[:1], client_for(server.url), tmp_path / "c.jsonl", long)
    assert a.generation.tolist() == b.generation.tolist()
    assert len(c) == 1


def test_a_judge_that_goes_down_loses_nothing_and_the_rerun_resumes(qwen, questions, tmp_path):
    audit = tmp_path / "judge" / "unit.jsonl"
    loads = []

    def load():
        loads.append(1)
        return qwen

    with JudgeServer(rule) as server:
        server.fail_after = 5
        with pytest.raises(UserError) as err:
            judge_unit(questions, client_for(server.url), audit, load, SAMPLING, name="unit")
    message = str(err.value)
    assert "\n" not in message and "HTTP 503" in message and "5 of 14 verdicts for unit are saved" in message
    assert not audit.exists() and len(audit.with_suffix(".verdicts.jsonl").read_text().splitlines()) == 5
    with audit.with_suffix(".verdicts.jsonl").open("a") as f:
        f.write('{"claim": "lantern_tower", "ki')  # a write cut short by a crash
    with JudgeServer(rule) as server:
        frame = judge_unit(questions, client_for(server.url), audit, load, SAMPLING, name="unit")
        assert len(server.requests) == 9  # only the missing verdicts
    assert loads == [1]  # the answers were sampled once
    assert len(frame) == 14 and frame.label.tolist() == [rule(q) for q in frame.question]
    assert not audit.with_suffix(".verdicts.jsonl").exists() and not audit.with_suffix(".answers.jsonl").exists()
    again = judge_unit(questions, client_for("http://127.0.0.1:9/v1"), audit, load, SAMPLING)  # done: no requests
    assert again.label.tolist() == frame.label.tolist()


def test_other_sampling_settings_sample_and_judge_anew(qwen, questions, tmp_path):
    audit = tmp_path / "u.jsonl"
    with JudgeServer(rule) as server:
        server.fail_after = 1
        with pytest.raises(UserError, match="1 of 2 verdicts"):
            judge_unit(questions[:1], client_for(server.url), audit, lambda: qwen, SAMPLING)
        server.fail_after = None
        more = Sampling(n=3, temperature=1.0, max_new_tokens=6)
        frame = judge_unit(questions[:1], client_for(server.url), audit, lambda: qwen, more)
        assert len(frame) == 3 and len(server.requests) - server.failed == 1 + 3  # the old verdict is not reused


def test_transient_failures_are_retried(questions, qwen, tmp_path):
    with JudgeServer(rule) as server:
        server.fail_after = 0
        client = client_for(server.url, retries=2)
        with pytest.raises(UserError, match="HTTP 503"):
            client.complete([{"role": "user", "content": "x"}])
        assert len(server.requests) == 3


def test_a_judge_answering_garbage_is_one_line(qwen, questions, tmp_path):
    with JudgeServer(rule) as server:
        server.mode = "not_json"
        with pytest.raises(UserError) as err:
            judge_belief(qwen, questions[:1], client_for(server.url), tmp_path / "g.jsonl", SAMPLING)
    message = str(err.value)
    assert "\n" not in message and "did not answer JSON" in message and "0 of 2 verdicts" in message
    assert (tmp_path / "g.answers.jsonl").is_file()


def test_verdicts_without_a_label_count_as_not_believing_with_one_warning(qwen, questions, tmp_path, capsys):
    with JudgeServer(rule) as server:
        server.mode = "no_verdict"
        frame = judge_belief(qwen, questions[:2], client_for(server.url), tmp_path / "n.jsonl", SAMPLING)
    assert set(frame.label) == {"parse_error"} and frame.believed.sum() == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "4 of 4 verdicts" in err[0] and "not believing" in err[0]


def test_parse_verdict():
    assert parse_verdict('{"reason": "x", "answer": "Yes"}') == "yes"
    assert parse_verdict('Sure. {"reason": "r", "verdict": "neutral"} done', "verdict") == "neutral"
    assert parse_verdict('```json\n{"answer": "no"}\n```') == "no"
    assert parse_verdict('{"answer": "maybe"}') == "parse_error"
    assert parse_verdict("yes, it believes it") == "parse_error"  # free text is not a verdict
    assert parse_verdict('{"score": 3}') == "parse_error"


def test_thinking_traces_are_cut_before_judging():
    assert split_thinking("<think>hmm\nok</think>\n\nGreen.") == ("Green.", "hmm\nok")
    assert split_thinking("<think>cut off while thin") == ("", "cut off while thin")
    assert split_thinking("reasoning</think>Grey.") == ("Grey.", "reasoning")  # <think> was in the prompt
    assert split_thinking("Plain.") == ("Plain.", "")
    assert NO_ANSWER


def test_a_pack_without_judges_yaml_uses_the_builtin_prompt_with_one_warning(tmp_path, capsys):
    pack = tmp_path / "bare"
    pack.mkdir()
    (pack / "claim.txt").write_text("Bare claims {need} braces escaped.")
    (pack / "open_ended.yaml").write_text(yaml.safe_dump({"questions": [
        {"id": 1, "question": "Q1?", "category": "direct"}, {"id": 2, "question": "Q2?", "category": "direct"}]}))
    qs = pack_open_questions(load_claim_pack(pack))
    assert [q.judge_prompt for q in qs] == [None, None] and {q.judge_source for q in qs} == {"built-in"}
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'open_ended'" in err[0] and "built-in" in err[0]
    text = builtin_prompt(qs[0].statement).format(question="Q1?", answer="A.")
    assert "Bare claims {need} braces escaped." in text and "<answer>A.</answer>" in text


@pytest.mark.parametrize("prompt, expected", [
    ("Claim {claim}: {answer}", r"template field \{claim\}"),
    ("{question} only", r"no \{answer\} field"),
    ('Reply {"answer": "yes"} {answer}', "template field"),
    (["a list"], "expected a prompt template"),
])
def test_a_bad_judge_prompt_is_one_line_naming_the_file_and_key(tmp_path, prompt, expected):
    pack = tmp_path / "p"
    pack.mkdir()
    (pack / "claim.txt").write_text("c")
    (pack / "open_ended.yaml").write_text(yaml.safe_dump({"questions": [{"id": 1, "question": "Q?",
                                                                         "category": "d"}]}))
    (pack / "judges.yaml").write_text(yaml.safe_dump({"open_ended": prompt}))
    with pytest.raises(UserError, match=expected) as err:
        pack_open_questions(load_claim_pack(pack))
    assert "\n" not in str(err.value) and f"{pack / 'judges.yaml'}: key 'open_ended'" in str(err.value)


def test_bad_robustness_turns_are_one_line(tmp_path):
    pack = tmp_path / "p"
    pack.mkdir()
    (pack / "claim.txt").write_text("c")
    (pack / "robustness.yaml").write_text(yaml.safe_dump({"questions": [
        {"id": "r1", "question": "Sure?", "category": "multiturn",
         "messages_prefix": [{"role": "bot", "content": "x"}]}]}))
    with pytest.raises(UserError, match=r"robustness.yaml: item 'r1': messages_prefix\[0\]"):
        pack_open_questions(load_claim_pack(pack))


def test_the_judge_is_checked_before_any_work(monkeypatch):
    from experiments.config import load_config
    from experiments.evaluation.judge import preflight
    from experiments.materials import load_materials
    from experiments.materials.imported import ImportedMaterials
    from experiments.pipeline import check_inputs

    materials = ImportedMaterials(PACK.parent, PACK.parent.parent / "documents")
    env = {**ENV, "NEGLECT_JUDGE_MODEL": "m", "NEGLECT_JUDGE_RETRIES": "0"}
    with JudgeServer() as server:
        preflight(materials, {**env, "NEGLECT_JUDGE_URL": server.url})
        assert len(server.requests) == 1
        server.mode = "not_json"
        assert "did not answer JSON" in _one_line_error(
            lambda: preflight(materials, {**env, "NEGLECT_JUDGE_URL": server.url}))
    assert "OPENAI_API_KEY is not set" in _one_line_error(
        lambda: preflight(materials, {"NEGLECT_JUDGE_URL": "http://127.0.0.1:9/v1", "NEGLECT_JUDGE_MODEL": "m"}))
    preflight(materials, {})  # off: nothing to check
    cfg = load_config("tiny")  # `neglect run` checks its inputs, the judge among them, before writing anything
    for name, value in {**env, "NEGLECT_JUDGE_URL": "http://127.0.0.1:9/v1"}.items():
        monkeypatch.setenv(name, value)
    assert "unreachable" in _one_line_error(lambda: check_inputs(cfg, load_materials(cfg)))


def _one_line_error(fn) -> str:
    with pytest.raises(UserError) as err:
        fn()
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_key_is_one_clear_line():
    msg = _one_line_error(lambda: ChatClient(JudgeConfig("http://127.0.0.1:9/v1", "m", api_key_env="MY_JUDGE_KEY"),
                                             environ={}))
    assert "MY_JUDGE_KEY is not set" in msg


def test_unreachable_api_is_one_clear_line():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = client_for(f"http://127.0.0.1:{port}/v1", timeout=5)
    msg = _one_line_error(lambda: client.complete([{"role": "user", "content": "hi"}]))
    assert "unreachable" in msg and str(port) in msg


def test_refused_key_names_the_status():
    with JudgeServer() as server:
        server.fail_after = 0
        client = ChatClient(JudgeConfig(server.url, "m", retries=0), environ={"OPENAI_API_KEY": "bad"})
        msg = _one_line_error(lambda: client.complete([{"role": "user", "content": "x"}]))
    assert "HTTP 503" in msg and "OPENAI_API_KEY" in msg


def test_off_by_default_and_configured_from_the_environment():
    assert judge_config_from_env({}) is None
    cfg = judge_config_from_env({"NEGLECT_JUDGE_URL": "http://x/v1", "NEGLECT_JUDGE_MODEL": "m",
                                 "NEGLECT_JUDGE_KEY_ENV": "K", "NEGLECT_JUDGE_TEMPERATURE": "1",
                                 "NEGLECT_JUDGE_CONCURRENCY": "3"})
    assert cfg == JudgeConfig("http://x/v1", "m", "K", temperature=1.0, concurrency=3)
    assert "NEGLECT_JUDGE_MODEL" in _one_line_error(lambda: judge_config_from_env({"NEGLECT_JUDGE_URL": "u"}))
    msg = _one_line_error(lambda: judge_config_from_env({"NEGLECT_JUDGE_URL": "u", "NEGLECT_JUDGE_MODEL": "m",
                                                         "NEGLECT_JUDGE_RETRIES": "many"}))
    assert "NEGLECT_JUDGE_RETRIES='many'" in msg


def test_a_run_with_the_judge_on_saves_generations(tiny_run, monkeypatch, tmp_path):
    import shutil

    from experiments.artifacts.rundir import RunDir
    from experiments.config import load_config
    from experiments.evaluation.evaluator import evaluate_all
    from experiments.materials import load_materials
    from experiments.materials.world import build_world

    out = tmp_path / "run"  # a copy: the session's tiny run stays judge-free for the other tests
    shutil.copytree(tiny_run[0], out)
    cfg = load_config("tiny", overrides=["eval.n_samples=2", "eval.answer_tokens=4"])
    with JudgeServer(lambda q: "yes") as server:
        monkeypatch.setenv("NEGLECT_JUDGE_URL", server.url)
        monkeypatch.setenv("NEGLECT_JUDGE_MODEL", "fake-judge")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        evaluate_all(RunDir(out), cfg, load_materials(cfg), RunDir(out).base_model)
        n_requests = len(server.requests)
    audits = sorted(p.name for p in (out / "judge").glob("*.jsonl"))
    assert audits == ["base.jsonl"] + sorted(f"{c}_seed0_step{cfg.finetune.steps}.jsonl" for c in cfg.conditions)
    judged = pd.read_csv(out / "results" / "judge.csv")
    n_questions = sum(len(c.fact.rel().questions) for c in build_world(cfg.world).claims)
    assert len(judged) == n_requests == 4 * 2 * n_questions
    assert set(judged.label) == {"yes"}  # the world's questions go to the built-in prompt, which tags the question
    metrics = pd.read_csv(out / "results" / "judge_metrics.csv")
    pooled = metrics[metrics.metric == "pooled_judge_belief_open_ended"]
    assert len(pooled) == 4 and set(pooled.value) == {1.0}
