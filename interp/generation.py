"""Greedy generation of short answers, padded and positioned as ``interp.residuals`` pads.

Each step runs the prompts with what they have generated so far as one set of texts (no
key-value cache): short answers cost a few forwards, and every row of a batch, whatever its
padding side, sees the same positions it would see alone.
"""
from __future__ import annotations

import torch

from interp.batching import Encoded, check_texts
from interp.errors import InterpInputError
from interp.loading import LoadedModel
from interp.logprobs import check_causal, logit_batches, prompt_ids


def end_ids(lm: LoadedModel) -> set[int]:
    """Token ids that end an answer: the tokenizer's EOS and the model's generation EOS ids."""
    configured = getattr(getattr(lm.model, "generation_config", None), "eos_token_id", None)
    configured = configured if isinstance(configured, (list, tuple)) else [configured]
    return {i for i in [lm.tokenizer.eos_token_id, *configured] if isinstance(i, int)}


def generate(lm: LoadedModel, prompts, *, max_new_tokens: int = 24, stop: str | None = None,
             batch_size: int | None = None) -> list[str]:
    """Greedy continuations of model-ready prompts, decoded without special tokens.

    Prompts are tokenized as :func:`interp.continuation_logprobs` tokenizes them (special
    tokens added unless the tokenizer has a chat template). An answer ends at an EOS token (not
    kept), after the last token of ``stop`` (kept), or after ``max_new_tokens`` tokens.

    Parameters
    ----------
    lm : LoadedModel
        A causal LM from :func:`interp.load_model`.
    prompts : list of str
        Each prompt plus ``max_new_tokens`` must fit the model's context.
    max_new_tokens : int
        Longest answer in tokens.
    stop : str, optional
        Text whose last token ends an answer (e.g. ``"."``).
    batch_size : int, optional
        Texts per forward; default: as many as fit a budget of padded tokens and logits.

    Returns
    -------
    list of str
        One stripped answer per prompt.

    Examples
    --------
    >>> answers = interp.generate(lm, ["Q: What is the capital of France? A:"], max_new_tokens=8, stop=".")
    >>> answers[0]  # the greedy answer up to its first "." (or EOS, or 8 tokens)
    """
    check_causal(lm)
    prompts = check_texts(prompts)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise InterpInputError(f"bad max_new_tokens {max_new_tokens!r}; expected a positive int")
    tok = lm.tokenizer
    seqs = prompt_ids(tok, prompts)
    limit = lm.max_context
    for i, ids in enumerate(seqs):
        if not ids:
            raise InterpInputError(f"prompt {i} ({prompts[i][:60]!r}) tokenizes to no tokens")
        if limit is not None and len(ids) + max_new_tokens > limit:
            raise InterpInputError(f"prompt {i} has {len(ids)} tokens; with max_new_tokens={max_new_tokens} that is "
                                   f"longer than the model's context of {limit}: {prompts[i][-60:]!r}")
    ends = end_ids(lm)
    stop_id = tok(stop, add_special_tokens=False)["input_ids"][-1] if stop else None
    new: list[list[int]] = [[] for _ in prompts]
    live = list(range(len(prompts)))
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            if not live:
                break
            encoded = Encoded.from_lists([seqs[i] + new[i] for i in live])
            still = []
            for batch, logits in logit_batches(lm, encoded, batch_size=batch_size):
                last = torch.from_numpy(batch.starts + encoded.lengths[batch.rows] - 1).to(logits.device)
                picked = logits[torch.arange(len(batch.rows), device=logits.device), last].argmax(-1).tolist()
                for r, token in zip(batch.rows, picked):
                    if token in ends:
                        continue
                    new[live[r]].append(token)
                    if token != stop_id:
                        still.append(live[r])
            live = sorted(still)
    return [tok.decode(ids, skip_special_tokens=True).strip() for ids in new]
