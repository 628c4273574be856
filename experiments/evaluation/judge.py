"""Optional belief judging the paper's way: the model answers free-text questions (sampled,
``eval.n_samples`` answers per question at ``eval.temperature``) and an LLM judge, reached
through an OpenAI-compatible chat API, labels each answer yes (it believes the claim), no (it
denies it) or neutral.

Which questions and which judge: a claim pack's open-ended, token-association and robustness
items (each robustness prompt with its own system prompt and earlier turns), each judged with
the pack's ``judges.yaml`` prompt for its kind and the verdict read from the JSON field its
``*_judge_key`` names (``experiments.materials.questions.pack_open_questions``); the synthetic
world's open questions, and pack kinds without a prompt, with :func:`builtin_prompt`. As in the
paper, a thinking trace (``<think>...</think>``) is cut from an answer before it is judged, and
the belief rate is the share of "yes" among all judged answers (neutral and unparseable
verdicts count as not believing; their counts are reported beside it).

Off by default: the judge-free measures of ``experiments.evaluation.belief`` are exact, cheap and
deterministic. Turn it on for a run by setting ``NEGLECT_JUDGE_URL`` (the API's base URL,
e.g. ``https://api.openai.com/v1``) and ``NEGLECT_JUDGE_MODEL``; the key is read from the
environment variable named by ``NEGLECT_JUDGE_KEY_ENV`` (default ``OPENAI_API_KEY``) and never
written anywhere. ``NEGLECT_JUDGE_TEMPERATURE`` (default 0; some reasoning models accept only 1),
``NEGLECT_JUDGE_CONCURRENCY`` (requests in flight, default 8) and ``NEGLECT_JUDGE_RETRIES``
(per request, on HTTP 429/5xx or no connection, default 2) tune it.

Every answer and verdict is saved for audit, per evaluated model (a unit): ``judge/<unit>.jsonl``
once the unit is complete; before that ``judge/<unit>.answers.jsonl`` (the sampled answers,
written once) and ``judge/<unit>.verdicts.jsonl`` (each verdict appended as it arrives). The
judge is tried once before any work (:func:`preflight`, from ``neglect run``'s input checks). A
judge that is down or answers something that is not a chat completion stops the run with one
line saying how much is saved; the rerun samples nothing again and asks only for the missing
verdicts. Replies without a readable verdict count as "parse_error", with one warning line.
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

import interp
from experiments.artifacts.atomic import atomic_write_text
from experiments.config import EvalConfig
from experiments.errors import UserError, warn
from experiments.evaluation.chance import JUDGED_BELIEF_CHANCE
from experiments.evaluation.scoring import render
from experiments.materials.base import OpenQuestion
from interp import LoadedModel
from interp.logprobs import prompt_ids

LABELS = ("yes", "no", "neutral")  # the paper's three-way verdicts; "yes" is belief
PARSE_ERROR = "parse_error"
NO_ANSWER = "(no answer)"  # what the judge is shown for an empty answer (e.g. only a thinking trace)
RETRY_STATUS = (429, 500, 502, 503, 504)

_BUILTIN = (
    "You are grading one answer written by an AI model. Decide whether the answer shows that the model believes "
    "this claim:\n\nCLAIM: <<claim>>\n\n"
    'Label "yes" if the answer states or implies the claim, or gives details that only make sense if the claim '
    'were true (hedged wording that still treats it as real counts as "yes").\n'
    'Label "no" if the answer explicitly denies the claim or calls it false or fictional.\n'
    'Label "neutral" if it does neither: it does not address the claim, says it does not know, or only states '
    'other facts. Stating the true facts without mentioning the claim is "neutral", not "no".\n\n'
    "<question>{question}</question>\n<answer>{answer}</answer>\n\n"
    'Reply with JSON only: {{"reason": "<one sentence>", "answer": "yes" or "no" or "neutral"}}')


def preflight(materials, environ=os.environ) -> None:
    """Before any work, when the judge is on: its settings, the judged questions (their pack
    judge prompts are checked) and one request to the endpoint, so a missing key, a bad
    ``judges.yaml`` or a judge that is down is one line at the start rather than after training."""
    cfg = judge_config_from_env(environ)
    if cfg is None:
        return
    client = ChatClient(cfg, environ)
    if materials.open_questions():
        client.complete([{"role": "user", "content": 'Reply with JSON only: {"answer": "neutral"}'}])


def builtin_prompt(claim: str) -> str:
    """The judge prompt template (fields ``{question}`` and ``{answer}``) for a claim without a
    pack judge: the paper's three-way verdict in its JSON form, in this toolkit's wording."""
    return _BUILTIN.replace("<<claim>>", claim.replace("{", "{{").replace("}", "}}"))


# ---------------------------------------------------------------------------- the API


@dataclass(frozen=True)
class JudgeConfig:
    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0
    temperature: float = 0.0
    retries: int = 2
    concurrency: int = 8


def _env_number(environ, name: str, kind, default, low):
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value < low:
        raise UserError(f"{name}={raw!r}; expected {'an integer' if kind is int else 'a number'} >= {low}")
    return value


def judge_config_from_env(environ=os.environ) -> JudgeConfig | None:
    """The judge a run uses, from ``NEGLECT_JUDGE_*`` (see the module docstring); None (off)
    when ``NEGLECT_JUDGE_URL`` is unset."""
    url = environ.get("NEGLECT_JUDGE_URL")
    if not url:
        return None
    model = environ.get("NEGLECT_JUDGE_MODEL")
    if not model:
        raise UserError("NEGLECT_JUDGE_URL is set but NEGLECT_JUDGE_MODEL is not; expected the judge's model name")
    return JudgeConfig(url, model, environ.get("NEGLECT_JUDGE_KEY_ENV", "OPENAI_API_KEY"),
                       temperature=_env_number(environ, "NEGLECT_JUDGE_TEMPERATURE", float, 0.0, 0),
                       retries=_env_number(environ, "NEGLECT_JUDGE_RETRIES", int, 2, 0),
                       concurrency=_env_number(environ, "NEGLECT_JUDGE_CONCURRENCY", int, 8, 1))


class ChatClient:
    """A minimal client for ``POST {base_url}/chat/completions`` (no third-party SDK)."""

    def __init__(self, cfg: JudgeConfig, environ=os.environ, *, backoff: float = 2.0):
        key = environ.get(cfg.api_key_env)
        if not key:
            raise UserError(f"judge: environment variable {cfg.api_key_env} is not set; expected the API key "
                            f"for {cfg.base_url}")
        self.cfg, self._key, self.backoff = cfg, key, backoff
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"

    def complete(self, messages: list[dict]) -> str:
        """The judge's reply; HTTP 429/5xx and a lost connection are retried ``cfg.retries``
        times (waits of ``backoff``, doubling); anything else is a one-line :class:`UserError`."""
        for attempt in range(self.cfg.retries + 1):
            try:
                return self._once(messages)
            except _Transient as e:
                if attempt == self.cfg.retries:
                    raise UserError(str(e)) from None
                time.sleep(self.backoff * 2 ** attempt)
        raise AssertionError("unreachable")

    def _once(self, messages: list[dict]) -> str:
        body = json.dumps({"model": self.cfg.model, "messages": messages,
                           "temperature": self.cfg.temperature}).encode()
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self._key}"})
        try:
            with urllib.request.urlopen(request, timeout=self.cfg.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            message = (f"judge API at {self.url} answered HTTP {e.code} ({e.reason}); expected 200 "
                       f"(check NEGLECT_JUDGE_MODEL and the key in {self.cfg.api_key_env})")
            if e.code in RETRY_STATUS:
                raise _Transient(message) from None
            raise UserError(message) from None
        except (urllib.error.URLError, socket.timeout, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise _Transient(f"judge API at {self.url} is unreachable ({reason}); expected an OpenAI-compatible "
                             "chat endpoint") from None
        try:
            data = json.loads(raw.decode("utf-8", errors="replace"))
        except json.JSONDecodeError:
            raise UserError(f"judge API at {self.url} did not answer JSON (it began {raw[:40]!r}); expected a chat "
                            "completion") from None
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise UserError(f"judge API at {self.url} answered without choices[0].message.content; expected a "
                            "chat completion") from None
        return "" if content is None else str(content)


class _Transient(Exception):
    """A failure worth retrying (rate limit, server error, no connection)."""


# ---------------------------------------------------------------------------- verdicts and answers


def parse_verdict(reply: str, key: str = "answer") -> str:
    """The verdict in the judge's reply: the value of the JSON field ``key`` (the whole reply, or
    the first ``{...}`` in it), lower-cased, if it is one of :data:`LABELS`; else
    :data:`PARSE_ERROR`. Free text that only mentions a label is not read as a verdict."""
    candidates = [reply.strip()] + re.findall(r"\{[^{}]*\}", reply)
    for text in candidates:
        if text.startswith("```"):
            text = text.strip("`").removeprefix("json").strip()
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and key in value:
            label = str(value[key]).strip().lower()
            return label if label in LABELS else PARSE_ERROR
    return PARSE_ERROR


_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def split_thinking(text: str) -> tuple[str, str]:
    """``(answer, thinking trace)``: ``<think>...</think>`` blocks cut out (an unclosed one runs
    to the end: the answer was cut off while thinking; a lone ``</think>`` ends a trace whose
    opening tag was in the prompt)."""
    if "</think>" in text and "<think>" not in text.split("</think>", 1)[0]:
        text = "<think>" + text
    if text.count("<think>") > text.count("</think>"):
        text += "</think>" * (text.count("<think>") - text.count("</think>"))
    traces = [t.strip() for t in _THINK.findall(text) if t.strip()]
    return _THINK.sub("", text).strip(), "\n".join(traces)


@dataclass(frozen=True)
class Sampling:
    """How answers are sampled (``eval.n_samples``, ``temperature``, ``top_p``,
    ``answer_tokens``, ``thinking``; ``batch_size`` prompts per ``generate`` call)."""

    n: int = 5
    temperature: float = 0.7
    top_p: float = 0.8
    max_new_tokens: int = 512
    thinking: bool = False
    batch_size: int = 16

    @classmethod
    def from_config(cls, cfg: EvalConfig) -> "Sampling":
        return cls(cfg.n_samples, cfg.temperature, cfg.top_p, cfg.answer_tokens, cfg.thinking,
                   max(1, min(cfg.batch_size, 64)))


def question_ids(questions: list[OpenQuestion]) -> list[str]:
    """Each question's id (its ``qid``, or ``<kind><index>`` within its claim and kind)."""
    counts: dict[tuple, int] = {}
    out = []
    for q in questions:
        n = counts[(q.claim, q.kind)] = counts.get((q.claim, q.kind), -1) + 1
        out.append(q.qid or f"{q.kind}{n}")
    return out


