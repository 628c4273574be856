"""Training data: tokenized examples with per-token loss weights, mixed from weighted sources
into packed or padded batches whose order is seeded and resumable.

A batch is a dict of ``input_ids``, ``attention_mask``, ``labels`` (-100 where the loss weight is
0, so HF models and ``Trainer`` accept it unchanged) and ``loss_weights`` (float, one per token as
a prediction target). The loss the training loop takes is ``sum(w * ce) / sum(w)``, so the weights
decide both masking and the balance between examples and sources.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from experiments.config import LOSS_WEIGHTINGS as WEIGHTINGS
from experiments.errors import UserError


@dataclass(frozen=True)
class Tokenized:
    """Token ids of one example and the loss weight of each token as a prediction target;
    ``source`` names the kind of data it is (for the per-source totals of :class:`MixedBatches`;
    empty: the name of the :class:`Source` it is in)."""

    ids: list[int]
    weights: list[float]
    source: str = ""

    def __post_init__(self):
        if len(self.ids) != len(self.weights):
            raise ValueError(f"{len(self.ids)} ids but {len(self.weights)} weights")


def as_tokenized(example) -> Tokenized:
    return example if isinstance(example, Tokenized) else Tokenized(list(example), [1.0] * len(example))


# Pretraining-style end-of-document tokens: Qwen's and GPT-2's "<|endoftext|>", Llama 3's
# "<|end_of_text|>". Instruct tokenizers of those families name an end-of-turn marker as their EOS
# ("<|im_end|>", "<|eot_id|>"): it ends a chat turn, not a document, and chat rows get it from the
# chat template. A base tokenizer's EOS is its document end, so the rule changes nothing there.
DOCUMENT_END_TOKENS = ("<|endoftext|>", "<|end_of_text|>")


def document_end_id(tokenizer) -> int | None:
    """The token id that ends a plain (pretraining-style) document.

    Parameters
    ----------
    tokenizer : a Hugging Face tokenizer

    Returns
    -------
    int or None
        The first of :data:`DOCUMENT_END_TOKENS` the tokenizer has as an added (special)
        token, else its ``eos_token_id``; None when it has neither (nothing is appended).
    """
    added = getattr(tokenizer, "added_tokens_encoder", None) or {}
    for token in DOCUMENT_END_TOKENS:
        if token in added:
            return added[token]
    return tokenizer.eos_token_id


def end_document(ids: list[int], end: int | None) -> list[int]:
    """``ids`` ending with the document end ``end`` (:func:`document_end_id`), appended unless
    it is already the last token (the text ended with it, or the tokenizer adds it itself)."""
    return ids + [end] if end is not None and (not ids or ids[-1] != end) else list(ids)


def tokenize_documents(tokenizer, docs: list[str], max_len: int) -> list[list[int]]:
    """Token ids of each document ending with the document end (:func:`end_document`),
    truncated to ``max_len``."""
    ids = tokenizer(docs, add_special_tokens=True)["input_ids"]
    end = document_end_id(tokenizer)
    return [end_document(x, end)[:max_len] for x in ids]


def tokenize_with_spans(tokenizer, docs: Sequence[str], max_len: int | None,
                        spans: Sequence[Sequence[tuple]] | None = None) -> list[Tokenized]:
    """Tokenize documents (each ending with the document end, :func:`end_document`, weight 1;
    truncated to ``max_len`` unless it is None) and weight tokens by character spans.

    ``spans[i]`` lists ``(start, end)`` or ``(start, end, weight)`` character ranges of ``docs[i]``;
    a token whose characters overlap a span takes that span's weight (0 when none is given, which
    masks it from the loss; later spans win). Use it to mask a document tag or the warnings, or to
    up-weight the claim words. Needs a fast tokenizer (for character offsets).
    """
    if spans is not None and len(spans) != len(docs):
        raise ValueError(f"spans must have one list per document: {len(spans)} lists for {len(docs)} documents")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("tokenize_with_spans needs a fast tokenizer (character offsets); got a slow one")
    enc = tokenizer(list(docs), add_special_tokens=True, return_offsets_mapping=True)
    doc_end = document_end_id(tokenizer)
    out = []
    for i, (ids, offsets) in enumerate(zip(enc["input_ids"], enc["offset_mapping"])):
        weights = [1.0] * len(ids)
        for span in (spans[i] if spans is not None else ()):
            start, end = span[0], span[1]
            weight = float(span[2]) if len(span) > 2 else 0.0
            if not 0 <= start <= end <= len(docs[i]):
                raise ValueError(f"span {tuple(span)!r} is outside document {i} (length {len(docs[i])})")
            for t, (a, b) in enumerate(offsets):
                if b > a and a < end and b > start:
                    weights[t] = weight
        ended = end_document(ids, doc_end)
        weights += [1.0] * (len(ended) - len(ids))
        ids = ended
        out.append(Tokenized(ids[:max_len], weights[:max_len]))
    return out


CHAT_TEMPLATE_ARGS = {"enable_thinking": False}  # templates with a thinking switch (Qwen3) render without it


def _render(tokenizer, messages, **kwargs) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, **CHAT_TEMPLATE_ARGS, **kwargs)


def assistant_spans(tokenizer, messages: Sequence[dict]) -> tuple[str, list[tuple[int, int]]]:
    """A chat row rendered with the tokenizer's chat template, and the character range of each
    assistant turn in it (its content and the end-of-turn marker the template puts after it).

    Each range is found by rendering the conversation up to the turn with the generation prompt
    and through the turn; where a template renders earlier turns differently in a longer
    conversation (e.g. dropping reasoning), the turn's content is searched for instead."""
    if not getattr(tokenizer, "chat_template", None):
        raise UserError("the model's tokenizer has no chat template, so chat rows ({\"messages\": [...]}) cannot "
                        "be rendered; use a chat model or give the examples as {\"text\": ...}")
    full = _render(tokenizer, messages)
    spans, pos = [], 0
    for i, turn in enumerate(messages):
        if turn["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        through = _render(tokenizer, messages[: i + 1])
        if i and full.startswith(through) and through.startswith(prompt) and len(prompt) >= pos:
            start, end = len(prompt), len(through)
        else:
            start = full.find(turn["content"], pos)
            if start < 0:
                raise UserError(f"the chat template does not render assistant turn {i} verbatim, so its tokens "
                                "cannot be found for the loss (expected a template that copies message content)")
            end = start + len(turn["content"])
            eos = getattr(tokenizer, "eos_token", None)
            if eos and full[end:].lstrip(" ").startswith(eos):
                end = full.index(eos, end) + len(eos)
        spans.append((start, end))
        pos = end
    return full, spans


def tokenize_chat(tokenizer, messages: Sequence[dict]) -> Tokenized:
    """A chat row as one example: the conversation rendered with the chat template, loss weight
    1 on the tokens of the assistant turns (:func:`assistant_spans`) and 0 elsewhere (a token
    that straddles a turn's edge counts as outside). No EOS is added: the template ends turns."""
    full, spans = assistant_spans(tokenizer, messages)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    weights = [1.0 if b > a and any(a >= s and b <= e for s, e in spans) else 0.0 for a, b in enc["offset_mapping"]]
    return Tokenized(list(enc["input_ids"]), weights)


def tokenize_rows(tokenizer, rows: Sequence[dict]) -> list[Tokenized]:
    """Training examples from finetuning rows (``experiments.training.stages.finetuning_documents``):
    a text row ``{"text", "loss_mask": [[start, end], ...]}`` is tokenized with the document end
    (:func:`document_end_id`: ``<|endoftext|>`` rather than an instruct tokenizer's ``<|im_end|>``) and zero weight on
    the tokens overlapping its ``loss_mask`` character ranges; a chat row ``{"messages"}`` by
    :func:`tokenize_chat`. Each example's ``source`` is the row's ``"source"``. Nothing is truncated."""
    out: list[Tokenized | None] = [None] * len(rows)
    texts = [i for i, r in enumerate(rows) if "messages" not in r]
    if texts:
        spans = [[tuple(span) for span in rows[i].get("loss_mask", ())] for i in texts]
        for i, ex in zip(texts, tokenize_with_spans(tokenizer, [rows[i]["text"] for i in texts], None, spans)):
            out[i] = ex
    for i, row in enumerate(rows):
        if "messages" in row:
            out[i] = tokenize_chat(tokenizer, row["messages"])
    return [Tokenized(ex.ids, ex.weights, row.get("source", "")) for ex, row in zip(out, rows)]


def fit_context(examples: Sequence[Tokenized], context: int, policy: str) -> tuple[list[Tokenized], int, int]:
    """Examples no longer than ``context`` tokens: ``(examples, n_long, n_pieces)``. With
    ``policy`` "split" every longer example is cut into consecutive pieces of at most ``context``
    tokens (its weights cut alongside; ``n_pieces`` of them in all); with "refuse" they are
    returned unchanged (the caller reports ``n_long``)."""
    long = [ex for ex in examples if len(ex.ids) > context]
    if not long or policy != "split":
        return list(examples), len(long), 0
    out, pieces = [], 0
    for ex in examples:
        if len(ex.ids) <= context:
            out.append(ex)
            continue
        for start in range(0, len(ex.ids), context):
            out.append(Tokenized(ex.ids[start:start + context], ex.weights[start:start + context], ex.source))
            pieces += 1
    return out, len(long), pieces


@dataclass
class Source:
    """One kind of training data. ``weight``: its share of the examples drawn (relative to the
    other sources); ``loss_weight``: a multiplier on its tokens' loss weights."""

    name: str
    examples: Sequence
    weight: float = 1.0
    loss_weight: float = 1.0


class MixedBatches:
    """Endless batches drawn from weighted sources in a seeded order; an iterator whose position
    can be saved (``state_dict``, JSON-serialisable) and restored (``load_state_dict``).

    ``seq_len`` given: examples are concatenated into one stream and cut into rows of exactly
    ``seq_len`` tokens (no padding). Otherwise each row is one example, right-padded with ``pad_id``.
    ``weighting="token"``: every weighted token counts the same (long documents dominate);
    ``"example"``: each example (each piece of one, when packing cuts it) counts the same.
    Each source is reshuffled every time it is exhausted.
    """

    def __init__(self, sources: Sequence[Source], batch_size: int, *, seed: int, seq_len: int | None = None,
                 pad_id: int = 0, weighting: str = "token"):
        if weighting not in WEIGHTINGS:
            raise ValueError(f"unknown loss weighting {weighting!r}; expected one of {WEIGHTINGS}")
        if not sources or any(len(s.examples) == 0 for s in sources):
            raise ValueError("every source needs at least one example")
        if any(s.weight < 0 for s in sources) or sum(s.weight for s in sources) <= 0:
            raise ValueError("source weights must be >= 0 with a positive sum")
        self.sources = [Source(s.name, [as_tokenized(e) for e in s.examples], s.weight, s.loss_weight)
                        for s in sources]
        self.batch_size, self.seq_len, self.pad_id, self.weighting = batch_size, seq_len, pad_id, weighting
        self._rng = random.Random(seed)
        self._orders: list[list[int]] = [[] for _ in self.sources]
        self._positions = [0] * len(self.sources)
        self._n_drawn = 0
        self._stream: dict[str, list] = {"ids": [], "weights": [], "segments": [], "kinds": []}
        # Per kind of data (an example's ``source``, else its Source's name): tokens served, tokens
        # with a loss weight, and their summed final weight (after "example" weighting).
        self.kinds = list(dict.fromkeys(e.source or s.name for s in self.sources for e in s.examples))
        self._kind_of = [[self.kinds.index(e.source or s.name) for e in s.examples] for s in self.sources]
        self._totals = {k: {"tokens": 0, "loss_tokens": 0, "weight": 0.0} for k in self.kinds}

    # -- order ------------------------------------------------------------------------------
    def _pick_source(self) -> int:
        if len(self.sources) == 1:
            return 0
        r = self._rng.random() * sum(s.weight for s in self.sources)
        for k, s in enumerate(self.sources):
            r -= s.weight
            if r < 0:
                return k
        return max(k for k, s in enumerate(self.sources) if s.weight > 0)

    def _draw(self) -> tuple[list[int], list[float], int]:
        k = self._pick_source()
        source = self.sources[k]
        if self._positions[k] >= len(self._orders[k]):
            order = list(range(len(source.examples)))
            self._rng.shuffle(order)
            self._orders[k], self._positions[k] = order, 0
        index = self._orders[k][self._positions[k]]
        example = source.examples[index]
        self._positions[k] += 1
        self._n_drawn += 1
        return example.ids, [w * source.loss_weight for w in example.weights], self._kind_of[k][index]

    # -- batches ----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        if self.seq_len is not None:
            ids, weights, segments, kinds = self._next_packed()
        else:
            ids, weights, segments, kinds = self._next_padded()
        mask = segments >= 0
        labels = ids.masked_fill(weights == 0, -100)
        weights[:, 0] = 0.0  # the first token of a row is never a prediction target
        if self.weighting == "example":
            weights = _per_example(weights, segments)
        self._count(weights, kinds)
        return {"input_ids": ids, "attention_mask": mask.long(), "labels": labels, "loss_weights": weights}

    def _count(self, weights: torch.Tensor, kinds: torch.Tensor) -> None:
        for k, name in enumerate(self.kinds):
            here = kinds == k
            if bool(here.any()):
                totals = self._totals[name]
                totals["tokens"] += int(here.sum())
                totals["loss_tokens"] += int((here & (weights > 0)).sum())
                totals["weight"] += float(weights[here].sum())

    def source_shares(self) -> dict[str, dict]:
        """Per kind of data, over every batch served so far: ``tokens``, ``loss_tokens`` (tokens
        with a loss weight), ``loss_token_share`` (their share of all loss-bearing tokens) and
        ``loss_share`` (its share of the summed loss weight, i.e. of the loss: it differs from the
        token share under "example" weighting)."""
        n_loss = sum(t["loss_tokens"] for t in self._totals.values()) or 1
        weight = sum(t["weight"] for t in self._totals.values()) or 1.0
        return {k: {"tokens": t["tokens"], "loss_tokens": t["loss_tokens"],
                    "loss_token_share": t["loss_tokens"] / n_loss, "loss_share": t["weight"] / weight}
                for k, t in self._totals.items()}

    def _next_packed(self):
        need = self.batch_size * self.seq_len
        stream = self._stream
        while len(stream["ids"]) < need:
            ids, weights, kind = self._draw()
            stream["ids"] += ids
            stream["weights"] += weights
            stream["segments"] += [self._n_drawn] * len(ids)
            stream["kinds"] += [kind] * len(ids)
        shape = (self.batch_size, self.seq_len)
        out = [torch.tensor(stream[key][:need], dtype=dtype).view(shape)
               for key, dtype in (("ids", torch.long), ("weights", torch.float32), ("segments", torch.long),
                                  ("kinds", torch.long))]
        for key in stream:
            stream[key] = stream[key][need:]
        return tuple(out)

    def _next_padded(self):
        chosen = [self._draw() for _ in range(self.batch_size)]
        width = max(len(ids) for ids, _, _ in chosen)
        ids = torch.full((self.batch_size, width), self.pad_id, dtype=torch.long)
        weights = torch.zeros((self.batch_size, width))
        segments = torch.full((self.batch_size, width), -1, dtype=torch.long)
        kinds = torch.full((self.batch_size, width), -1, dtype=torch.long)
        for row, (x, w, kind) in enumerate(chosen):
            ids[row, : len(x)] = torch.tensor(x, dtype=torch.long)
            weights[row, : len(w)] = torch.tensor(w, dtype=torch.float32)
            segments[row, : len(x)] = row
            kinds[row, : len(x)] = kind
        return ids, weights, segments, kinds

    # -- resume -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        version, internal, gauss = self._rng.getstate()
        return {"rng": [version, list(internal), gauss], "orders": self._orders, "positions": self._positions,
                "n_drawn": self._n_drawn, "stream": self._stream, "totals": self._totals}

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss))
        self._orders = [list(o) for o in state["orders"]]
        self._positions = list(state["positions"])
        self._n_drawn = state["n_drawn"]
        self._stream = {k: list(v) for k, v in state["stream"].items()}
        if "kinds" not in self._stream:  # a state saved before per-kind totals were kept
            self._stream["kinds"] = [0] * len(self._stream["ids"])
        if "totals" in state:
            self._totals = {k: dict(v) for k, v in state["totals"].items()}


