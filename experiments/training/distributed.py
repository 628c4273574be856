"""Data-parallel (DDP) training over the processes that ``torchrun`` starts.

Every rank draws the *same* global batches from the same seeded iterator and keeps its own
rows (``shard``). Why: the loss is ``sum(w * ce) / sum(w)`` over the step's global batch, and
``sum(w)`` is then known on every rank without communication, so the loss, the gradients, the
learning-rate schedule, the checkpoint steps and the resume position are those of one process
with the same batch size (up to the order of float sums). DDP averages gradients over ranks,
so each rank's share of the loss is multiplied by the world size (``scale_loss``).

Only rank 0 writes (checkpoints, training state, tables: ``on_writer``); the others wait at a
barrier, so no rank reads a half-written state and all resume from the state rank 0 wrote.
Ranks must start with the same torch seed: rank 0's RNG state is the one saved and restored.

The training state and the checkpoints go through ``training_state``/``load_training_state``
and ``export``: here plain reads of the (replicated) model; ``experiments.training.sharded``
overrides them for FSDP2, where each rank holds a shard of every parameter
(``finetune.parallel = "fsdp"``). NVLink multicast stays off in every process (``no_multicast``).
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from experiments.errors import UserError


@dataclass(frozen=True)
class Single:
    """One process: every method is the identity (what ``train`` uses without ``dist``)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device | None = None

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    def wrap(self, model):
        """The module the forward pass runs through."""
        return model

    def shard(self, batch):
        """This rank's rows of a batch (a dict of tensors, or one tensor)."""
        return batch

    def no_sync(self, net, sync: bool):
        """Context for one micro-batch: gradients are all-reduced only when ``sync``."""
        return nullcontext()

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def reduce_log(self, loss: torch.Tensor, aux: dict) -> tuple[torch.Tensor, dict]:
        """The logged loss summed over ranks (each holds its rows' share) and aux losses averaged."""
        return loss, aux

    def barrier(self) -> None:
        pass

    def on_writer(self, fn, *args, **kwargs):
        """Run ``fn`` on rank 0 only, then let every rank continue; its result (None elsewhere).
        Every rank must call it at the same points (it ends in a barrier), so a decision that
        depends on files belongs inside ``fn``: rank 0 may have written them before another
        rank looks."""
        return fn(*args, **kwargs)

    def training_state(self, model, optimizer) -> tuple[dict, dict]:
        """What rank 0 saves of a training run (every rank calls it).

        Returns
        -------
        ``(params, optimizer_state)``: the trainable parameters by name and
        ``optimizer.state_dict()`` (parameters by index). Every rank holds the same here.
        """
        return {n: p for n, p in model.named_parameters() if p.requires_grad}, optimizer.state_dict()

    def load_training_state(self, model, optimizer, params: dict, optimizer_state: dict) -> None:
        """Put a saved :meth:`training_state` back (every rank calls it with what it read)."""
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.requires_grad:
                    p.copy_(params[name])
        optimizer.load_state_dict(optimizer_state)

    def export(self, fn, step: int, model) -> None:
        """``fn(step, model)`` on rank 0 with the whole model (an ``on_checkpoint`` callback);
        every rank calls it at the same points."""
        self.on_writer(fn, step, model)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class DataParallel(Single):
    """``world_size`` processes of an initialised process group (see ``init``)."""

    def wrap(self, model):
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def shard(self, batch):
        if torch.is_tensor(batch):
            return self._rows(batch)
        n = batch["input_ids"].shape[0]
        return {k: self._rows(v) if torch.is_tensor(v) and v.ndim and v.shape[0] == n else v
                for k, v in batch.items()}

    def _rows(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.shape[0] < self.world_size:
            raise UserError(f"a batch of {tensor.shape[0]} rows cannot be split over {self.world_size} processes; "
                            f"expected a batch size of at least {self.world_size} (a multiple balances the work)")
        return tensor.tensor_split(self.world_size)[self.rank]

    def no_sync(self, net, sync: bool):
        return nullcontext() if sync else net.no_sync()

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.world_size

    def reduce_log(self, loss, aux):
        import torch.distributed as dist

        values = torch.stack([loss, *aux.values()])
        dist.all_reduce(values)
        return values[0], {name: v / self.world_size for name, v in zip(aux, values[1:])}

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier(device_ids=[self.device.index]) if self.device.type == "cuda" else dist.barrier()

    def on_writer(self, fn, *args, **kwargs):
        result = fn(*args, **kwargs) if self.is_writer else None
        self.barrier()
        return result

    def close(self) -> None:
        """Destroy the process group, after collecting the models that are gone (call it once
        the trained model is out of scope). FSDP2 and DDP keep their process group in the
        model; one freed only at interpreter exit destroys gloo's worker threads while Python
        finalises, which aborted a CPU rank now and then ("terminate called without an active
        exception", about 1 run in 10)."""
        import gc

        import torch.distributed as dist

        gc.collect()  # FSDP's hooks hold reference cycles: free the models (and their groups) now
        if dist.is_initialized():
            dist.destroy_process_group()


MULTICAST_OFF = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def no_multicast() -> None:
    """NVLink multicast (NCCL's NVLS, PyTorch's symmetric-memory multicast, NVSHMEM's NVLS) stays
    off in this process and every process it starts (``MULTICAST_OFF``): on the shared machines
    we use, a program that uses it can put the host's GPUs out of service. Forced, not defaulted:
    a value inherited from a launcher's environment cannot turn it back on."""
    os.environ.update(MULTICAST_OFF)


def init(device=None) -> Single:
    """The process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): NCCL with one GPU per process on CUDA,
    gloo on CPU. Without torchrun (or with one process) a ``Single``. ``device``: "cuda",
    "cpu" or None (CUDA when available); on CUDA each rank takes GPU ``LOCAL_RANK``. NVLink
    multicast is turned off first (``no_multicast``), in one process too."""
    no_multicast()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Single(device=device)
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise UserError(f"process {local} of this node has no GPU: {torch.cuda.device_count()} visible; "
                            f"expected --nproc_per_node at most {torch.cuda.device_count()}")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)  # so that plain "cuda" means this rank's GPU everywhere
    elif device.type != "cpu":
        raise UserError(f"distributed training runs on 'cuda' or 'cpu'; got device {str(device)!r}")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                device_id=device if device.type == "cuda" else None)
    return DataParallel(rank=rank, world_size=world_size, device=device)