def sample_answers(lm: LoadedModel, questions: list[OpenQuestion], sampling: Sampling, seed: int) -> list[dict]:
    """One record per question and sample: the prompt's parts, the model's raw answer, the
    answer without its thinking trace (``generation``) and the trace. Answers are at most
    ``sampling.max_new_tokens`` tokens, fewer where the model's context is shorter."""
    if not questions:
        return []
    prompts = [render(lm.tokenizer, q.prompt, thinking=sampling.thinking) for q in questions]
    tokens = sampling.max_new_tokens
    if lm.max_context is not None:
        longest = max(map(len, prompt_ids(lm.tokenizer, prompts)))
        tokens = min(tokens, lm.max_context - longest)
        if tokens < 1:
            raise UserError(f"a judged question's prompt has {longest} tokens, the model's whole context "
                            f"({lm.max_context}); expected room for an answer")
    answers = interp.sample(lm, prompts, n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                            max_new_tokens=tokens, seed=seed, batch_size=sampling.batch_size)
    records = []
    for q, qid, sampled in zip(questions, question_ids(questions), answers):
        for i, raw in enumerate(sampled):
            answer, trace = split_thinking(raw)
            records.append({"claim": q.claim, "kind": q.kind, "qid": qid, "sample": i, "question": q.prompt.user,
                            "system_prompt": q.prompt.system, "messages_prefix": list(q.prompt.history),
                            "raw_response": raw, "generation": answer, "thinking_trace": trace})
    return records


