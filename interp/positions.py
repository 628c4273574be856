"""Which token positions of a text to read: small selector dataclasses.

Every selector resolves, for one text, to token indices in its *unpadded* token sequence
plus a weight per index; the residual vector is the weighted sum of the hidden states at
those indices. ``Last()`` is one index with weight 1 (so it is bit-exact), means are
uniform weights. Padding is handled later by shifting indices to the padded layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import torch

from interp.errors import InterpInputError

REDUCTIONS = ("mean", "last", "first")


@dataclass(frozen=True)
class Last:
    """The last non-padding token (for decoders: the one that predicts the next token)."""


@dataclass(frozen=True)
class Mean:
    """Mean over all non-padding tokens, special tokens (BOS, CLS, SEP) included."""


@dataclass(frozen=True)
class Span:
    """The tokens overlapping an occurrence of ``substring`` in the text.

    ``occurrence`` picks which match (0 = first, -1 = last); ``reduce`` is "mean",
    "last" or "first" over the span's tokens. Needs a fast tokenizer (offsets).
    """

    substring: str
    reduce: str = "mean"
    occurrence: int = 0


@dataclass(frozen=True)
class CharRange:
    """The tokens overlapping characters ``[start, end)`` of every text. Needs a fast tokenizer."""

    start: int
    end: int
    reduce: str = "mean"


@dataclass(frozen=True)
class Indices:
    """Explicit token indices into each unpadded token sequence (negative counts from the end).

    ``indices`` is one tuple used for every text, or one tuple per text.
    """

    indices: tuple
    reduce: str = "mean"


Position = Union[Last, Mean, Span, CharRange, Indices]


def as_position(position) -> Position:
    """Normalise a user's position argument to a selector, or raise a one-line error.

    Accepts a selector, "last", "mean", an int or list of ints (token indices), or a dict
    ``{"substring": s, ...}``, ``{"chars": (a, b), ...}``, ``{"indices": [...], ...}``.
    """
    if isinstance(position, (Last, Mean)):
        return position
    if isinstance(position, (Span, CharRange, Indices)):
        _check_fields(position)
        return position
    if position == "last":
        return Last()
    if position == "mean":
        return Mean()
    if isinstance(position, int) and not isinstance(position, bool):
        return Indices((position,))
    if isinstance(position, (list, tuple)) and position:
        return as_position(Indices(tuple(position)))
    if isinstance(position, dict):
        extra = {k: v for k, v in position.items() if k in ("reduce", "occurrence")}
        if "substring" in position:
            return as_position(Span(position["substring"], **extra))
        if "chars" in position:
            start, end = position["chars"]
            extra.pop("occurrence", None)
            return as_position(CharRange(start, end, **extra))
        if "indices" in position:
            extra.pop("occurrence", None)
            return as_position(Indices(tuple(position["indices"]), **extra))
    raise InterpInputError(f"bad position {position!r}; expected 'last', 'mean', token indices, Span(substring=...), "
                           f"CharRange(start, end) or Indices([...])")


def _check_fields(position) -> None:
    if position.reduce not in REDUCTIONS:
        raise InterpInputError(f"bad reduce {position.reduce!r} in {position!r}; expected one of {REDUCTIONS}")
    if isinstance(position, Span) and (not isinstance(position.substring, str) or not position.substring):
        raise InterpInputError(f"bad Span substring {position.substring!r}; expected a non-empty string")
    if isinstance(position, CharRange) and not (isinstance(position.start, int) and isinstance(position.end, int)
                                                and 0 <= position.start < position.end):
        raise InterpInputError(f"bad CharRange({position.start!r}, {position.end!r}); expected 0 <= start < end")
    if isinstance(position, Indices):
        nested = [isinstance(row, (list, tuple)) for row in position.indices]
        flat = [i for row in position.indices for i in (row if isinstance(row, (list, tuple)) else [row])]
        if (not flat or any(nested) != all(nested)
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in flat)):
            raise InterpInputError(f"bad Indices {position.indices!r}; expected ints or one list of ints per text")


def needs_offsets(position: Position) -> bool:
    return isinstance(position, (Span, CharRange))


def token_weights(position: Position, n_tokens: int, *, text: str, text_index: int, offsets=None,
                  n_texts: int = 1) -> tuple[list[int], list[float]]:
    """Token indices (in the unpadded sequence) and weights that ``position`` picks in one text."""
    if isinstance(position, Last):
        return [n_tokens - 1], [1.0]
    if isinstance(position, Mean):
        return list(range(n_tokens)), [1.0 / n_tokens] * n_tokens
    if isinstance(position, Indices):
        return _reduce(_explicit_indices(position, n_tokens, text_index, n_texts), position.reduce)
    start, end = _char_range(position, text, text_index)
    picked = [t for t, (s, e) in enumerate(offsets) if e > s and s < end and e > start]
    if not picked:
        raise InterpInputError(f"no token covers characters [{start}, {end}) of text {text_index} ({text[:60]!r})")
    return _reduce(picked, position.reduce)


def _char_range(position, text: str, text_index: int) -> tuple[int, int]:
    if isinstance(position, CharRange):
        if position.end > len(text):
            raise InterpInputError(f"CharRange({position.start}, {position.end}) runs past text {text_index}, "
                                   f"which has {len(text)} characters")
        return position.start, position.end
    starts, at = [], text.find(position.substring)
    while at >= 0:
        starts.append(at)
        at = text.find(position.substring, at + 1)
    if not starts:
        raise InterpInputError(f"substring {position.substring!r} not found in text {text_index} ({text[:60]!r})")
    try:
        start = starts[position.occurrence]
    except IndexError:
        raise InterpInputError(f"substring {position.substring!r} occurs {len(starts)} times in text {text_index}, "
                               f"so occurrence={position.occurrence} does not exist") from None
    return start, start + len(position.substring)


def _explicit_indices(position: Indices, n_tokens: int, text_index: int, n_texts: int) -> list[int]:
    rows = position.indices
    if isinstance(rows[0], (list, tuple)):  # one row per text (_check_fields: all rows or none)
        if len(rows) != n_texts:
            raise InterpInputError(f"Indices gives {len(rows)} rows for {n_texts} texts; expected one row per text")
        rows = rows[text_index]
    out = []
    for i in rows:
        if not -n_tokens <= i < n_tokens:
            raise InterpInputError(f"token index {i} is out of range for text {text_index}, which has {n_tokens} tokens")
        out.append(i % n_tokens)
    return out


def _reduce(indices: list[int], how: str) -> tuple[list[int], list[float]]:
    if how == "last":
        return [indices[-1]], [1.0]
    if how == "first":
        return [indices[0]], [1.0]
    return list(indices), [1.0 / len(indices)] * len(indices)


@dataclass
class Selection:
    """Padded-layout gather plan for one batch: ``index``/``weight`` are ``[batch, k]``.
    ``single``: when every row reads one token whole, its index into the flattened
    ``[batch * width]`` positions, so a read is one ``index_select`` (per layer, per batch: on
    a GPU the host's time launching these counts, not the GPU's)."""

    index: torch.Tensor
    weight: torch.Tensor
    width: int = 0
    single: torch.Tensor | None = None

    def pick(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[batch, seq, d]`` -> ``[batch, d]``: in ``hidden``'s dtype for single tokens, else float32."""
        if self.single is not None and hidden.shape[1] == self.width:
            single = self.single if self.single.device == hidden.device else self.single.to(hidden.device)
            return hidden.reshape(-1, hidden.shape[-1]).index_select(0, single)
        index, weight = self.index.to(hidden.device), self.weight.to(hidden.device)
        picked = hidden.gather(1, index.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])).float()
        if picked.shape[1] == 1:
            return picked[:, 0] * weight
        return (picked * weight.unsqueeze(-1)).sum(1)

    def reduce(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[batch, seq, d]`` -> ``[batch, d]`` float32, gathered on ``hidden``'s device."""
        return self.pick(hidden).float()

    @property
    def rows_and_columns(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch row, padded column) of every selected token, for interventions."""
        mask = self.weight != 0
        rows = torch.arange(self.index.shape[0], device=self.index.device).unsqueeze(1).expand_as(self.index)
        return rows[mask], self.index[mask]


def build_selection(per_text: Sequence[tuple[list[int], list[float]]], starts: torch.Tensor, width: int,
                    device) -> Selection:
    """Shift unpadded indices by each row's first real column (``starts``); pad rows with weight 0."""
    k = max(len(idx) for idx, _ in per_text)
    if k == 1:
        index = (torch.tensor([idx[0] for idx, _ in per_text]) + starts).unsqueeze(1)
        weight = torch.tensor([w[0] for _, w in per_text], dtype=torch.float32).unsqueeze(1)
    else:
        index, weight = [], []
        for (idx, w), start in zip(per_text, starts.tolist()):
            # padding slots repeat a real token, so 0 * value stays finite
            index.append([i + start for i in idx] + [idx[0] + start] * (k - len(idx)))
            weight.append(list(w) + [0.0] * (k - len(w)))
        index, weight = torch.tensor(index, dtype=torch.long), torch.tensor(weight, dtype=torch.float32)
    single = None
    if k == 1 and bool((weight == 1).all()):
        single = (torch.arange(len(per_text)) * width + index[:, 0]).to(device, non_blocking=True)
    return Selection(index.to(device, non_blocking=True), weight.to(device, non_blocking=True), width, single)
