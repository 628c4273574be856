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

from interp.batching import batches, check_inputs
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


@dataclass(frozen=True, eq=False)
class Patch:
    """Replace the residual stream with ``donor``'s on the same text: ``h = h_donor`` at
    ``layers`` and the tokens of ``position`` (activation patching across checkpoints).

    Parameters
    ----------
    donor : LoadedModel
        A model with the same tokenizer, width and number of layers as the one run (a finetuned
        checkpoint of it, or its base model). It is run on the same batch first; its residual
        stream (``interp.residuals``' index: 0 = embeddings, i + 1 = output of block i, n_layers
        = after the final norm) is written into the run model's at the chosen sites.
    layers : int or sequence of int
    position : selector, default "all"
        The tokens to patch ("all": every real token; ``Last()``, ``Span``, ``CharRange``,
        ``Indices``: their tokens).
    """

    donor: LoadedModel
    layers: Union[int, Sequence[int]]
    position: object = "all"


Intervention = Union[AddDirection, ProjectOut, Steer, Patch]
INTERVENTIONS = (AddDirection, ProjectOut, Steer, Patch)


@dataclass
class _Edit:
    """One intervention at one layer, with its checked direction and position."""

    intervention: Intervention
    layer: int
    direction: torch.Tensor | None  # None for a Patch
    slot: int  # index of its position in Batch.also


def _edit_position(position) -> Position:
    return Mean() if position == "all" else as_position(position)


def _check_donor(lm: LoadedModel, patch: Patch) -> None:
    from interp.cache import tokenizer_fingerprint

    donor = patch.donor
    if not isinstance(donor, LoadedModel):
        raise InterpInputError(f"Patch donor must be a LoadedModel from interp.load_model, not {type(donor).__name__}")
    if (donor.d_model, donor.n_layers) != (lm.d_model, lm.n_layers):
        raise InterpInputError(f"Patch donor {donor.name!r} has d_model {donor.d_model} and {donor.n_layers} layers; "
                               f"the model run has {lm.d_model} and {lm.n_layers}")
    if donor.tokenizer is not lm.tokenizer and tokenizer_fingerprint(donor.tokenizer) != tokenizer_fingerprint(lm.tokenizer):
        raise InterpInputError(f"Patch donor {donor.name!r} has another tokenizer than {lm.name!r}; "
                               "patching needs the same tokens in both")


def _check_direction(lm: LoadedModel, intervention) -> torch.Tensor:
    direction = torch.as_tensor(intervention.direction, dtype=torch.float32).detach()
    if direction.shape != (lm.d_model,):
        raise InterpInputError(f"direction has shape {tuple(direction.shape)}; expected ({lm.d_model},)")
    if not torch.isfinite(direction).all() or (not isinstance(intervention, AddDirection)
                                               and direction.norm() == 0):
        raise InterpInputError(f"direction of {type(intervention).__name__} must be finite and non-zero")
    return direction.to(lm.device)


def _check(lm: LoadedModel, interventions) -> tuple[list[_Edit], list[Position]]:
    if isinstance(interventions, INTERVENTIONS):
        interventions = [interventions]
    edits, positions = [], []
    for intervention in interventions:
        if not isinstance(intervention, INTERVENTIONS):
            raise InterpInputError(f"bad intervention {intervention!r}; expected AddDirection, ProjectOut, Steer or Patch")
        if isinstance(intervention, Patch):
            _check_donor(lm, intervention)
            direction = None
        else:
            direction = _check_direction(lm, intervention)
        positions.append(_edit_position(intervention.position))
        for layer in check_layers(intervention.layers, lm.n_layers):
            edits.append(_Edit(intervention, layer, direction, len(positions) - 1))
    return sorted(edits, key=lambda e: e.layer), positions  # stable: same-layer edits keep their order


def _donor_states(edits: list[_Edit], inputs: dict) -> dict[int, tuple]:
    """Each Patch donor's residual stream on this batch (``id(donor)`` -> hidden states per layer)."""
    states = {}
    for edit in edits:
        donor = getattr(edit.intervention, "donor", None)
        if donor is not None and id(donor) not in states:
            moved = {k: v.to(donor.device) if torch.is_tensor(v) else v for k, v in inputs.items()}
            states[id(donor)] = donor.model(**moved, output_hidden_states=True).hidden_states
    return states


def _edited(hidden: torch.Tensor, edits: list[_Edit], selections, donors: dict) -> torch.Tensor:
    hidden = hidden.clone()
    for edit in edits:
        rows, cols = selections[edit.slot].rows_and_columns
        rows, cols = rows.to(hidden.device), cols.to(hidden.device)
        if isinstance(edit.intervention, Patch):
            given = donors[id(edit.intervention.donor)][edit.layer].to(hidden.device)
            hidden[rows, cols] = given[rows, cols].to(hidden.dtype)
            continue
        picked = hidden[rows, cols].float()
        hidden[rows, cols] = edit.intervention.apply(picked, edit.direction.to(hidden.device)).to(hidden.dtype)
    return hidden