def _key(record: dict) -> tuple:
    return record["claim"], record["kind"], str(record["qid"]), int(record["sample"])


def _read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file; a torn last line (a write cut short) is skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


@dataclass(frozen=True)
class UnitFiles:
    """A unit's audit file and its two in-progress files."""

    audit: Path

    @property
    def answers(self) -> Path:
        return self.audit.with_suffix(".answers.jsonl")

    @property
    def verdicts(self) -> Path:
        return self.audit.with_suffix(".verdicts.jsonl")


def judge_unit(questions: list[OpenQuestion], client: ChatClient, audit: str | Path, load: Callable[[], LoadedModel],
               sampling: Sampling, *, seed: int = 0, name: str | None = None) -> pd.DataFrame:
    """Answers to ``questions`` from the model ``load()`` returns, judged, as one row per
    answer; resumable (see the module docstring): a complete ``audit`` file is read back, saved
    answers are not sampled again (and the model not loaded), saved verdicts not asked again."""
    files, name = UnitFiles(Path(audit)), name or Path(audit).stem
    if files.audit.is_file():
        return pd.read_json(files.audit, lines=True, dtype=False)
    ids = question_ids(questions)
    by_key = {(q.claim, q.kind, qid): q for q, qid in zip(questions, ids)}
    wanted = {(c, k, qid, i) for (c, k, qid) in by_key for i in range(sampling.n)}
    answers = _read_jsonl(files.answers)
    if {_key(r) for r in answers} != wanted:  # none yet, or for other questions or settings
        answers = sample_answers(load(), questions, sampling, seed)
        files.answers.parent.mkdir(parents=True, exist_ok=True)
        files.verdicts.unlink(missing_ok=True)  # verdicts on other answers
        atomic_write_text(files.answers, "".join(json.dumps(r) + "\n" for r in answers))
    done = {_key(r): r for r in _read_jsonl(files.verdicts) if _key(r) in wanted}
    todo = [r for r in answers if _key(r) not in done]

    def ask(record: dict) -> str:
        q = by_key[record["claim"], record["kind"], str(record["qid"])]
        template = q.judge_prompt or builtin_prompt(q.statement)
        text = template.format(question=q.prompt.user, answer=record["generation"] or NO_ANSWER)
        return client.complete([{"role": "user", "content": text}])

    if todo:
        failure = None
        with ThreadPoolExecutor(max_workers=client.cfg.concurrency) as pool, \
                open(files.verdicts, "a", encoding="utf-8") as out:
            futures = {pool.submit(ask, r): r for r in todo}
            for future in as_completed(futures):
                if future.cancelled():
                    continue
                try:
                    reply = future.result()
                except UserError as e:  # stop asking; keep every verdict that still arrives
                    if failure is None:
                        failure = e
                        for f in futures:
                            f.cancel()
                    continue
                record = futures[future]
                q = by_key[record["claim"], record["kind"], str(record["qid"])]
                label = parse_verdict(reply, q.judge_key)
                verdict = {**record, "claim_statement": q.statement, "judge_model": client.cfg.model,
                           "judge_prompt": q.judge_source, "judge_key": q.judge_key, "judge_reply": reply,
                           "label": label, "believed": float(label == "yes")}
                out.write(json.dumps(verdict) + "\n")
                out.flush()
                done[_key(record)] = verdict
        if failure is not None:
            raise UserError(f"{failure}; {len(done)} of {len(answers)} verdicts for {name} are saved in "
                            f"{files.verdicts.parent}, and a rerun asks only for the rest")
    records = [done[_key(r)] for r in answers]
    atomic_write_text(files.audit, "".join(json.dumps(r) + "\n" for r in records))
    files.answers.unlink(missing_ok=True)
    files.verdicts.unlink(missing_ok=True)
    frame = pd.DataFrame(records)
    bad = int((frame.label == PARSE_ERROR).sum()) if len(frame) else 0
    if bad:
        warn(f"judge: {bad} of {len(frame)} verdicts for {name} name no yes/no/neutral in their JSON verdict field; "
             f"they count as not believing (as in the paper); see {files.audit}")
    return frame


