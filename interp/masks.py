"""Attention masks built on the host, in the 4D form HF models take as given.

Given a 2D padding mask, an HF forward decides on the GPU whether the batch needs a mask at
all (``padding_mask.all()`` in ``transformers.masking_utils``, then packed-sequence checks on
the position ids): two synchronizing CUDA calls per batch, during which the GPU idles while
the host launches the batch. The same decision made on the host costs nothing, so ``collate``
hands such models the finished mask, computed by transformers' own mask functions (the very
mask HF would build) on CPU tensors. Models whose masks are not the plain causal or
bidirectional kind (sliding windows, chunked or hybrid attention, flash or flex kernels) keep
the 2D mask, which is always correct.
"""
from __future__ import annotations

import inspect

import torch

from interp.loading import LoadedModel

MASKED_KERNELS = ("sdpa", "eager")  # the attention kernels whose 4D masks HF builds and accepts
ENABLED = True  # False: always hand models the 2D mask (for comparisons)


def _full_attention_only(config) -> bool:
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        return all(kind == "full_attention" for kind in layer_types)
    return getattr(config, "sliding_window", None) is None and getattr(config, "attention_chunk_size", None) is None


def _mask_builder(lm: LoadedModel):
    """transformers' mask function for this model, or None when a host-built mask would not be
    the one the model builds for itself."""
    config = lm.config
    if getattr(config, "_attn_implementation", None) not in MASKED_KERNELS or not _full_attention_only(config):
        return None
    try:
        from transformers import masking_utils
        source = inspect.getsource(type(lm.base_model))  # the forward, or a helper of it, builds the mask
    except (ImportError, OSError, TypeError):
        return None
    name = "create_bidirectional_mask" if lm.is_encoder_only else "create_causal_mask"
    build = getattr(masking_utils, name, None)
    if build is None or f"{name}(" not in source:  # the model makes its mask some other way
        return None
    try:  # another transformers version may take other arguments
        example = _build(lm, build, torch.tensor([[False, True]]))
    except TypeError:
        return None
    return build if isinstance(example, torch.Tensor) and example.dim() == 4 else None


def _build(lm: LoadedModel, build, padding_mask: torch.Tensor):
    shape_only = torch.empty(*padding_mask.shape, 0, dtype=lm.model.dtype)  # gives batch, length, dtype, device
    if lm.is_encoder_only:
        return build(lm.config, shape_only, padding_mask, allow_is_bidirectional_skip=False)
    return build(lm.config, shape_only, padding_mask, None, allow_is_causal_skip=False)


def builder(lm: LoadedModel):
    """The cached mask function for ``lm`` (None: keep 2D masks)."""
    if not ENABLED:
        return None
    state = lm.backend_state
    key = ("mask_builder", getattr(lm.config, "_attn_implementation", None))
    if key not in state:
        state[key] = _mask_builder(lm)
    return state[key]


def host_mask(lm: LoadedModel, padding_mask: torch.Tensor) -> torch.Tensor | None:
    """The 4D mask (on the CPU) the model would build from the ``[batch, width]`` padding mask,
    or None when this model must be given the 2D mask."""
    build = builder(lm)
    return None if build is None else _build(lm, build, padding_mask)
