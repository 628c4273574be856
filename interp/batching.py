"""Tokenize once, group texts of similar length, and pad batches on either side.

Padding is done here rather than by the tokenizer so every backend sees the same tensors,
with explicit ``position_ids`` counted from each row's first real token: left padding then
gives absolute-position models (GPT-2, BERT) and rotary models the unpadded numbers.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from itertools import chain
from typing import Iterator, Sequence

import numpy as np
import torch

from interp.errors import InterpInputError
from interp.loading import LoadedModel
from interp.masks import full_mask
from interp.positions import Position, Selection, build_selection, needs_offsets, token_weights

DEFAULT_MAX_TOKENS = 16384  # tokens per batch (padded) when batch_size is not given
MAX_BATCH = 512


@dataclass
class Encoded:
    """Unpadded token ids of every text, concatenated in numpy arrays so a batch is padded with a
    few vectorized ops (the thread that launches the GPU's work also pads); plus character
    offsets when a selector needs them."""

    token_ids: np.ndarray  # int64, every text's ids one after another
    lengths: np.ndarray  # int64, tokens per text
    starts: np.ndarray  # int64, where each text's ids begin in token_ids
    token_types: np.ndarray | None  # like token_ids (encoder-only models)
    offsets: list[list[tuple[int, int]]] | None

    @classmethod
    def from_lists(cls, ids: Sequence[Sequence[int]], token_types=None, offsets=None) -> "Encoded":
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        n = int(lengths.sum())

        def flat(lists):
            return np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=n)
        return cls(flat(ids), lengths, np.cumsum(lengths) - lengths,
                   None if token_types is None else flat(token_types), offsets)

    def ids_of(self, i: int) -> list[int]:
        start = int(self.starts[i])
        return self.token_ids[start:start + int(self.lengths[i])].tolist()


@dataclass
class Batch:
    rows: list[int]  # indices into the caller's texts
    inputs: dict  # forward kwargs, on the model's device (``attention_mask`` may be 4D: ``interp.masks``)
    padding_mask: torch.Tensor  # [batch, width], 1 on real tokens, on the model's device
    selection: Selection | None  # the position being read (None: no position was asked for)
    also: list[Selection] = field(default_factory=list)  # further positions (e.g. where to intervene)
    starts: np.ndarray | None = None  # each row's first real column (0 unless padded on the left)


def check_texts(texts) -> list[str]:
    if isinstance(texts, str) or not hasattr(texts, "__len__") or not len(texts):
        raise InterpInputError("texts must be a non-empty list of strings")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InterpInputError(f"text {i} is a {type(text).__name__}, expected a string")
    return texts


def check_inputs(inputs) -> list:
    """``inputs`` as a list: every one a string, or every one a non-empty sequence of token ids
    (ints, used exactly as given: no special tokens added)."""
    if isinstance(inputs, str) or not hasattr(inputs, "__len__") or not len(inputs):
        raise InterpInputError("texts must be a non-empty list of strings (or of token-id lists)")
    inputs = list(inputs)
    if all(isinstance(x, str) for x in inputs):
        return inputs
    for i, ids in enumerate(inputs):
        if isinstance(ids, str) or not hasattr(ids, "__len__") or not len(ids) or not all(
                isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in ids):
            raise InterpInputError(f"input {i} is neither a string nor a non-empty list of token ids; "
                                   "give all strings or all token-id lists")
    return [[int(t) for t in ids] for ids in inputs]


def is_token_ids(inputs: list) -> bool:
    """Whether :func:`check_inputs`' result holds token-id lists (not strings)."""
    return bool(inputs) and not isinstance(inputs[0], str)


def ids_only(tok, texts: list[str]) -> Encoded | None:
    """Token ids straight from the Rust tokenizer's ``encode_batch_fast`` (no offsets computed:
    ~40% of the tokenizer call on 4096 statements). The tokenizer is first called on one text
    so its own settings (no padding, no truncation, special tokens) are in force; None when
    this tokenizer has no such backend."""
    backend = getattr(tok, "_tokenizer", None)
    if not getattr(tok, "is_fast", False) or not hasattr(backend, "encode_batch_fast"):
        return None
    first = tok(texts[:1], return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    if backend.padding is not None or backend.truncation is not None:
        return None
    ids = [encoding.ids for encoding in backend.encode_batch_fast(texts, add_special_tokens=True)]
    if ids[:1] != first:  # the backend does not reproduce the tokenizer's own call
        return None
    return Encoded.from_lists(ids)


def encode(lm: LoadedModel, texts: list, *, offsets: bool = False) -> Encoded:
    """Token ids of ``texts`` (the tokenizer's special tokens added, but never a second BOS:
    :func:`without_doubled_bos`), or of token-id lists as given."""
    tok = lm.tokenizer
    if is_token_ids(texts):
        if offsets:
            raise InterpInputError("positions that name words or characters (Span, CharRange) need texts, "
                               "not token ids")
        vocab = lm.model.get_input_embeddings().num_embeddings
        if (i := next((i for i, ids in enumerate(texts) if min(ids) < 0 or max(ids) >= vocab), None)) is not None:
            raise InterpInputError(f"input {i} has token ids outside the model's vocabulary of {vocab}")
        encoded = Encoded.from_lists(texts)
        check_context(lm, encoded.lengths, lambda i: f"token ids {texts[i][:8]} ...")
        return encoded
    if offsets and not getattr(tok, "is_fast", False):
        raise InterpInputError(f"span and character-range positions need a fast tokenizer (offset mapping); "
                               f"{type(tok).__name__} is not one")
    if offsets or lm.is_encoder_only or (encoded := ids_only(tok, texts)) is None:
        no_types = {} if lm.is_encoder_only else {"return_token_type_ids": False}  # unused: ~15% of the call
        enc = tok(texts, return_offsets_mapping=offsets, return_attention_mask=False, **no_types)
        token_types = enc.get("token_type_ids") if lm.is_encoder_only else None
        encoded = Encoded.from_lists(enc["input_ids"], token_types, enc.get("offset_mapping") if offsets else None)
    if len(empty := np.flatnonzero(encoded.lengths == 0)):
        i = int(empty[0])
        raise InterpInputError(f"text {i} ({texts[i][:60]!r}) tokenizes to no tokens")
    encoded = without_doubled_bos(tok, texts, encoded)
    check_context(lm, encoded.lengths, lambda i: repr(texts[i][:60]))
    return encoded


def without_doubled_bos(tok, texts: list[str], encoded: Encoded) -> Encoded:
    """``encoded`` less the BOS the tokenizer added to texts that begin with the BOS token's text
    already: a prompt rendered by a chat template that writes ``{{ bos_token }}`` (Llama 3,
    Gemma) and tokenized by a tokenizer that adds one too would otherwise start with two, a
    sequence the model never saw. Only a doubled BOS is dropped: a text's own BOS tokens are
    kept, and texts that do not begin with the BOS text are left alone."""
    bos, bos_text = getattr(tok, "bos_token_id", None), getattr(tok, "bos_token", None)
    if bos is None or not bos_text:
        return encoded
    ids, starts = encoded.token_ids, encoded.starts
    doubled = [i for i in np.flatnonzero((encoded.lengths >= 2) & (ids[starts] == bos))
               if ids[starts[i] + 1] == bos and texts[i].startswith(bos_text)]
    if not doubled:
        return encoded
    rows = [encoded.ids_of(i) for i in range(len(texts))]
    types = None if encoded.token_types is None else [
        encoded.token_types[s:s + n].tolist() for s, n in zip(encoded.starts, encoded.lengths)]
    offsets = None if encoded.offsets is None else [list(o) for o in encoded.offsets]
    for i in doubled:
        del rows[i][0]
        if types is not None:
            del types[i][0]
        if offsets is not None:
            del offsets[i][0]
    return Encoded.from_lists(rows, types, offsets)


def check_context(lm: LoadedModel, lengths: np.ndarray, describe) -> None:
    """One line naming the first text longer than the model's context (``describe(i)``: text
    ``i``, briefly), before any forward."""
    limit = lm.max_context
    if limit is not None and len(long := np.flatnonzero(lengths > limit)):
        i = int(long[0])
        raise InterpInputError(f"text {i} has {lengths[i]} tokens, longer than the model's context of {limit}: "
                               f"{describe(i)}")


def plan_batches(lengths: list[int], batch_size: int | None, max_tokens: int = DEFAULT_MAX_TOKENS) -> list[list[int]]:
    """Texts sorted by length, cut into batches, longest first (``Batches`` says why):
    ``batch_size`` texts each (a short last batch holds the shortest texts), or (default) as
    many as fit ``max_tokens`` padded tokens, so short statements run in large batches."""
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InterpInputError(f"bad batch_size {batch_size!r}; expected a positive int or None")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    if batch_size is not None:
        order.reverse()
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    batches, current = [], []
    for i in order:  # ascending, so the newest text is the longest in the batch
        if current and ((len(current) + 1) * lengths[i] > max_tokens or len(current) >= MAX_BATCH):
            batches.append(current)
            current = []
        current.append(i)
    return (batches + [current] if current else batches)[::-1]


def forward_kwargs(lm: LoadedModel) -> set[str]:
    """The keyword arguments the base model's forward accepts (cached per model)."""
    if "forward_kwargs" not in lm.backend_state:
        lm.backend_state["forward_kwargs"] = set(inspect.signature(lm.base_model.forward).parameters)
    return lm.backend_state["forward_kwargs"]


def collate(lm: LoadedModel, encoded: Encoded, rows: list[int], picks: list[list[tuple[list[int], list[float]]]]) -> Batch:
    """Pad ``rows`` to one batch on the tokenizer's padding side and plan the gathers."""
    tok, device = lm.tokenizer, lm.device
    texts = np.asarray(rows)
    lengths = encoded.lengths[texts]
    width = int(lengths.max())
    left = getattr(tok, "padding_side", "right") == "left"
    starts = width - lengths if left else np.zeros_like(lengths)
    columns = np.arange(width) - starts[:, None]  # each token's position in its own text
    real = (columns >= 0) & (columns < lengths[:, None])
    source = np.where(real, encoded.starts[texts][:, None] + columns, 0)  # where each token's id sits

    def padded(flat: np.ndarray, fill: int) -> np.ndarray:
        return np.where(real, flat[source], fill)

    accepted = forward_kwargs(lm)
    host = {"input_ids": padded(encoded.token_ids, tok.pad_token_id), "padding_mask": real.astype(np.int64)}
    if "position_ids" in accepted:
        host["position_ids"] = np.where(real, columns, 0)
    if encoded.token_types is not None and "token_type_ids" in accepted:
        host["token_type_ids"] = padded(encoded.token_types, 0)
    together = torch.from_numpy(np.stack(list(host.values()))).to(device, non_blocking=True)  # one copy for all
    inputs = dict(zip(host, together.unbind(0)))
    padding_mask = inputs.pop("padding_mask")
    mask = full_mask(lm, padding_mask)
    inputs["attention_mask"] = padding_mask if mask is None else mask
    if "use_cache" in accepted and not lm.is_encoder_only:
        inputs["use_cache"] = False
    selections = [build_selection([per_text[r] for r in rows], torch.from_numpy(starts), width, device)
                  for per_text in picks]
    return Batch(list(rows), inputs, padding_mask, selections[0] if selections else None, selections[1:], starts)


@dataclass
class Batches:
    """A lazily collated sequence of batches, longest texts first. Each is padded on the calling
    thread just before its forward (a thread padding ahead saved nothing measurable once padding
    took a millisecond or two: benchmarks/residuals.md).

    Longest first so a batch too large for the device fails at once, not after the rest of
    the work. On an H200 the order changed no throughput: run first, the longest batches queue
    GPU work that covers later padding, but the host then waits on the full launch queue
    (benchmarks/residuals.md)."""

    count: int
    iterator: Iterator[Batch]

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Batch]:
        return self.iterator


def batches(lm: LoadedModel, texts: list, position: Position, batch_size: int | None,
            also: tuple = ()) -> Batches:
    """Padded batches of ``texts`` (strings, or token-id lists used as given; sorted by length)
    ready for any backend; ``also`` are
    further positions resolved into ``Batch.also``. Every position is checked up front."""
    positions = [position, *also]
    encoded = encode(lm, texts, offsets=any(needs_offsets(p) for p in positions))
    lengths = encoded.lengths.tolist()
    words = not is_token_ids(texts)
    picks = [[token_weights(p, n, text=texts[r] if words else None, text_index=r, n_texts=len(texts),
                            offsets=encoded.offsets[r] if encoded.offsets else None)
              for r, n in enumerate(lengths)] for p in positions]  # bad positions fail before any forward
    plan = plan_batches(lengths, batch_size)
    made = (collate(lm, encoded, rows, picks) for rows in plan)
    return Batches(len(plan), made)