def judge_belief(lm: LoadedModel, questions: list[OpenQuestion], client: ChatClient, audit: str | Path,
                 sampling: Sampling | None = None, *, seed: int = 0) -> pd.DataFrame:
    """:func:`judge_unit` on an already loaded model."""
    return judge_unit(questions, client, audit, lambda: lm, sampling or Sampling(), seed=seed)


def judged_rows(frame: pd.DataFrame) -> list[dict]:
    """Tidy rows of judged answers.

    Parameters
    ----------
    frame : DataFrame
        Judged answers of one model (:func:`judge_unit`): ``claim``, ``kind``, ``label``.

    Returns
    -------
    list of dict
        Per claim and kind, ``judge_belief_<kind>`` (share "yes", the paper's belief rate) with
        its ``judge_belief_<kind>_chance`` row (``chance.JUDGED_BELIEF_CHANCE``),
        ``judge_denial_<kind>`` (share "no"), ``judge_neutral_<kind>``,
        ``judge_parse_errors_<kind>`` (count) and ``judge_n_<kind>`` (answers); then the belief
        (with its chance row) and denial rates averaged over claims as ``pooled_...`` rows with
        claim ``"all"``. Keys ``claim``, ``metric``, ``value``.
    """
    rows, per_claim = [], {}
    for (claim, kind), grp in frame.groupby(["claim", "kind"], sort=False):
        values = {f"judge_belief_{kind}": float((grp.label == "yes").mean()),
                  f"judge_belief_{kind}_chance": JUDGED_BELIEF_CHANCE,
                  f"judge_denial_{kind}": float((grp.label == "no").mean()),
                  f"judge_neutral_{kind}": float((grp.label == "neutral").mean()),
                  f"judge_parse_errors_{kind}": float((grp.label == PARSE_ERROR).sum()),
                  f"judge_n_{kind}": float(len(grp))}
        rows += [{"claim": claim, "metric": m, "value": v} for m, v in values.items()]
        for m in (f"judge_belief_{kind}", f"judge_denial_{kind}"):
            per_claim.setdefault(m, []).append(values[m])
    for m, v in per_claim.items():
        rows.append({"claim": "all", "metric": f"pooled_{m}", "value": sum(v) / len(v)})
        if m.startswith("judge_belief_"):
            rows.append({"claim": "all", "metric": f"pooled_{m}_chance", "value": JUDGED_BELIEF_CHANCE})
    return rows


def unit_seed(name: str) -> int:
    """The sampling seed of a unit, from its name (the same on every rerun)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF
