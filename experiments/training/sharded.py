"""Sharded data-parallel finetuning (PyTorch FSDP2, ``fully_shard``) over torchrun's processes.

``FullyShardedDataParallel`` is the ``dist`` object of ``experiments.training.distributed`` for
a model sharded over the ranks: each rank holds 1/world_size of every parameter, gradient and
AdamW moment, so a model whose training state does not fit one GPU can be finetuned (full or
LoRA). Everything that is the same as DDP is DDP's (``DataParallel``): every rank draws the
same global batches and trains on its rows (``shard``), the loss share is scaled by the world
size (FSDP's reduce-scatter averages gradients as DDP's all-reduce does), the logged loss is
summed over ranks, and rank 0 alone writes. What differs:

- ``wrap`` shards in place: each transformer block (the classes in the model's
  ``_no_split_modules``, e.g. ``LlamaDecoderLayer``) is one FSDP unit, the rest (embeddings,
  final norm, head) the root unit. The optimizer is built after wrapping, over the sharded
  parameters (DTensors). Gradients are reduce-scattered after every micro-batch (no
  ``no_sync``): skipping it would keep a full, unsharded gradient on every rank.
- The **training state** (trainable parameters, AdamW moments) is gathered to full tensors
  on rank 0's host (``get_model_state_dict``/``get_optimizer_state_dict`` with
  ``full_state_dict=True, cpu_offload=True``) and written by rank 0 in the *same* format as a
  one-process or DDP run (``experiments.training.state``): one atomic, checksummed writer,
  damage detection, and a resume on any number of processes (tested: a state saved by 2 FSDP
  ranks resumes in one process). Every rank reads it back and keeps its shards
  (``set_model_state_dict``/``set_optimizer_state_dict``). The cost: rank 0's host memory
  holds about 12 bytes per *trainable* parameter while saving (small for LoRA; for full
  finetuning of a model whose fp32 state exceeds one host's memory, sharded
  ``torch.distributed.checkpoint`` files would be needed instead).
- **Checkpoints** (``export``) are gathered the same way (all parameters, full tensors on rank
  0's host) into an unsharded copy of the model that rank 0 kept on its CPU when wrapping, and
  saved from it by the usual ``on_checkpoint`` (``experiments.training.checkpoints``): ordinary HF
  directories, LoRA merged or as peft adapters, loadable with ``interp.load_model``.

Parameters are all-gathered in the dtype they are stored in (no ``MixedPrecisionPolicy``: the
numbers are those of the DDP path, bf16 autocast on CUDA); a bf16 base with fp32 LoRA adapters
shards as it is. An fp32 model therefore moves twice the bytes a bf16 all-gather would.

The model is loaded on the host by every rank before ``wrap`` (``fully_shard`` then moves each
rank's shards to its GPU): host memory holds one full copy per rank while loading, and rank
0 keeps one more (its CPU copy) for the checkpoints.

World size 1 is refused (``sharded``): sharding over one process gains nothing, and one process
needs no process group; use ``finetune.parallel = "ddp"`` (the default), which is then the plain
loop.
"""
from __future__ import annotations

import copy
from contextlib import nullcontext
from dataclasses import dataclass, field

from experiments.errors import UserError
from experiments.training.distributed import DataParallel, Single


def sharded(dist: Single) -> "FullyShardedDataParallel":
    """The FSDP view of an initialised process group (``distributed.init``).

    Parameters
    ----------
    dist : the ``DataParallel`` that ``distributed.init`` returned under torchrun.

    Returns
    -------
    A ``FullyShardedDataParallel`` with the same rank, world size and device.

    Raises
    ------
    UserError
        With one process (no torchrun, or ``--nproc_per_node=1``).
    """
    if dist.world_size < 2:
        raise UserError("config key 'finetune.parallel' is \"fsdp\" but this is one process; expected torchrun with "
                        "at least 2 processes (torchrun --nproc_per_node=N -m experiments finetune ...), or "
                        "finetune.parallel=\"ddp\" for one process")
    return FullyShardedDataParallel(rank=dist.rank, world_size=dist.world_size, device=dist.device)


