"""Log-probabilities of continuations under a causal LM (the judge-free scoring primitive),
and the prompt rendering that decides what text a question becomes for a given model."""
from __future__ import annotations


import torch

from experiments.materials.questions import Prompt
from interp import LoadedModel


def uses_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


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


def right_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists as a right-padded ``[n, width]`` batch and its attention mask."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id)
    mask = torch.zeros_like(ids)
    for r, x in enumerate(rows):
        ids[r, : len(x)] = torch.tensor(x)
        mask[r, : len(x)] = 1
    return ids, mask


def continuation_logprobs(lm: LoadedModel, prompts: list[str], continuations: list[str],
                          batch_size: int = 128) -> torch.Tensor:
    """``log p(continuation | prompt)`` summed over the continuation's tokens, for each pair.

    Plain prompts get the tokenizer's special tokens (BOS) and the continuation is tokenized as
    it reads after a space; prompts rendered by a chat template already hold their special
    tokens, and the answer follows the opened assistant turn directly. Prompt and continuation
    are tokenized separately and concatenated, so a continuation never merges with the
    prompt's last token.
    """
    tok = lm.tokenizer
    chat = uses_chat_template(tok)
    sep = "" if chat else " "
    prompt_ids = tok(list(prompts), add_special_tokens=not chat)["input_ids"]
    cont_ids = tok([sep + c for c in continuations], add_special_tokens=False)["input_ids"]
    full_ids = [p + c for p, c in zip(prompt_ids, cont_ids)]
    prompt_lens = [len(x) for x in prompt_ids]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    out = torch.empty(len(prompts))
    device = lm.device
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            rows = full_ids[start:start + batch_size]
            ids, mask = right_pad(rows, pad)
            enc = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
            logits = lm.model(**enc).logits.float()  # right-padded: positions need no correction
            logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, enc["input_ids"][:, 1:, None])[..., 0]
            for r, x in enumerate(rows):
                n_prompt = prompt_lens[start + r]
                out[start + r] = logp[r, n_prompt - 1: len(x) - 1].sum().cpu()
    return out


def option_logprobs(lm: LoadedModel, prompts: list[str], options: list[tuple[str, ...]],
                    batch_size: int = 128) -> list[torch.Tensor]:
    """For each prompt, ``log p(option | prompt)`` of each of its options (one batched pass)."""
    flat_p = [p for p, opts in zip(prompts, options) for _ in opts]
    flat_o = [o for opts in options for o in opts]
    scores = continuation_logprobs(lm, flat_p, flat_o, batch_size) if flat_p else torch.empty(0)
    out, pos = [], 0
    for opts in options:
        out.append(scores[pos:pos + len(opts)])
        pos += len(opts)
    return out
