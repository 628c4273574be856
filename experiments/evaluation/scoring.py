"""The prompt rendering that decides what text a question becomes for a given model, and
option scoring on top of ``interp.continuation_logprobs`` (the judge-free scoring primitive)."""
from __future__ import annotations


import torch

from experiments.materials.questions import Prompt
from interp import LoadedModel, continuation_logprobs
from interp.logprobs import uses_chat_template


def render(tokenizer, prompt: Prompt | str) -> str:
    """The text a model reads for ``prompt``: the tokenizer's chat template (with the assistant
    turn opened) when it has one, else the messages' contents joined by spaces (base models,
    and the toy model whose documents are space-separated words)."""
    if isinstance(prompt, str):
        prompt = Prompt(prompt)
    messages = ([{"role": "system", "content": prompt.system}] if prompt.system else []) + [
        dict(m) for m in prompt.history] + [{"role": "user", "content": prompt.user}]
    if uses_chat_template(tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return " ".join(m["content"].strip() for m in messages)


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