def block_classes(model) -> set[str]:
    """Names of the model's transformer-block classes (HF ``_no_split_modules``; for a peft model,
    its base model's): the modules that become FSDP units."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(getattr(base, "_no_split_modules", None) or ())


@dataclass(frozen=True)
class FullyShardedDataParallel(DataParallel):
    """``world_size`` processes of an initialised process group, the model sharded over them."""

    # rank 0: id(sharded model) -> its unsharded CPU copy, the module checkpoints are saved from
    copies: dict = field(default_factory=dict, compare=False, repr=False)

    def wrap(self, model):
        """Shard ``model`` in place (every block, then the root) over a 1-D mesh of all ranks;
        returns it (the module the forward pass runs through). A model sharded already is
        returned as it is. A model on the meta device (built without memory, to be
        materialised after sharding: ``model.to_empty(device=...)`` and an initialisation) gets
        no unsharded copy, so ``export`` refuses it."""
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import FSDPModule, fully_shard

        if isinstance(model, FSDPModule):
            return model
        blocks = block_classes(model)
        if not blocks:
            raise UserError(f"cannot shard a {type(model).__name__}: it names no transformer-block classes "
                            "(_no_split_modules); expected an HF causal LM, or finetune.parallel=\"ddp\"")
        if not any(p.is_meta for p in model.parameters()):  # every rank knows whether there is a copy
            self.copies[id(model)] = copy.deepcopy(model).to("cpu") if self.is_writer else None
        mesh = init_device_mesh(self.device.type, (self.world_size,))
        for module in model.modules():
            if type(module).__name__ in blocks:
                fully_shard(module, mesh=mesh)
        fully_shard(model, mesh=mesh)
        return model

    def no_sync(self, net, sync: bool):
        return nullcontext()  # reduce-scatter every micro-batch: gradients stay sharded

    def training_state(self, model, optimizer) -> tuple[dict, dict]:
        """Collective: every rank calls it; rank 0 gets the full tensors, the others empty dicts.
        The optimizer state is keyed by parameter index, as ``optimizer.state_dict()`` is."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        options = _full_options(ignore_frozen_params=True)
        params = get_model_state_dict(model, options=options)
        state = get_optimizer_state_dict(model, optimizer, options=options)
        if not self.is_writer:
            return {}, {}
        names = parameter_order(model, optimizer)
        index = {name: i for i, name in enumerate(names)}
        trainable = {name: params[name] for name in names}
        groups = [{**g, "params": [index[name] for name in g["params"]]} for g in state["param_groups"]]
        return trainable, {"state": {index[k]: v for k, v in state["state"].items()}, "param_groups": groups}

    def load_training_state(self, model, optimizer, params: dict, optimizer_state: dict) -> None:
        """Every rank passes the full state read from disk and keeps its shards of it."""
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        names = parameter_order(model, optimizer)
        set_model_state_dict(model, params, options=_full_options(strict=False))
        by_name = {"state": {names[int(i)]: v for i, v in optimizer_state["state"].items()},
                   "param_groups": [{**g, "params": [names[int(i)] for i in g["params"]]}
                                    for g in optimizer_state["param_groups"]]}
        set_optimizer_state_dict(model, optimizer, by_name, options=_full_options())

    def export(self, fn, step: int, model) -> None:
        """``fn(step, copy)`` on rank 0 with its CPU copy of ``model`` holding the gathered
        weights (collective: every rank calls it, then waits for rank 0)."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        if id(model) not in self.copies:
            raise UserError("cannot save a checkpoint of a model that was sharded on the meta device (it has no "
                            "unsharded copy); expected a model loaded with its weights before training")
        weights = get_model_state_dict(model, options=_full_options())
        if self.is_writer:
            plain = self.copies[id(model)]
            plain.load_state_dict(weights)
            plain.train(model.training)
            fn(step, plain)
        self.barrier()


def _full_options(**kwargs):
    """Full (unsharded) state dicts, gathered to rank 0's host; on load, each rank's shard of them."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, **kwargs)


def parameter_order(model, optimizer) -> list[str]:
    """The names of the optimizer's parameters in its index order (over its groups in turn)."""
    names = {id(p): name for name, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
