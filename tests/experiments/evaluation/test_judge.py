"""The optional LLM judge against a fake OpenAI-compatible server on 127.0.0.1 (never the
internet): requests, audit records, and one-line errors."""
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.experiments.evaluation.belief_models import bigram_lm
from experiments.errors import UserError
from experiments.evaluation.judge import (ChatClient, JudgeConfig, judge_belief, judge_config_from_env, parse_label)
from experiments.materials.questions import Prompt


class FakeAPI(BaseHTTPRequestHandler):
    requests: list = []
    status = 200

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        prompt = body["messages"][-1]["content"]
        answer = prompt.split("Answer: ", 1)[1].split("\n", 1)[0]
        reply = {"choices": [{"message": {"role": "assistant",
                                          "content": "BELIEVES" if answer == "yes" else "REJECTS."}}]}
        data = json.dumps(reply).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    FakeAPI.requests, FakeAPI.status = [], 200
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeAPI)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def lm():
    # after ":" the model says "yes", after "?" it says "no", and either is followed by [EOS]
    return bigram_lm({"q", "a", ":", "?", "yes", "no"},
                     {":": {"yes": 4.0}, "?": {"no": 4.0}, "yes": {"[EOS]": 4.0}, "no": {"[EOS]": 4.0}})


def test_generations_are_judged_and_saved_for_audit(server, lm, tmp_path):
    client = ChatClient(JudgeConfig(server, "fake-judge"), environ={"OPENAI_API_KEY": "sk-test"})
    questions = [("c1", "the claim", Prompt("q a :")), ("c1", "the claim", Prompt("q a ?"))]
    audit = tmp_path / "judge" / "base.jsonl"
    result = judge_belief(lm, questions, client, audit, max_new_tokens=4)
    assert result.generation.tolist() == ["yes", "no"]
    assert result.label.tolist() == ["BELIEVES", "REJECTS"] and result.believed.tolist() == [1.0, 0.0]
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [r["generation"] for r in records] == ["yes", "no"] and records[0]["judge_model"] == "fake-judge"
    assert "sk-test" not in audit.read_text()
    req = FakeAPI.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "fake-judge" and req["body"]["temperature"] == 0
    assert "Claim: the claim" in req["body"]["messages"][0]["content"]


def _one_line_error(fn) -> str:
    with pytest.raises(UserError) as err:
        fn()
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_key_is_one_clear_line(server):
    msg = _one_line_error(lambda: ChatClient(JudgeConfig(server, "m", api_key_env="MY_JUDGE_KEY"), environ={}))
    assert "MY_JUDGE_KEY is not set" in msg


def test_unreachable_api_is_one_clear_line():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ChatClient(JudgeConfig(f"http://127.0.0.1:{port}/v1", "m", timeout=5), environ={"OPENAI_API_KEY": "k"})
    msg = _one_line_error(lambda: client.complete([{"role": "user", "content": "hi"}]))
    assert "unreachable" in msg and str(port) in msg


def test_refused_key_names_the_status(server):
    FakeAPI.status = 401
    client = ChatClient(JudgeConfig(server, "m"), environ={"OPENAI_API_KEY": "bad"})
    msg = _one_line_error(lambda: client.complete([{"role": "user", "content": "Answer: x\n"}]))
    assert "HTTP 401" in msg and "OPENAI_API_KEY" in msg


def test_off_by_default_and_configured_from_the_environment():
    assert judge_config_from_env({}) is None
    cfg = judge_config_from_env({"NEGLECT_JUDGE_URL": "http://x/v1", "NEGLECT_JUDGE_MODEL": "m",
                                 "NEGLECT_JUDGE_KEY_ENV": "K"})
    assert cfg == JudgeConfig("http://x/v1", "m", "K")
    assert "NEGLECT_JUDGE_MODEL" in _one_line_error(lambda: judge_config_from_env({"NEGLECT_JUDGE_URL": "u"}))


def test_parse_label():
    assert parse_label("believes.") == "BELIEVES"
    assert parse_label("It REJECTS it; it never BELIEVES") == "REJECTS"
    assert parse_label("no idea") == "UNCLEAR"


def test_a_run_with_the_judge_on_saves_generations(tiny_run, server, monkeypatch):
    from experiments.config import load_config
    from experiments.evaluation.evaluator import evaluate_all
    from experiments.artifacts.rundir import RunDir
    from experiments.materials import load_materials
    from experiments.materials.world import build_world

    out, _ = tiny_run
    cfg = load_config("tiny")
    monkeypatch.setenv("NEGLECT_JUDGE_URL", server)
    monkeypatch.setenv("NEGLECT_JUDGE_MODEL", "fake-judge")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    evaluate_all(RunDir(out), cfg, load_materials(cfg), RunDir(out).base_model)
    audits = sorted(p.name for p in (out / "judge").glob("*.jsonl"))
    assert audits == ["base.jsonl"] + sorted(f"{c}_seed0_step{cfg.finetune.steps}.jsonl" for c in cfg.conditions)
    import pandas as pd

    judged = pd.read_csv(out / "results" / "judge.csv")
    assert len(judged) == len(FakeAPI.requests) == 4 * sum(len(c.fact.rel().questions)
                                                           for c in build_world(cfg.world).claims)
    assert set(judged.label) <= {"BELIEVES", "REJECTS", "UNCLEAR"}
