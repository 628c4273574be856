"""The training run of tests/experiments/training/test_distributed.py: ``run`` in one process (the reference), or
``torchrun --nproc_per_node=2 tests/experiments/training/ddp_worker.py OUT`` for the same run data-parallel on CPU
(rank 0 writes OUT/weights.safetensors and OUT/log.json)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

STEPS, CHECKPOINTS = 12, (0, 3, 12)


def run(out: Path, dist=None):
    """Llama without dropout, padded batches of 4 rows in 2 micro-batches, cosine schedule,
    clipping, HF checkpoints at CHECKPOINTS and the training state every 2 steps in OUT/state."""
    from experiments.training.loop import OptimConfig, padded_batches, train
    from experiments.training.checkpoints import checkpoint_saver
    from tests.experiments.training.support import llama, token_docs, tokenizer

    torch.manual_seed(0)
    tok = tokenizer()
    model = llama(len(tok))
    batches = padded_batches(token_docs(tok), 4, pad_id=0, seed=1)
    cfg = OptimConfig(steps=STEPS, lr=1e-2, warmup=2, weight_decay=0.1, schedule="cosine", grad_accum=2,
                      grad_clip=0.5, precision="fp32")
    log = train(model, batches, cfg, checkpoint_steps=CHECKPOINTS, state_dir=out / "state", save_every=2,
                on_checkpoint=checkpoint_saver(lambda s: out / f"step_{s}", tok), dist=dist)
    return model, log


def main(out: str) -> None:
    from safetensors.torch import save_file

    from experiments.training import distributed
    from tests.experiments.training.support import flat_weights

    torch.set_num_threads(1)
    dist = distributed.init("cpu")
    try:
        model, log = run(Path(out), dist)
        if dist.is_writer:
            save_file({"flat": flat_weights(model)}, str(Path(out) / "weights.safetensors"))
            (Path(out) / "log.json").write_text(json.dumps({"world_size": dist.world_size, "log": log}))
    finally:
        dist.close()


if __name__ == "__main__":
    main(sys.argv[1])
