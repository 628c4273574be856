"""Plain torch forward hooks on the blocks and the final norm; the forward stops early once
the deepest requested layer is read, and only the selected positions are kept."""
from __future__ import annotations

import torch

from interp.batching import Batch
from interp.loading import LoadedModel


class _StopForward(Exception):
    """Raised from a hook once every requested layer is captured."""


def _tensor(output):
    return output[0] if isinstance(output, tuple) else output


def capture(lm: LoadedModel, batch: Batch, layers: list[int]) -> torch.Tensor:
    blocks, norm, n = lm.blocks, lm.final_norm, lm.n_layers
    wanted, deepest = set(layers), max(layers)
    captured: dict[int, torch.Tensor] = {}

    def keep(index, hidden):
        captured[index] = batch.selection.pick(hidden)
        if index == deepest:
            raise _StopForward

    def on_block_input(module, args, kwargs):
        keep(0, args[0] if args else kwargs["hidden_states"])

    def on_output(index):
        def hook(module, args, output):
            keep(index, _tensor(output))
        return hook

    handles = []
    if 0 in wanted:
        handles.append(blocks[0].register_forward_pre_hook(on_block_input, with_kwargs=True))
    for i in range(n):
        if i + 1 in wanted and not (i + 1 == n and norm is not None):
            handles.append(blocks[i].register_forward_hook(on_output(i + 1)))
    if n in wanted and norm is not None:  # HF reports the final-norm output as the last hidden state
        handles.append(norm.register_forward_hook(on_output(n)))
    try:
        lm.base_model(**batch.inputs)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    device = lm.device  # with a device_map, blocks (and what they give) live on several devices
    return torch.stack([captured[layer].to(device) for layer in layers], dim=1).float()
