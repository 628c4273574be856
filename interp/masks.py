"""Attention masks in the 4D form HF models take as given, made without a sync.

Given a 2D padding mask, an HF forward decides on the GPU whether the batch needs a mask at
all (``padding_mask.all()`` in ``transformers.masking_utils``): two synchronizing CUDA calls
per batch, which stop the host from queueing work ahead. ``collate`` instead hands a model
the finished mask, made by three tensor ops next to the padding mask (on the device: on a
16-core H200 host the same ops on CPU tensors took 13 ms a batch at batch 512, as torch's
CPU thread pool woke up for them; benchmarks/residuals.md). Which models qualify, and what
their mask must be, is decided once per model by transformers' own mask function: the
model's attention kernel must take 4D masks (sdpa, eager), every layer must attend fully (no
sliding windows, chunks or hybrids), and the model must build its mask with
``create_causal_mask`` (decoders) or ``create_bidirectional_mask`` (encoders). The three ops
are checked against transformers' function on an example; other models keep the 2D mask.
"""
from __future__ import annotations

import inspect
from typing import Callable

import torch

from interp.loading import LoadedModel

MASKED_KERNELS = ("sdpa", "eager")  # the attention kernels whose 4D masks HF builds and accepts
ENABLED = True  # False: always hand models the 2D mask (for comparisons)
EXAMPLE = torch.tensor([[False, True, True], [True, True, False], [True, True, True]])  # left, right, no padding

MaskMaker = Callable[[torch.Tensor], torch.Tensor]  # [batch, width] bool -> [batch, 1, width, width]


def _full_attention_only(config) -> bool:
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        return all(kind == "full_attention" for kind in layer_types)
    return getattr(config, "sliding_window", None) is None and getattr(config, "attention_chunk_size", None) is None


def _transformers_mask_function(lm: LoadedModel):
    """``create_causal_mask`` or ``create_bidirectional_mask`` when the model builds its mask
    with it and may be handed the result; None otherwise."""
    config = lm.config
    if getattr(config, "_attn_implementation", None) not in MASKED_KERNELS or not _full_attention_only(config):
        return None
    try:
        from transformers import masking_utils
        source = inspect.getsource(type(lm.base_model))  # the forward, or a helper of it, builds the mask
    except (ImportError, OSError, TypeError):
        return None
    name = "create_bidirectional_mask" if lm.is_encoder_only else "create_causal_mask"
    function = getattr(masking_utils, name, None)
    return function if function is not None and f"{name}(" in source else None


def _with_transformers(lm: LoadedModel, function) -> MaskMaker:
    def make(real: torch.Tensor) -> torch.Tensor:
        shape_only = torch.empty(*real.shape, 0, dtype=lm.model.dtype, device=real.device)  # gives batch, length, dtype, device
        if lm.is_encoder_only:
            return function(lm.config, shape_only, real, allow_is_bidirectional_skip=False)
        return function(lm.config, shape_only, real, None, allow_is_causal_skip=False)
    return make


def _direct(causal: bool, additive_dtype: torch.dtype | None) -> MaskMaker:
    """The same mask in three tensor ops: True (or 0) where a query may attend to a key."""
    def make(real: torch.Tensor) -> torch.Tensor:
        batch, width = real.shape
        keys = real[:, None, None, :]
        mask = keys & torch.ones(width, width, dtype=torch.bool, device=real.device).tril() if causal else keys.expand(batch, 1, width, width)
        if additive_dtype is None:
            return mask
        return torch.zeros(mask.shape, dtype=additive_dtype, device=real.device).masked_fill_(~mask, torch.finfo(additive_dtype).min)
    return make


def _mask_maker(lm: LoadedModel) -> MaskMaker | None:
    function = _transformers_mask_function(lm)
    if function is None:
        return None
    reference = _with_transformers(lm, function)
    try:  # another transformers version may take other arguments
        want = reference(EXAMPLE)
    except TypeError:
        return None
    if not isinstance(want, torch.Tensor) or want.dim() != 4:
        return None
    eager = lm.config._attn_implementation == "eager"
    direct = _direct(not lm.is_encoder_only, lm.model.dtype if eager else None)
    got = direct(EXAMPLE)
    same = got.shape == want.shape and got.dtype == want.dtype and torch.equal(got, want)
    return direct if same else reference


def mask_maker(lm: LoadedModel) -> MaskMaker | None:
    """How to build ``lm``'s 4D masks (cached per model and kernel); None: keep 2D masks."""
    if not ENABLED:
        return None
    key = ("mask_maker", getattr(lm.config, "_attn_implementation", None), lm.model.dtype)
    if key not in lm.backend_state:
        lm.backend_state[key] = _mask_maker(lm)
    return lm.backend_state[key]


def full_mask(lm: LoadedModel, real: torch.Tensor) -> torch.Tensor | None:
    """The 4D mask the model would build from the ``[batch, width]`` padding mask (nonzero on
    real tokens), on its device, or None when this model must be given the 2D mask."""
    make = mask_maker(lm)
    return None if make is None else make(real.bool())
