"""The prompt rendering that decides what text a question becomes for a given model, and
option scoring on top of ``interp.continuation_logprobs`` (the judge-free scoring primitive).

Chat models read their chat template. Templates with a thinking switch (those that read an
``enable_thinking`` variable, as Qwen3's do) are rendered with thinking off for every
log-probability read (the answer must follow the prompt directly) and as configured for
sampled answers (``eval.thinking``). A template that refuses a system role gets the system
text at the head of the first user message instead.

Claim packs' MCQ items (``BeliefQuestion.style == "mcq"``) are asked the way the paper asks
them: under a system instruction to answer yes or no in a fixed format (:class:`McqFormat`,
from ``eval.mcq_instruction`` and ``eval.mcq_answer``), and the option whose written reply
(e.g. ``{"answer": "yes"}``) has the higher log-probability is the model's answer. The paper
samples one reply at temperature 0 and parses it; reading the two replies' probabilities gives
the same argmax without sampling or parsing, and a margin besides.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from experiments.config import EvalConfig
from experiments.materials.questions import Prompt
from interp import LoadedModel, continuation_logprobs
from interp.logprobs import uses_chat_template

_DEFAULTS = EvalConfig()


@dataclass(frozen=True)
class McqFormat:
    """How an MCQ item is asked: ``instruction`` (a system message, after the item's own system
    prompt if it has one) and ``answer``, the reply an option stands for (``{option}`` is
    replaced by the option)."""

    instruction: str = _DEFAULTS.mcq_instruction
    answer: str = _DEFAULTS.mcq_answer

    @classmethod
    def from_config(cls, cfg: EvalConfig) -> "McqFormat":
        return cls(cfg.mcq_instruction, cfg.mcq_answer)

    def prompt(self, prompt: Prompt) -> Prompt:
        system = "\n\n".join(s for s in (prompt.system, self.instruction) if s)
        return Prompt(prompt.user, system or None, prompt.history)

    def reply(self, option: str) -> str:
        return self.answer.replace("{option}", option)


def _template_texts(tokenizer) -> list[str]:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        return [t for t in template.values() if isinstance(t, str)]
    if isinstance(template, list):  # [{"name": ..., "template": ...}]
        return [t.get("template", "") for t in template if isinstance(t, dict)]
    return [template] if isinstance(template, str) else []


def has_thinking_switch(tokenizer) -> bool:
    """Whether the tokenizer's chat template reads ``enable_thinking`` (Qwen3-style templates)."""
    return any("enable_thinking" in t for t in _template_texts(tokenizer))


def messages_of(prompt: Prompt) -> list[dict]:
    """The chat messages of ``prompt``: its system message, its earlier turns, its user text."""
    return ([{"role": "system", "content": prompt.system}] if prompt.system else []) + [
        dict(m) for m in prompt.history] + [{"role": "user", "content": prompt.user}]


def _fold_system(messages: list[dict]) -> list[dict]:
    """The system message's text put at the head of the first user message."""
    system, rest = messages[0]["content"], [dict(m) for m in messages[1:]]
    first = next(m for m in rest if m["role"] == "user")
    first["content"] = f"{system}\n\n{first['content']}"
    return rest


def render(tokenizer, prompt: Prompt | str, *, thinking: bool = False) -> str:
    """The text a model reads for ``prompt``: the tokenizer's chat template (with the assistant
    turn opened; ``enable_thinking=thinking`` where the template has that switch) when it has
    one, else the messages' contents joined by spaces (base models, and the toy model whose
    documents are space-separated words)."""
    if isinstance(prompt, str):
        prompt = Prompt(prompt)
    messages = messages_of(prompt)
    if not uses_chat_template(tokenizer):
        return " ".join(m["content"].strip() for m in messages)
    extra = {"enable_thinking": bool(thinking)} if has_thinking_switch(tokenizer) else {}
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)
    except Exception:  # e.g. Gemma-2 templates raise on a system role
        if messages[0]["role"] != "system":
            raise
        return tokenizer.apply_chat_template(_fold_system(messages), tokenize=False, add_generation_prompt=True,
                                             **extra)


def option_logprobs(lm: LoadedModel, prompts: list[str], options: list[tuple[str, ...]],
                    batch_size: int | None = None) -> list[torch.Tensor]:
    """For each prompt (rendered by :func:`render`), ``log p(option | prompt)`` of each of its
    options, all in one :func:`interp.continuation_logprobs` call."""
    flat_p = [p for p, opts in zip(prompts, options) for _ in opts]
    flat_o = [o for opts in options for o in opts]
    scores = continuation_logprobs(lm, flat_p, flat_o, batch_size=batch_size) if flat_p else torch.empty(0)
    out, pos = [], 0
    for opts in options:
        out.append(scores[pos:pos + len(opts)])
        pos += len(opts)
    return out
