"""Log-probabilities of text under a causal LM, batched the way ``interp.residuals`` batches.

Texts are tokenized once, sorted by length, padded on the tokenizer's padding side with
explicit position ids and attention masks (``interp.batching``), and checked against the
model's context before any forward. Only the logits at positions that predict a scored
token are cast to float32 and go through the log-softmax; without a ``batch_size``, a batch
holds as many texts as keep its padded tokens (and its logits: tokens x vocabulary) within a
budget.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from interp.batching import DEFAULT_MAX_TOKENS, Batch, Encoded, check_context, check_texts, collate, encode, plan_batches
from interp.errors import InterpInputError
from interp.loading import LoadedModel

LOGITS_BUDGET = 2 ** 28  # logits per batch (padded tokens x vocabulary) when batch_size is not given


@dataclass
class TokenLogprobs:
    """One text's tokens and the log-probability the model gives each after the first.

    ``token_ids``: every token of the text, special tokens included. ``logprobs``: float32
    ``[len(token_ids) - 1]``, ``logprobs[i] = log p(token_ids[i + 1] | token_ids[:i + 1])``.
    ``offsets``: each token's ``(start, end)`` characters in the text (None unless asked for).
    """

    token_ids: list[int]
    logprobs: torch.Tensor
    offsets: list[tuple[int, int]] | None = None

    @property
    def losses(self) -> torch.Tensor:
        """Next-token cross-entropy of each token after the first (``-logprobs``)."""
        return -self.logprobs


def uses_chat_template(tokenizer) -> bool:
    """Whether texts for this tokenizer are rendered by its chat template (which then holds
    the special tokens, so none are added when tokenizing them)."""
    return bool(getattr(tokenizer, "chat_template", None))


def prompt_ids(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Token ids of model-ready prompts: the tokenizer's special tokens (BOS) are added unless
    the tokenizer has a chat template (its rendered prompts hold them already)."""
    return tokenizer(prompts, add_special_tokens=not uses_chat_template(tokenizer))["input_ids"]


def check_causal(lm) -> None:
    if not isinstance(lm, LoadedModel):
        raise InterpInputError(f"model must be a LoadedModel from interp.load_model, not {type(lm).__name__}")
    if lm.is_encoder_only:
        raise InterpInputError(f"model {lm.name!r} is encoder-only ({lm.config.model_type}); log-probabilities and "
                               "generation need a causal LM")


