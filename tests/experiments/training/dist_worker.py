"""The training run of the multi-process tests (test_distributed.py: DDP, test_sharded.py: FSDP2):
``run`` in one process (the reference), or ``torchrun --nproc_per_node=2
tests/experiments/training/dist_worker.py OUT [ddp|fsdp] [full|lora]`` for the same run over two
CPU processes (gloo). Rank 0 writes OUT/weights.safetensors (every parameter, flattened, gathered
under FSDP) and OUT/log.json."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

STEPS, CHECKPOINTS = 12, (0, 3, 12)


def run(out: Path, dist=None, lora: bool = False):
    """Llama without dropout (LoRA rank 4 on every linear layer when ``lora``), padded batches
    of 4 rows in 2 micro-batches, cosine schedule, clipping, the training state every 2 steps in
    OUT/state. Checkpoints at CHECKPOINTS: OUT/step_S (HF directory; LoRA merged) and, with
    ``lora``, OUT/adapter_S (the peft adapter, its base model saved at OUT/base)."""
    from experiments.training.checkpoints import save_checkpoint
    from experiments.training.lora import LoraSettings, add_lora
    from experiments.training.loop import OptimConfig, padded_batches, train
    from tests.experiments.training.support import llama, token_docs, tokenizer

    torch.manual_seed(0)
    tok = tokenizer()
    model = llama(len(tok))
    if lora:
        if dist is None or dist.is_writer:
            save_checkpoint(out / "base", model, tok)
        model = add_lora(model, LoraSettings(rank=4, alpha=8.0))
        model.peft_config["default"].base_model_name_or_path = str(out / "base")

    def on_checkpoint(step: int, m) -> None:
        save_checkpoint(out / f"step_{step}", m, tok)
        if lora:
            save_checkpoint(out / f"adapter_{step}", m, tok, as_adapter=True)

    batches = padded_batches(token_docs(tok), 4, pad_id=0, seed=1)
    cfg = OptimConfig(steps=STEPS, lr=1e-2, warmup=2, weight_decay=0.1, schedule="cosine", grad_accum=2,
                      grad_clip=0.5, precision="fp32")
    log = train(model, batches, cfg, checkpoint_steps=CHECKPOINTS, state_dir=out / "state", save_every=2,
                on_checkpoint=on_checkpoint, dist=dist)
    return model, log


def main(out: str, parallel: str = "ddp", kind: str = "full") -> None:
    from safetensors.torch import save_file

    from experiments.training import distributed, sharded
    from tests.experiments.training.support import flat_weights

    def train_and_save(dist) -> None:
        model, log = run(Path(out), dist, lora=kind == "lora")
        dist.export(lambda step, m: save_file({"flat": flat_weights(m)}, str(Path(out) / "weights.safetensors")),
                    STEPS, model)
        if dist.is_writer:
            (Path(out) / "log.json").write_text(json.dumps({"world_size": dist.world_size, "log": log}))

    torch.set_num_threads(1)
    dist = distributed.init("cpu")
    if parallel == "fsdp":
        dist = sharded.sharded(dist)
    try:
        train_and_save(dist)  # the model is out of scope before close(), as in `neglect finetune`
    finally:
        dist.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
