"""One readable training loop for pretraining the toy model and finetuning any HF causal LM.

Per step: take ``grad_accum`` micro-batches, set the learning rate from the schedule, run
forward + backward under bf16 autocast on GPU, add auxiliary losses, clip, AdamW step. The loss
is ``sum(w * ce) / sum(w)`` over the whole step's tokens, with ``w`` the batch's
``loss_weights`` (or its non -100 labels), so accumulating micro-batches equals one big batch.
``on_checkpoint(step, model)`` runs at every step listed in ``checkpoint_steps`` (0 = before
training); it may raise ``StopTraining`` to end training there. With ``state_dir``, the full
training state is saved there (see training_state) and a rerun after a kill continues from the
last save and reaches the same weights.

The pieces live in small modules, re-exported here: schedules (learning rate and checkpoint
steps), data_mixing (tokenization, loss weights, mixed/packed/padded batches), lora (peft),
aux_losses (KL to a reference, activation penalties), training_checkpoints (HF dirs),
training_state (resume). ``dist`` (experiments.training.distributed) runs the same loop as DDP under torchrun,
or sharded with FSDP2 (experiments.training.sharded).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from experiments.config import PRECISIONS  # one list of them, validated in the config too
from experiments.errors import StopTraining
from experiments.training import distributed, state as training_state
from experiments.training.batches import (Source, Tokenized, mixed_batches, packed_batches, padded_batches,  # noqa: F401
                                     tokenize_documents, tokenize_with_spans)
from experiments.training.schedules import checkpoint_schedule, linear_steps, log_spaced_steps, lr_at  # noqa: F401


@dataclass(frozen=True)
class OptimConfig:
    """``steps`` optimizer steps of ``grad_accum`` micro-batches each. ``schedule``: "linear",
    "cosine" or "constant" after ``warmup`` linear warmup steps. ``precision``: "auto" = bf16
    autocast on CUDA and fp32 elsewhere. ``fused``: fused AdamW (None = on CUDA)."""

    steps: int
    lr: float
    warmup: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    schedule: str = "linear"
    min_lr_ratio: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_accum: int = 1
    precision: str = "auto"
    fused: bool | None = None

    def __post_init__(self):
        if self.steps < 0 or self.grad_accum < 1 or self.warmup < 0:
            raise ValueError(f"need steps >= 0, grad_accum >= 1, warmup >= 0; got {self}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; expected one of {PRECISIONS}")
        lr_at(0, self)  # validates the schedule name


def make_optimizer(model, cfg: OptimConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW over trainable parameters; no weight decay on vectors (norms, biases)."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for _, p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for _, p in params if p.ndim < 2], "weight_decay": 0.0}]
    fused = cfg.fused if cfg.fused is not None else device.type == "cuda"
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                             fused=fused or None)


def trainable_parameters(model) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def loss_weights(batch: dict) -> torch.Tensor:
    """Per-token loss weights of a batch: ``loss_weights`` if present, else 1; 0 where labels are -100."""
    labels = batch.get("labels", batch["input_ids"])
    weights = batch.get("loss_weights")
    weights = torch.ones(labels.shape) if weights is None else weights.float()
    return weights * (labels != -100)


def weighted_lm_loss(model, batch: dict, weights: torch.Tensor, *, hidden_states: bool = False):
    """``(sum over predicted tokens of weight * cross-entropy, model outputs)``."""
    mask = batch.get("attention_mask")
    out = model(input_ids=batch["input_ids"], attention_mask=mask, use_cache=False,
                output_hidden_states=hidden_states)
    targets = batch.get("labels", batch["input_ids"])[:, 1:].clamp_min(0)
    logits = out.logits[:, :-1]
    ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return (ce * weights[:, 1:].reshape(-1)).sum(), out


def _to_device(batch: dict, device: torch.device) -> dict:
    moved = {k: v.to(device, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}
    if "attention_mask" in batch and bool(batch["attention_mask"].all()):
        moved["attention_mask"] = None  # no padding: let attention take its causal fast path
    return moved


def total_weight(weights: Sequence[torch.Tensor]):
    """The step's summed loss weight (first column excluded: never a target). Weights on the
    host give a Python float; weights already on a device give a device scalar, so that the
    step needs no synchronisation with the host."""
    if all(w.device.type == "cpu" for w in weights):
        return max(sum(float(w[:, 1:].sum()) for w in weights), 1e-12)
    return torch.stack([w[:, 1:].sum() for w in weights]).sum().clamp_min(1e-12)


def batch_tokens(batch: dict) -> int:
    """Tokens in a batch (those under its attention mask, if it has one)."""
    return int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()


def train(model, batches: Iterator[dict], cfg: OptimConfig, *, checkpoint_steps: Sequence[int] = (),
          on_checkpoint: Callable[[int, object], None] | None = None, desc: str = "train",
          log: list | None = None, state_dir: str | Path | None = None, save_every: int = 0,
          aux_losses: Sequence = (), compile: bool | str = False, log_every: int = 1,
          dist: distributed.Single | None = None) -> list[dict]:
    """Train ``model`` in place for ``cfg.steps`` optimizer steps and return the log (one dict per
    logged step: ``step``, ``loss``, ``lr``, ``tokens`` (so far), ``time`` (seconds since this call
    began, when the step had finished) and each auxiliary loss by name; also
    appended to ``log`` if given).

    ``state_dir``: save the training state there every ``save_every`` steps (0 = only at
    checkpoint steps and at the end) and resume from it if it holds one. ``batches`` should then
    be a fresh iterator built exactly as in the first run; its position is restored through its
    ``state_dict``/``load_state_dict`` if it has them, otherwise by skipping consumed batches.
    ``compile``: run the forward + loss through ``torch.compile`` (a string: that compile mode,
    e.g. ``"reduce-overhead"`` for CUDA graphs). ``log_every``: log every
    that many steps the mean loss over the steps since the last entry; losses stay on the device
    in between (batches already on the device then cost no host synchronisation per step).

    ``dist``: the process group from ``experiments.training.distributed.init`` (default: one process).
    Every rank passes the same ``batches`` and trains on its rows of each micro-batch, so the
    result is that of one process with the same batches; rank 0 alone runs ``on_checkpoint``
    and writes the state. With FSDP (``experiments.training.sharded``) ``model`` is sharded in
    place here, stays sharded afterwards, and ``on_checkpoint`` gets an unsharded copy.
    """
    dist = dist or distributed.Single()
    net = dist.wrap(model)  # before the optimizer: FSDP replaces the parameters by their shards
    device = next(model.parameters()).device
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    opt = make_optimizer(model, cfg, device)
    checkpoint_steps = set(checkpoint_steps)
    hidden_states = any(getattr(a, "needs_hidden_states", False) for a in aux_losses)
    if isinstance(compile, str):  # a torch.compile mode, e.g. "reduce-overhead" (CUDA graphs)
        forward = torch.compile(weighted_lm_loss, mode=compile)
    else:
        forward = torch.compile(weighted_lm_loss) if compile else weighted_lm_loss
    graphs = isinstance(compile, str) and "overhead" in compile
    entries: list[dict] = []
    start, tokens, batches_used = 0, 0, 0

    restored = training_state.load_latest(state_dir) if state_dir is not None else None
    if restored is not None:
        tensors, state = restored
        params = {name: tensors[f"param.{name}"] for name in trainable_parameters(model)}
        dist.load_training_state(model, opt, params, training_state.optimizer_from_flat(tensors, state["optimizer"]))
        start, tokens, batches_used, entries = state["step"], state["tokens"], state["batches_used"], state["log"]
        if hasattr(batches, "load_state_dict"):
            batches.load_state_dict(state["data"])
        else:
            for _ in range(batches_used):
                next(batches)
        training_state.restore_rng(tensors, state["rng"])
    elif 0 in checkpoint_steps and on_checkpoint:
        model.eval()
        dist.export(on_checkpoint, 0, model)

    def save_state(step: int) -> None:
        data = batches.state_dict() if hasattr(batches, "state_dict") else None
        params, optimizer_state = dist.training_state(model, opt)  # every rank: gathers under FSDP
        dist.on_writer(training_state.save_state, state_dir, step, params=params, optimizer=optimizer_state,
                       extra={"tokens": tokens, "batches_used": batches_used, "data": data, "log": entries})

    model.train()
    bar = tqdm(total=cfg.steps, initial=start, desc=desc, leave=False, **({} if dist.is_writer else {"disable": True}))
    clock, clock_tokens = time.perf_counter(), tokens
    pending: dict | None = None  # the last step's losses, read one step late so the GPU never idles
    window = None  # (loss sum, aux sums, steps) since the last log entry, on the device

    def flush() -> None:
        nonlocal pending
        if pending is None:
            return
        entry = {k: (float(v) if torch.is_tensor(v) else v) for k, v in pending.items()}
        entry["time"] = time.perf_counter() - clock  # the step's loss is ready: it has finished
        entries.append(entry)
        rate = (tokens - clock_tokens) / max(time.perf_counter() - clock, 1e-9)
        bar.set_postfix(loss=f"{entry['loss']:.3f}", tok_s=f"{rate:.0f}")
        pending = None

    for step in range(start, cfg.steps):
        micro = [next(batches) for _ in range(cfg.grad_accum)]
        batches_used += cfg.grad_accum
        weights = [loss_weights(b) for b in micro]
        step_weight = total_weight(weights)
        step_tokens = sum(batch_tokens(b) for b in micro)
        micro, weights = [dist.shard(b) for b in micro], [dist.shard(w) for w in weights]  # this rank's rows
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss_sum = torch.zeros((), device=device)
        aux_sums = {a.name: torch.zeros((), device=device) for a in aux_losses}
        for i, (batch, w) in enumerate(zip(micro, weights)):
            batch = _to_device(batch, device)
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()
            # DDP all-reduces gradients in the last micro-batch's backward (no_sync acts at forward time)
            with dist.no_sync(net, sync=i + 1 == len(micro)), \
                    torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                weighted, outputs = forward(net, batch, w.to(device, non_blocking=True), hidden_states=hidden_states)
                loss = dist.scale_loss(weighted / step_weight)
                for aux in aux_losses:
                    value = aux(model, batch, outputs, step * cfg.grad_accum + i) / cfg.grad_accum
                    aux_sums[aux.name] += value.detach()
                    loss = loss + value
            loss.backward()
            loss_sum += weighted.detach() / step_weight
            del outputs, loss
        if cfg.grad_clip and cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(list(trainable_parameters(model).values()), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += step_tokens
        if window is None:
            window = (loss_sum, aux_sums, 1)
        else:
            window = (window[0] + loss_sum, {k: window[1][k] + v for k, v in aux_sums.items()}, window[2] + 1)
        flush()
        saving = state_dir is not None and ((save_every and (step + 1) % save_every == 0)
                                            or step + 1 in checkpoint_steps or step + 1 == cfg.steps)
        if (step + 1) % log_every == 0 or step + 1 == cfg.steps or saving:  # a save closes the window: resumes match
            loss_sum, aux_sums, n = window
            loss_sum, aux_sums = dist.reduce_log(loss_sum, aux_sums)
            if n > 1:  # the mean over the steps since the last entry
                loss_sum, aux_sums = loss_sum / n, {k: v / n for k, v in aux_sums.items()}
            pending = {"step": step + 1, "loss": loss_sum, "lr": opt.param_groups[0]["lr"], "tokens": tokens, **aux_sums}
            window = None
        bar.update(1)
        stop = None
        if step + 1 in checkpoint_steps and on_checkpoint:
            flush()
            model.eval()
            try:
                dist.export(on_checkpoint, step + 1, model)
            except StopTraining as exc:  # raised after this step's state is saved: a resume starts here
                stop = exc
            model.train()
        if saving:
            flush()
            save_state(step + 1)
        if stop is not None:
            bar.close()
            raise stop
    flush()
    bar.close()
    model.eval()
    if log is not None:
        log.extend(entries)
    return entries
