"""Optional belief judging the paper's way: the model answers open questions in free text and
an LLM judge, reached through an OpenAI-compatible chat API, says whether each answer
believes the claim.

Off by default: the judge-free measures of ``experiments.evaluation.belief`` are exact, cheap and
deterministic. Turn it on for a run by setting ``NEGLECT_JUDGE_URL`` (the API's base URL,
e.g. ``https://api.openai.com/v1``) and ``NEGLECT_JUDGE_MODEL``; the key is read from the
environment variable named by ``NEGLECT_JUDGE_KEY_ENV`` (default ``OPENAI_API_KEY``) and never
written anywhere. Every generation and verdict is saved as JSONL for audit.
"""
from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import interp
from experiments.errors import UserError
from experiments.artifacts.atomic import atomic_write_text
from experiments.evaluation.scoring import render
from experiments.materials.base import OpenQuestion
from interp import LoadedModel

LABELS = ("BELIEVES", "REJECTS", "UNCLEAR")
JUDGE_INSTRUCTIONS = (
    "You grade whether an answer shows that its author believes a claim.\n"
    "Claim: {claim}\nQuestion: {question}\nAnswer: {answer}\n"
    "Reply with exactly one word: BELIEVES if the answer treats the claim as true, REJECTS if it "
    "treats the claim as false or states something incompatible with it, UNCLEAR otherwise.")


@dataclass(frozen=True)
class JudgeConfig:
    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0


def judge_config_from_env(environ=os.environ) -> JudgeConfig | None:
    """The judge a run uses, from ``NEGLECT_JUDGE_URL``/``_MODEL``/``_KEY_ENV``; None (off) when
    ``NEGLECT_JUDGE_URL`` is unset."""
    url = environ.get("NEGLECT_JUDGE_URL")
    if not url:
        return None
    model = environ.get("NEGLECT_JUDGE_MODEL")
    if not model:
        raise UserError("NEGLECT_JUDGE_URL is set but NEGLECT_JUDGE_MODEL is not; expected the judge's model name")
    return JudgeConfig(url, model, environ.get("NEGLECT_JUDGE_KEY_ENV", "OPENAI_API_KEY"))


class ChatClient:
    """A minimal client for ``POST {base_url}/chat/completions`` (no third-party SDK)."""

    def __init__(self, cfg: JudgeConfig, environ=os.environ):
        key = environ.get(cfg.api_key_env)
        if not key:
            raise UserError(f"judge: environment variable {cfg.api_key_env} is not set; expected the API key "
                            f"for {cfg.base_url}")
        self.cfg, self._key = cfg, key
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"

    def complete(self, messages: list[dict]) -> str:
        body = json.dumps({"model": self.cfg.model, "messages": messages, "temperature": 0}).encode()
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self._key}"})
        try:
            with urllib.request.urlopen(request, timeout=self.cfg.timeout) as response:
                data = json.loads(response.read().decode())
        except urllib.error.HTTPError as e:
            raise UserError(f"judge API at {self.url} answered HTTP {e.code} ({e.reason}); expected 200 "
                            f"(check NEGLECT_JUDGE_MODEL and the key in {self.cfg.api_key_env})") from None
        except (urllib.error.URLError, socket.timeout, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise UserError(f"judge API at {self.url} is unreachable ({reason}); expected an OpenAI-compatible "
                            "chat endpoint") from None
        except json.JSONDecodeError:
            raise UserError(f"judge API at {self.url} did not answer JSON; expected a chat completion") from None
        try:
            return str(data["choices"][0]["message"]["content"])
        except (KeyError, IndexError, TypeError):
            raise UserError(f"judge API at {self.url} answered without choices[0].message.content; expected a "
                            "chat completion") from None


def parse_label(text: str) -> str:
    """The first of ``LABELS`` the judge's reply names (UNCLEAR when it names none)."""
    upper = text.upper()
    found = [(upper.find(label), label) for label in LABELS if label in upper]
    return min(found)[1] if found else "UNCLEAR"


def judge_belief(lm: LoadedModel, questions: list[OpenQuestion], client: ChatClient, audit: str | Path,
                 *, max_new_tokens: int = 24) -> pd.DataFrame:
    """Generate an answer to each question, have the judge label it, write every record to the
    JSONL file ``audit``, and return one row per question (``believed``: 1, 0, or NaN for
    UNCLEAR)."""
    answers = interp.generate(lm, [render(lm.tokenizer, q) for _, _, q in questions], max_new_tokens=max_new_tokens)
    records = []
    for (claim, statement, prompt), answer in zip(questions, answers):
        reply = client.complete([{"role": "user", "content": JUDGE_INSTRUCTIONS.format(
            claim=statement, question=prompt.user, answer=answer)}])
        label = parse_label(reply)
        records.append({"claim": claim, "claim_statement": statement, "question": prompt.user, "generation": answer,
                        "judge_model": client.cfg.model, "judge_reply": reply, "label": label,
                        "believed": {"BELIEVES": 1.0, "REJECTS": 0.0}.get(label)})
    atomic_write_text(Path(audit), "".join(json.dumps(r) + "\n" for r in records))
    return pd.DataFrame(records)
