"""Edit the residual stream along a direction (through nnsight) and read the logits, so
belief can be measured under intervention.

Layers use the residual index of ``interp.residuals`` (0 = embeddings, i + 1 = output of
block i, n_layers = after the final norm for decoders). An edit's ``position`` picks the
tokens to edit (the token *set* of a selector: ``Last()`` one token, ``"all"``/``Mean()``
every real token, ``Span``/``CharRange``/``Indices`` their tokens); padding is never edited.

    add = AddDirection(truth_direction, layers=[4, 5], scale=8.0)
    logp = interp.logprobs_under(lm, prompts, [add])        # [n_prompts, vocab]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import torch
from tqdm.auto import tqdm

from interp.batching import batches, check_texts
from interp.errors import InterpInputError
from interp.loading import LoadedModel
from interp.positions import Mean, Position, as_position
from interp.residuals import check_layers


@dataclass(frozen=True, eq=False)
class AddDirection:
    """``h += scale * direction`` (the direction is used as given, not normalised)."""

    direction: torch.Tensor
    layers: Union[int, Sequence[int]]
    position: object = "last"
    scale: float = 1.0

    def apply(self, h: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        return h + self.scale * direction


@dataclass(frozen=True, eq=False)
class ProjectOut:
    """Remove the component along ``direction``: ``h -= (h . u) u`` with ``u`` the unit direction."""

    direction: torch.Tensor
    layers: Union[int, Sequence[int]]
    position: object = "all"

    def apply(self, h: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        unit = direction / direction.norm()
        return h - (h @ unit).unsqueeze(-1) * unit


@dataclass(frozen=True, eq=False)
class Steer:
    """Set the component along the unit direction to ``value``: ``h += (value - h . u) u``."""

    direction: torch.Tensor
    layers: Union[int, Sequence[int]]
    value: float = 0.0
    position: object = "last"

    def apply(self, h: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        unit = direction / direction.norm()
        return h + (self.value - h @ unit).unsqueeze(-1) * unit


Intervention = Union[AddDirection, ProjectOut, Steer]


@dataclass
class _Edit:
    """One intervention at one layer, with its checked direction and position."""

    intervention: Intervention
    layer: int
    direction: torch.Tensor
    slot: int  # index of its position in Batch.also


def _edit_position(position) -> Position:
    return Mean() if position == "all" else as_position(position)


def _check(lm: LoadedModel, interventions) -> tuple[list[_Edit], list[Position]]:
    if isinstance(interventions, (AddDirection, ProjectOut, Steer)):
        interventions = [interventions]
    edits, positions = [], []
    for intervention in interventions:
        if not isinstance(intervention, (AddDirection, ProjectOut, Steer)):
            raise InterpInputError(f"bad intervention {intervention!r}; expected AddDirection, ProjectOut or Steer")
        direction = torch.as_tensor(intervention.direction, dtype=torch.float32).detach()
        if direction.shape != (lm.d_model,):
            raise InterpInputError(f"direction has shape {tuple(direction.shape)}; expected ({lm.d_model},)")
        if not torch.isfinite(direction).all() or (not isinstance(intervention, AddDirection)
                                                   and direction.norm() == 0):
            raise InterpInputError(f"direction of {type(intervention).__name__} must be finite and non-zero")
        positions.append(_edit_position(intervention.position))
        for layer in check_layers(intervention.layers, lm.n_layers):
            edits.append(_Edit(intervention, layer, direction.to(lm.device), len(positions) - 1))
    return sorted(edits, key=lambda e: e.layer), positions  # stable: same-layer edits keep their order


def _edited(hidden: torch.Tensor, edits: list[_Edit], selections) -> torch.Tensor:
    hidden = hidden.clone()
    for edit in edits:
        rows, cols = selections[edit.slot].rows_and_columns
        rows, cols = rows.to(hidden.device), cols.to(hidden.device)
        picked = hidden[rows, cols].float()
        hidden[rows, cols] = edit.intervention.apply(picked, edit.direction.to(hidden.device)).to(hidden.dtype)
    return hidden


def logits_under(lm: LoadedModel, texts, interventions, *, read="last", batch_size: int | None = None,
                 progress: bool = False) -> torch.Tensor:
    """Logits ``[n_texts, vocab]`` (float32, CPU) at position ``read`` with ``interventions``
    applied in one nnsight trace per batch. An empty list gives the plain model's logits."""
    from interp.backends.via_nnsight import first, sites

    if not isinstance(lm, LoadedModel):
        raise InterpInputError(f"model must be a LoadedModel from interp.load_model, not {type(lm).__name__}")
    texts = check_texts(texts)
    edits, positions = _check(lm, interventions)
    s, n = sites(lm, with_head=True), lm.n_layers
    out = None
    with torch.inference_mode():
        for batch in tqdm(batches(lm, texts, as_position(read), batch_size, also=tuple(positions)),
                          disable=not progress, desc="interventions"):
            inputs = {k: v for k, v in batch.inputs.items() if k != "use_cache"}
            with s.wrapped.trace(**inputs):
                for layer in sorted({e.layer for e in edits}):
                    here = [e for e in edits if e.layer == layer]
                    if layer == 0:
                        s.blocks[0].input = _edited(s.blocks[0].input, here, batch.also)
                    elif layer == n and s.final_norm is not None:
                        s.final_norm.output = _edited(s.final_norm.output, here, batch.also)
                    else:
                        block = s.blocks[layer - 1]
                        output = block.output
                        if isinstance(output, tuple):
                            block.output = (_edited(output[0], here, batch.also), *output[1:])
                        else:
                            block.output = _edited(output, here, batch.also)
                logits = first(s.wrapped.output.logits if hasattr(s.wrapped.output, "logits") else s.wrapped.output)
                picked = batch.selection.reduce(logits).save()
            if out is None:
                out = torch.empty(len(texts), picked.shape[-1])
            out[batch.rows] = picked.cpu()
    return out


def logprobs_under(lm: LoadedModel, texts, interventions, *, read="last", batch_size: int | None = None,
                   progress: bool = False) -> torch.Tensor:
    """Log-probabilities ``[n_texts, vocab]`` at ``read`` under ``interventions`` (float32, CPU)."""
    return torch.log_softmax(logits_under(lm, texts, interventions, read=read, batch_size=batch_size,
                                          progress=progress), dim=-1)


__all__ = ["AddDirection", "ProjectOut", "Steer", "logits_under", "logprobs_under"]