def _under(lm: LoadedModel, texts, interventions, read, batch_size, progress, layers=None) -> torch.Tensor:
    """One nnsight trace per batch with ``interventions`` applied: the logits at ``read``
    (``layers`` None) or the residual stream at ``read`` and each of ``layers``, after any edit at
    that layer. Float32, CPU."""
    from interp.backends.via_nnsight import first, sites

    if not isinstance(lm, LoadedModel):
        raise InterpInputError(f"model must be a LoadedModel from interp.load_model, not {type(lm).__name__}")
    texts = check_inputs(texts)
    edits, positions = _check(lm, interventions)
    wanted = [] if layers is None else check_layers(layers, lm.n_layers)
    s, n = sites(lm, with_head=True), lm.n_layers
    out = None
    with torch.inference_mode():
        for batch in tqdm(batches(lm, texts, as_position(read), batch_size, also=tuple(positions)),
                          disable=not progress, desc="interventions"):
            inputs = {k: v for k, v in batch.inputs.items() if k != "use_cache"}
            donors = _donor_states(edits, inputs)
            saved = {}
            with s.wrapped.trace(**inputs):
                for layer in sorted({e.layer for e in edits} | set(wanted)):  # envoys in execution order
                    here = [e for e in edits if e.layer == layer]
                    if layer == 0:
                        hidden = s.blocks[0].input
                        if here:
                            hidden = s.blocks[0].input = _edited(hidden, here, batch.also, donors)
                    elif layer == n and s.final_norm is not None:
                        hidden = s.final_norm.output
                        if here:
                            hidden = s.final_norm.output = _edited(hidden, here, batch.also, donors)
                    else:
                        block = s.blocks[layer - 1]
                        output = block.output
                        hidden = first(output)
                        if here:
                            hidden = _edited(hidden, here, batch.also, donors)
                            block.output = (hidden, *output[1:]) if isinstance(output, tuple) else hidden
                    if layer in wanted:
                        saved[layer] = batch.selection.reduce(hidden).save()
                if layers is None:
                    logits = first(s.wrapped.output.logits if hasattr(s.wrapped.output, "logits") else s.wrapped.output)
                    picked = batch.selection.reduce(logits).save()
            if layers is not None:
                picked = torch.stack([saved[layer] for layer in wanted], dim=1)
            if out is None:
                out = torch.empty(len(texts), *picked.shape[1:])
            out[batch.rows] = picked.float().cpu()
    return out


def logits_under(lm: LoadedModel, texts, interventions, *, read="last", batch_size: int | None = None,
                 progress: bool = False) -> torch.Tensor:
    """Logits ``[n_texts, vocab]`` (float32, CPU) at position ``read`` with ``interventions``
    applied in one nnsight trace per batch. An empty list gives the plain model's logits.

    ``texts`` may be token-id lists instead of strings (used exactly as given, no special tokens
    added: e.g. a rendered chat prompt's ids followed by the start of a reply); positions that
    name words or characters (``Span``, ``CharRange``) need strings."""
    return _under(lm, texts, interventions, read, batch_size, progress)


def residuals_under(lm: LoadedModel, texts, interventions, *, layers, read="last", batch_size: int | None = None,
                    progress: bool = False) -> torch.Tensor:
    """The residual stream ``[n_texts, len(layers), d_model]`` (float32, CPU) at position ``read``
    and each of ``layers`` (``interp.residuals``' index), with ``interventions`` applied: what a
    probe reads there under an edit or a patch at an earlier layer. An edit at one of ``layers``
    is included in that layer's reading. An empty list gives ``interp.residuals``' vectors.

    Parameters
    ----------
    lm : LoadedModel
    texts : list of str, or list of token-id lists
        Token ids are used exactly as given (as for :func:`logits_under`).
    interventions : intervention or list of them
        ``AddDirection``, ``ProjectOut``, ``Steer``, ``Patch``.
    layers : int or list of int
    read : position selector, default "last"
    batch_size : int, optional
    progress : bool

    Returns
    -------
    torch.Tensor
    """
    return _under(lm, texts, interventions, read, batch_size, progress, layers=layers)


def logprobs_under(lm: LoadedModel, texts, interventions, *, read="last", batch_size: int | None = None,
                   progress: bool = False) -> torch.Tensor:
    """Log-probabilities ``[n_texts, vocab]`` at ``read`` under ``interventions`` (float32, CPU)."""
    return torch.log_softmax(logits_under(lm, texts, interventions, read=read, batch_size=batch_size,
                                          progress=progress), dim=-1)


__all__ = ["AddDirection", "Patch", "ProjectOut", "Steer", "logits_under", "logprobs_under", "residuals_under"]
