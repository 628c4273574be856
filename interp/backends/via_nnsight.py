"""nnsight 0.8 traces: block inputs/outputs read inside ``model.trace`` and returned with
``nnsight.save``; the trace stops after the deepest requested layer."""
from __future__ import annotations

import warnings

import torch

from interp.batching import Batch
from interp.loading import LoadedModel


def _module_path(root: torch.nn.Module, target: torch.nn.Module) -> str:
    return next(name for name, module in root.named_modules() if module is target)


def _envoy(wrapped, path: str):
    for part in path.split("."):
        wrapped = wrapped[int(part)] if part.isdigit() else getattr(wrapped, part)
    return wrapped


class Sites:
    """nnsight envoys of the residual stream of one model, built once and reused.

    ``with_head`` wraps the whole model (logits, for interventions); otherwise the base
    transformer only, since reading residuals never needs the LM head."""

    def __init__(self, lm: LoadedModel, with_head: bool = False):
        from nnsight import NNsight

        base = lm.model if with_head else lm.base_model
        self.key = structure_key(lm)
        with warnings.catch_warnings():  # BERT's submodules named "output" are renamed by nnsight; harmless here
            warnings.filterwarnings("ignore", message=".*submodule named 'output'.*")
            self.wrapped = NNsight(base)
        blocks = _envoy(self.wrapped, _module_path(base, lm.blocks))
        self.blocks = [blocks[i] for i in range(lm.n_layers)]
        norm = lm.final_norm
        self.final_norm = _envoy(self.wrapped, _module_path(base, norm)) if norm is not None else None


def structure_key(lm: LoadedModel) -> tuple:
    """Changes when modules are swapped (e.g. LoRA merged), so stale wrappers are rebuilt."""
    return tuple(id(m) for m in lm.model.modules())


def sites(lm: LoadedModel, with_head: bool = False) -> Sites:
    name = "nnsight_with_head" if with_head else "nnsight"
    cached = lm.backend_state.get(name)
    if cached is None or cached.key != structure_key(lm):
        cached = lm.backend_state[name] = Sites(lm, with_head)
    return cached


def first(output):
    return output[0] if isinstance(output, tuple) else output


def capture(lm: LoadedModel, batch: Batch, layers: list[int]) -> torch.Tensor:
    import nnsight

    s, n, reduce = sites(lm), lm.n_layers, batch.selection.reduce
    wanted, deepest = set(layers), max(layers)
    # Envoys must be touched in execution order: block 0's input, block outputs, final norm.
    order = [(0, s.blocks[0], "input")] if 0 in wanted else []
    for i in range(n):
        if i + 1 in wanted and not (i + 1 == n and s.final_norm is not None):
            order.append((i + 1, s.blocks[i], "output"))
    if n in wanted and s.final_norm is not None:
        order.append((n, s.final_norm, "output"))
    with s.wrapped.trace(**batch.inputs) as tracer:
        captured = nnsight.save(dict())
        for index, envoy, where in order:
            hidden = envoy.input if where == "input" else first(envoy.output)
            captured[index] = reduce(hidden)
            if index == deepest:
                tracer.stop()
    device = lm.device  # with a device_map, blocks (and what they give) live on several devices
    return torch.stack([captured[layer].to(device) for layer in layers], dim=1)
