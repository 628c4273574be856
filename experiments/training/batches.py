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

WEIGHTINGS = ("token", "example")


@dataclass(frozen=True)
class Tokenized:
    """Token ids of one example and the loss weight of each token as a prediction target."""

    ids: list[int]
    weights: list[float]

    def __post_init__(self):
        if len(self.ids) != len(self.weights):
            raise ValueError(f"{len(self.ids)} ids but {len(self.weights)} weights")


def as_tokenized(example) -> Tokenized:
    return example if isinstance(example, Tokenized) else Tokenized(list(example), [1.0] * len(example))


def tokenize_documents(tokenizer, docs: list[str], max_len: int) -> list[list[int]]:
    """Token ids of each document followed by EOS, truncated to ``max_len``."""
    ids = tokenizer(docs, add_special_tokens=True)["input_ids"]
    eos = tokenizer.eos_token_id
    return [(x + ([eos] if eos is not None else []))[:max_len] for x in ids]


def tokenize_with_spans(tokenizer, docs: Sequence[str], max_len: int,
                        spans: Sequence[Sequence[tuple]] | None = None) -> list[Tokenized]:
    """Tokenize documents (plus EOS, truncated to ``max_len``) and weight tokens by character spans.

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
    eos = tokenizer.eos_token_id
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
        if eos is not None:
            ids, weights = ids + [eos], weights + [1.0]
        out.append(Tokenized(ids[:max_len], weights[:max_len]))
    return out


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
        self._stream: dict[str, list] = {"ids": [], "weights": [], "segments": []}

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

    def _draw(self) -> tuple[list[int], list[float]]:
        k = self._pick_source()
        source = self.sources[k]
        if self._positions[k] >= len(self._orders[k]):
            order = list(range(len(source.examples)))
            self._rng.shuffle(order)
            self._orders[k], self._positions[k] = order, 0
        example = source.examples[self._orders[k][self._positions[k]]]
        self._positions[k] += 1
        self._n_drawn += 1
        return example.ids, [w * source.loss_weight for w in example.weights]

    # -- batches ----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        if self.seq_len is not None:
            ids, weights, segments = self._next_packed()
        else:
            ids, weights, segments = self._next_padded()
        mask = segments >= 0
        labels = ids.masked_fill(weights == 0, -100)
        weights[:, 0] = 0.0  # the first token of a row is never a prediction target
        if self.weighting == "example":
            weights = _per_example(weights, segments)
        return {"input_ids": ids, "attention_mask": mask.long(), "labels": labels, "loss_weights": weights}

    def _next_packed(self):
        need = self.batch_size * self.seq_len
        stream = self._stream
        while len(stream["ids"]) < need:
            ids, weights = self._draw()
            stream["ids"] += ids
            stream["weights"] += weights
            stream["segments"] += [self._n_drawn] * len(ids)
        shape = (self.batch_size, self.seq_len)
        out = [torch.tensor(stream[key][:need], dtype=dtype).view(shape)
               for key, dtype in (("ids", torch.long), ("weights", torch.float32), ("segments", torch.long))]
        for key in stream:
            stream[key] = stream[key][need:]
        return tuple(out)

    def _next_padded(self):
        chosen = [self._draw() for _ in range(self.batch_size)]
        width = max(len(ids) for ids, _ in chosen)
        ids = torch.full((self.batch_size, width), self.pad_id, dtype=torch.long)
        weights = torch.zeros((self.batch_size, width))
        segments = torch.full((self.batch_size, width), -1, dtype=torch.long)
        for row, (x, w) in enumerate(chosen):
            ids[row, : len(x)] = torch.tensor(x, dtype=torch.long)
            weights[row, : len(w)] = torch.tensor(w, dtype=torch.float32)
            segments[row, : len(x)] = row
        return ids, weights, segments

    # -- resume -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        version, internal, gauss = self._rng.getstate()
        return {"rng": [version, list(internal), gauss], "orders": self._orders, "positions": self._positions,
                "n_drawn": self._n_drawn, "stream": self._stream}

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss))
        self._orders = [list(o) for o in state["orders"]]
        self._positions = list(state["positions"])
        self._n_drawn = state["n_drawn"]
        self._stream = {k: list(v) for k, v in state["stream"].items()}


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