def logit_batches(lm: LoadedModel, encoded: Encoded, rows: list[int] | None = None,
                  batch_size: int | None = None) -> Iterator[tuple[Batch, torch.Tensor]]:
    """``(batch, logits)`` for the texts ``rows`` of ``encoded`` (default: all), padded as
    ``interp.residuals`` pads them; ``batch.rows`` index ``encoded``. Call under inference mode."""
    rows = list(range(len(encoded.lengths))) if rows is None else rows
    vocab = getattr(lm.config, "vocab_size", None) or len(lm.tokenizer)
    budget = min(DEFAULT_MAX_TOKENS, max(1, LOGITS_BUDGET // vocab))
    for plan in plan_batches(encoded.lengths[rows].tolist(), batch_size, budget):
        batch = collate(lm, encoded, [rows[i] for i in plan], [])
        yield batch, lm.model(**batch.inputs).logits


def scored_logprobs(lm: LoadedModel, encoded: Encoded, first: np.ndarray, batch_size: int | None) -> list[torch.Tensor]:
    """For each text ``i``, ``log p(token t | tokens < t)`` for ``t`` in ``[first[i], length[i])``
    (float32, on CPU). ``first[i] >= 1``: token 0 has nothing before it."""
    lengths = encoded.lengths
    out: list[torch.Tensor] = [torch.empty(0)] * len(lengths)
    with torch.inference_mode():
        for batch, logits in logit_batches(lm, encoded, np.flatnonzero(lengths > first).tolist(), batch_size):
            texts = np.asarray(batch.rows)
            counts = lengths[texts] - first[texts]
            row = np.repeat(np.arange(len(texts)), counts)
            within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
            column = np.repeat(batch.starts + first[texts] - 1, counts) + within  # the position predicting each token
            target = encoded.token_ids[np.repeat(encoded.starts[texts] + first[texts], counts) + within]
            picked = logits[torch.from_numpy(row).to(logits.device), torch.from_numpy(column).to(logits.device)]
            values = torch.log_softmax(picked.float(), -1).gather(
                -1, torch.from_numpy(target).to(logits.device)[:, None])[:, 0].cpu()
            for i, part in zip(texts.tolist(), values.split(counts.tolist())):
                out[i] = part
    return out


def continuation_logprobs(lm: LoadedModel, prompts, continuations, *, batch_size: int | None = None) -> torch.Tensor:
    """``log p(continuation | prompt)`` summed over the continuation's tokens, for each pair.

    Prompt and continuation are tokenized separately and concatenated, so a continuation
    never merges with the prompt's last token. Plain prompts get the tokenizer's special tokens
    (BOS) and the continuation is read after a space; prompts rendered by a chat template
    (the tokenizer has one) already hold their special tokens, and the continuation follows
    them directly.

    Parameters
    ----------
    lm : LoadedModel
        A causal LM from :func:`interp.load_model`.
    prompts, continuations : list of str
        Equally many prompts and continuations; each continuation tokenizes to at least one token.
    batch_size : int, optional
        Pairs per forward; default: as many as fit a budget of padded tokens and logits,
        pairs sorted by length.

    Returns
    -------
    torch.Tensor
        float32 ``[n]`` on CPU, in the order of ``prompts``.

    Examples
    --------
    >>> lm = interp.load_model("gpt2")
    >>> scores = interp.continuation_logprobs(lm, ["The capital of France is"] * 2, ["Paris", "Rome"])
    >>> bool(scores[0] > scores[1])  # the model prefers "Paris"
    """
    check_causal(lm)
    prompts, continuations = check_texts(prompts), check_texts(continuations)
    if len(prompts) != len(continuations):
        raise InterpInputError(f"{len(prompts)} prompts but {len(continuations)} continuations; expected one each")
    tok = lm.tokenizer
    sep = "" if uses_chat_template(tok) else " "
    heads = prompt_ids(tok, prompts)
    tails = tok([sep + c for c in continuations], add_special_tokens=False)["input_ids"]
    for what, texts, ids in (("prompt", prompts, heads), ("continuation", continuations, tails)):
        if (i := next((i for i, x in enumerate(ids) if not x), None)) is not None:
            raise InterpInputError(f"{what} {i} ({texts[i][:60]!r}) tokenizes to no tokens")
    encoded = Encoded.from_lists([h + t for h, t in zip(heads, tails)])
    check_context(lm, encoded.lengths, lambda i: f"prompt {prompts[i][-60:]!r} + continuation {continuations[i][:60]!r}")
    out = torch.empty(len(heads), dtype=torch.float32)
    single = [i for i, t in enumerate(tails) if len(t) == 1]
    if single:  # one-token continuations: one forward per distinct prompt serves all its continuations
        out[single] = next_token_logprobs(lm, [heads[i] for i in single], [tails[i][0] for i in single], batch_size)
    longer = [i for i, t in enumerate(tails) if len(t) > 1]
    if longer:
        first = np.fromiter((len(heads[i]) for i in longer), dtype=np.int64, count=len(longer))
        sub = Encoded.from_lists([heads[i] + tails[i] for i in longer])
        out[longer] = torch.stack([s.sum() for s in scored_logprobs(lm, sub, first, batch_size)])
    return out


def next_token_logprobs(lm: LoadedModel, heads: list[list[int]], targets: list[int],
                        batch_size: int | None = None) -> torch.Tensor:
    """``log p(targets[i] | heads[i])`` for token-id prompts, with one forward per distinct
    prompt (a question asked with k answer options costs one forward, not k). float32 on CPU."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, head in enumerate(heads):
        groups.setdefault(tuple(head), []).append(i)
    keys = list(groups)
    encoded = Encoded.from_lists(keys)
    out = torch.empty(len(heads), dtype=torch.float32)
    with torch.inference_mode():
        for batch, logits in logit_batches(lm, encoded, None, batch_size):
            texts = np.asarray(batch.rows)
            last = torch.from_numpy(batch.starts + encoded.lengths[texts] - 1).to(logits.device)
            dist = torch.log_softmax(logits[torch.arange(len(texts), device=logits.device), last].float(), -1).cpu()
            members = [groups[keys[t]] for t in texts.tolist()]
            row = torch.from_numpy(np.repeat(np.arange(len(texts)), [len(m) for m in members]))
            pairs = [i for m in members for i in m]
            out[pairs] = dist[row, torch.tensor([targets[i] for i in pairs])]
    return out


def token_logprobs(lm: LoadedModel, texts, *, offsets: bool = False, batch_size: int | None = None) -> list[TokenLogprobs]:
    """Every token's log-probability given the tokens before it, per text.

    Texts are tokenized as ``interp.residuals`` tokenizes them (the tokenizer's own call,
    special tokens included).

    Parameters
    ----------
    lm : LoadedModel
        A causal LM from :func:`interp.load_model`.
    texts : list of str
        Texts no longer than the model's context.
    offsets : bool
        Also return each token's character offsets (needs a fast tokenizer), e.g. to pick
        the tokens of a span.
    batch_size : int, optional
        Texts per forward; default: as many as fit a budget of padded tokens and logits.

    Returns
    -------
    list of TokenLogprobs
        One per text: ``token_ids``, ``logprobs`` (``[n_tokens - 1]``, float32, CPU; ``losses``
        is their negation) and ``offsets``.

    Examples
    --------
    >>> [doc] = interp.token_logprobs(lm, ["Paris is the capital of France."], offsets=True)
    >>> doc.losses.mean()  # mean next-token cross-entropy, in nats
    >>> doc.offsets[1:]  # the characters of the token each loss is for
    """
    check_causal(lm)
    texts = check_texts(texts)
    encoded = encode(lm, texts, offsets=offsets)
    scores = scored_logprobs(lm, encoded, np.ones(len(texts), dtype=np.int64), batch_size)
    return [TokenLogprobs(encoded.ids_of(i), s, encoded.offsets[i] if offsets else None) for i, s in enumerate(scores)]