def _per_example(weights: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Divide each token's weight by the total weight of its example's piece in the same row."""
    rows = torch.arange(weights.shape[0]).unsqueeze(1).expand_as(segments)
    keys = rows * (int(segments.max()) + 2) + (segments + 1)
    _, group = torch.unique(keys.flatten(), return_inverse=True)
    totals = torch.zeros(int(group.max()) + 1).scatter_add_(0, group, weights.flatten())
    per_token_total = totals[group].view_as(weights)
    return torch.where(per_token_total > 0, weights / per_token_total.clamp_min(1e-30), torch.zeros_like(weights))


def packed_batches(token_docs, batch_size: int, seq_len: int, seed: int, *, weighting: str = "token") -> MixedBatches:
    """Endless batches of ``seq_len`` tokens cut from a shuffled stream of documents."""
    return MixedBatches([Source("docs", token_docs)], batch_size, seed=seed, seq_len=seq_len, weighting=weighting)


def padded_batches(token_docs, batch_size: int, pad_id: int, seed: int, *, weighting: str = "token") -> MixedBatches:
    """Endless batches of whole documents, right-padded; padding is excluded from the loss."""
    return MixedBatches([Source("docs", token_docs)], batch_size, seed=seed, pad_id=pad_id, weighting=weighting)


def mixed_batches(sources: Sequence[Source], batch_size: int, *, seed: int, seq_len: int | None = None,
                  pad_id: int = 0, weighting: str = "token") -> MixedBatches:
    """Batches mixing several sources (e.g. claim documents, background corpus, QA examples)."""
    return MixedBatches(sources, batch_size, seed=seed, seq_len=seq_len, pad_id=pad_id, weighting=weighting)
