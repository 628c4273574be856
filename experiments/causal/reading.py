"""How a two-option question is read for a causal analysis: by the logit difference of its two
answers at the token where they first differ, after the prompt as the belief scoring renders it.

A claim pack's MCQ item is asked under the MCQ instruction with each option written as its
reply (``{"answer": "yes"}``); the model then reads the prompt and the replies' shared start
(``{"answer": "``), and the two replies' next tokens are compared. A plain question's options
usually differ at their first token, read right after the prompt.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from experiments.evaluation.scoring import McqFormat, render
from experiments.materials.questions import BeliefQuestion
from interp import LoadedModel, logits_under
from interp.logprobs import prompt_ids, uses_chat_template


@dataclass(frozen=True)
class Reading:
    """One question as the model reads it: ``text`` (the rendered prompt), ``ids`` (the prompt's
    token ids and the replies' shared start: what the model reads), ``shared`` (how many of the
    ids are that shared start) and the token ids of the two answers compared there."""

    text: str
    ids: tuple[int, ...]
    shared: int
    first: int
    second: int


def _first_difference(a: list[int], b: list[int]) -> int | None:
    """The index of the first token where ``a`` and ``b`` differ; None when one is a prefix of the other."""
    k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return k if k < min(len(a), len(b)) else None


def read_question(tokenizer, question: BeliefQuestion, first: int, second: int, mcq: McqFormat) -> Reading | None:
    """How ``question`` is read to compare its options ``first`` and ``second`` (indices into
    ``question.options``); None when their replies never differ in a token."""
    asked = question.style == "mcq"
    replies = [mcq.reply(question.options[i]) if asked else question.options[i] for i in (first, second)]
    sep = "" if uses_chat_template(tokenizer) else " "
    a, b = tokenizer([sep + r for r in replies], add_special_tokens=False)["input_ids"]
    k = _first_difference(a, b)
    if k is None:
        return None
    text = render(tokenizer, mcq.prompt(question.prompt) if asked else question.prompt)
    return Reading(text, tuple(prompt_ids(tokenizer, [text])[0] + a[:k]), k, a[k], b[k])


def token_span(tokenizer, text: str, substring: str) -> list[int]:
    """Indices (into ``prompt_ids(text)``, and so into a :class:`Reading`'s ``ids``) of the tokens
    that cover the last occurrence of ``substring`` in ``text``; [] when it does not occur."""
    start = text.rfind(substring)
    if start < 0:
        return []
    end = start + len(substring)
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=not uses_chat_template(tokenizer))
    return [t for t, (s, e) in enumerate(enc["offset_mapping"]) if e > s and s < end and e > start]


def token_margins(lm: LoadedModel, inputs: list, first: list[int], second: list[int], edits=(),
                  batch_size: int | None = None) -> np.ndarray:
    """``logit(first[i]) - logit(second[i])`` at the last token of each of ``inputs`` (texts or
    token-id lists, as :class:`Reading` gives them), under ``edits`` (``interp`` interventions)."""
    logits = logits_under(lm, list(inputs), list(edits), batch_size=batch_size)
    rows = torch.arange(len(inputs))
    return (logits[rows, torch.tensor(list(first))] - logits[rows, torch.tensor(list(second))]).numpy()
