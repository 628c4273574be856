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


def _checked_prompt_ids(lm, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
    """Token ids of each prompt; a prompt with no tokens, or too long for the context with
    ``max_new_tokens`` more, is an InterpInputError naming it."""
    seqs = prompt_ids(lm.tokenizer, prompts)
    limit = lm.max_context
    for i, ids in enumerate(seqs):
        if not ids:
            raise InterpInputError(f"prompt {i} ({prompts[i][:60]!r}) tokenizes to no tokens")
        if limit is not None and len(ids) + max_new_tokens > limit:
            raise InterpInputError(f"prompt {i} has {len(ids)} tokens; with max_new_tokens={max_new_tokens} that is "
                                   f"longer than the model's context of {limit}: {prompts[i][-60:]!r}")
    return seqs


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
    seqs = _checked_prompt_ids(lm, prompts, max_new_tokens)
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


def sample(lm: LoadedModel, prompts, *, n: int = 1, temperature: float = 1.0, top_p: float = 1.0,
           max_new_tokens: int = 256, seed: int = 0, batch_size: int | None = None) -> list[list[str]]:
    """``n`` sampled continuations of each model-ready prompt, through the model's own
    ``generate`` (key-value cache, left padding), decoded without special tokens.

    Prompts are tokenized as :func:`generate` tokenizes them. Only the settings given here
    apply (the checkpoint's ``generation_config`` sampling defaults, such as its ``top_k``,
    ``min_p`` or repetition penalty, do not), so answers depend on the arguments alone. ``temperature`` 0
    is greedy decoding (then the ``n`` answers are equal). An answer ends at an EOS token
    (the tokenizer's or the model's generation EOS ids) or after ``max_new_tokens`` tokens.

    Parameters
    ----------
    lm : LoadedModel
        A causal LM from :func:`interp.load_model` whose model has ``generate`` (any HF
        ``...ForCausalLM``).
    prompts : list of str
        Each prompt plus ``max_new_tokens`` must fit the model's context.
    n : int
        Answers per prompt.
    temperature, top_p : float
        Sampling temperature (0: greedy) and nucleus mass (1: off).
    max_new_tokens : int
        Longest answer in tokens.
    seed : int
        Seeds the sampler (the global RNG state is restored afterwards).
    batch_size : int, optional
        Prompts per ``generate`` call (each expands to ``n`` rows); default 16.

    Returns
    -------
    list of list of str
        ``n`` stripped answers per prompt.
    """
    check_causal(lm)
    prompts = check_texts(prompts)
    for name, value, low in (("n", n, 1), ("max_new_tokens", max_new_tokens, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InterpInputError(f"bad {name} {value!r}; expected an int >= {low}")
    if not (isinstance(temperature, (int, float)) and temperature >= 0):
        raise InterpInputError(f"bad temperature {temperature!r}; expected a number >= 0")
    if not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise InterpInputError(f"bad top_p {top_p!r}; expected a number in (0, 1]")
    if not callable(getattr(lm.model, "generate", None)):
        raise InterpInputError(f"model {lm.name!r} has no generate method; sampling needs a Hugging Face causal LM")
    from transformers import GenerationConfig

    tok = lm.tokenizer
    seqs = _checked_prompt_ids(lm, prompts, max_new_tokens)
    ends = sorted(end_ids(lm))
    pad = tok.pad_token_id if tok.pad_token_id is not None else (ends[0] if ends else 0)
    greedy = temperature == 0
    per_row = 1 if greedy else n  # greedy answers are computed once and repeated
    # Every sampling and penalty setting is given, so none is filled in from the checkpoint's generation_config.
    # (Greedy decoding reads none of the sampling ones; transformers' notes that the checkpoint's are unused are
    # silenced below.)
    neutral = dict(num_beams=1, min_length=0, repetition_penalty=1.0, no_repeat_ngram_size=0)
    if not greedy:
        neutral.update(temperature=float(temperature), top_p=float(top_p), top_k=0, min_p=0.0, typical_p=1.0,
                       epsilon_cutoff=0.0, eta_cutoff=0.0)
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=not greedy, num_return_sequences=per_row,
                              pad_token_id=pad, eos_token_id=ends or None, bos_token_id=None, **neutral)
    out: list[list[str]] = [[] for _ in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(seqs[i]))
    step = batch_size or 16
    devices = [lm.device.index or 0] if lm.device.type == "cuda" else []
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed)
            for start in range(0, len(order), step):
                rows = order[start:start + step]
                width = max(len(seqs[i]) for i in rows)
                ids = torch.full((len(rows), width), pad, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, i in enumerate(rows):  # left padding: every row's answer starts in the same column
                    ids[r, width - len(seqs[i]):] = torch.tensor(seqs[i])
                    mask[r, width - len(seqs[i]):] = 1
                made = lm.model.generate(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                                         generation_config=config)
                made = made[:, width:].tolist()
                for r, i in enumerate(rows):
                    for answer in made[r * per_row:(r + 1) * per_row]:
                        cut = next((k for k, t in enumerate(answer) if t in ends), len(answer))
                        out[i].append(tok.decode(answer[:cut], skip_special_tokens=True).strip())
                    out[i] *= n // per_row
    finally:
        hf_logging.set_verbosity(verbosity)
    return out
