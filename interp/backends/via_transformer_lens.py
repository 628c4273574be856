"""TransformerLens 4 ``TransformerBridge`` with raw HF numerics: ``run_with_cache`` with a
names filter over ``blocks.{i}.hook_resid_pre/post`` and ``ln_final.hook_out``.

The bridge replaces submodules of the model it wraps and forces eager attention, so it
wraps a structural copy of the model that *shares* the parameter tensors: no extra weight
memory, no staleness after in-place weight updates, and the original model is untouched.
"""
from __future__ import annotations

import copy

import torch

from interp.batching import Batch
from interp.errors import InterpInputError
from interp.loading import LoadedModel


def structure_key(lm: LoadedModel) -> tuple:
    return tuple(id(p) for p in lm.model.parameters())


def hook_name(lm: LoadedModel, layer: int) -> str:
    """TransformerLens hook holding HF ``hidden_states[layer]``."""
    if layer == 0:
        return "blocks.0.hook_resid_pre"
    if layer == lm.n_layers and lm.final_norm is not None:
        return "ln_final.hook_out"
    return f"blocks.{layer - 1}.hook_resid_post"


def _bridge_tokenizer(lm: LoadedModel):
    """A copy of the tokenizer the bridge may adjust. The bridge only tokenizes strings, and we
    pass token ids; marking the copy as BOS-adding stops TL from reloading it by name (which
    would hit the hub for in-memory models)."""
    tok = copy.deepcopy(lm.tokenizer)
    tok.init_kwargs.setdefault("name_or_path", lm.name)
    tok.init_kwargs["add_bos_token"] = True
    return tok


def build_bridge(lm: LoadedModel):
    from transformer_lens.model_bridge import TransformerBridge

    if len(lm.devices) > 1:  # the bridge moves its model to one device, and it shares our parameters
        raise InterpInputError(f"the transformer_lens backend needs the model on one device; {lm.name!r} is split "
                               f"over {sorted(map(str, lm.devices))}: use backend='hooks' or 'nnsight'")

    shared = {id(p): p for p in lm.model.parameters()}  # buffers are copied: the bridge may patch them
    clone = copy.deepcopy(lm.model, memo=shared)
    try:
        return TransformerBridge.boot_transformers(lm.name, hf_model=clone, tokenizer=_bridge_tokenizer(lm),
                                                   device=str(lm.device), dtype=next(lm.model.parameters()).dtype)
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise InterpInputError(f"TransformerLens has no bridge for {type(lm.model).__name__}: "
                               f"{str(exc).splitlines()[0]}") from exc


def bridge(lm: LoadedModel):
    """The model's bridge, built on first use and rebuilt if its parameters were replaced."""
    cached = lm.backend_state.get("transformer_lens")
    if cached is None or cached[0] != structure_key(lm):
        cached = lm.backend_state["transformer_lens"] = (structure_key(lm), build_bridge(lm))
    return cached[1]


def capture(lm: LoadedModel, batch: Batch, layers: list[int]) -> torch.Tensor:
    br = bridge(lm)
    names = {layer: hook_name(lm, layer) for layer in layers}
    missing = sorted(set(names.values()) - set(br.hook_dict))
    if missing:
        raise InterpInputError(f"the TransformerLens bridge of {lm.name!r} has no hook {missing[0]!r}")
    inputs = {k: v for k, v in batch.inputs.items() if k not in ("input_ids", "use_cache")}
    inputs["attention_mask"] = batch.padding_mask  # the bridge builds its own masks from the 2D one
    _, cache = br.run_with_cache(batch.inputs["input_ids"], names_filter=sorted(set(names.values())),
                                 return_type=None, **inputs)
    reduce = batch.selection.reduce
    return torch.stack([reduce(cache[names[layer]]) for layer in layers], dim=1)
