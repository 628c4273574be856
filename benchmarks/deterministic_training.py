"""Does a seed name one set of weights on the GPU, and what do deterministic kernels cost?

    python benchmarks/deterministic_training.py --out DIR [--deterministic true|false]
        [--preset testbed] [--set key=value ...] [--finetune-steps 100]

Pretrains the preset's base model into ``DIR`` (its corpus is reused when ``DIR/corpus`` holds
it), then finetunes it on the plain condition for ``--finetune-steps`` steps, and prints one JSON
line: the SHA-256 of the base model's weights and of the last finetuned checkpoint's, and each
stage's training throughput (tokens/s from the training log: the median over log entries after
the first tenth of the run, so compilation is left out). Two runs of one config and seed with
``deterministic`` on must print the same hashes; ``benchmarks/deterministic_training.sh`` runs the
pairs and compares them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from pathlib import Path


def weights_hash(model_dir: Path) -> str:
    """SHA-256 of ``model.safetensors`` in ``model_dir``."""
    return hashlib.sha256((Path(model_dir) / "model.safetensors").read_bytes()).hexdigest()


def throughput(log_csv: Path) -> float:
    """Median tokens/s between consecutive log entries, after the first tenth of the entries."""
    import pandas as pd

    log = pd.read_csv(log_csv)
    if "tokens" not in log or "time" not in log or len(log) < 3:
        return float("nan")
    log = log.iloc[max(1, len(log) // 10):]
    rates = (log["tokens"].diff() / log["time"].diff()).dropna()
    return float(statistics.median(rates)) if len(rates) else float("nan")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--preset", default="testbed")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--deterministic", default="true", choices=["true", "false"])
    p.add_argument("--finetune-steps", type=int, default=100)
    args = p.parse_args()

    import torch

    from experiments.artifacts.rundir import RunDir
    from experiments.config import load_config
    from experiments.pipeline import checked_config, pretrain_stage, prepare
    from experiments.training.stages import finetune

    overrides = args.set + ['pretrain.shipped="off"', f"deterministic={args.deterministic}",
                            f"finetune.steps={args.finetune_steps}", "finetune.n_checkpoints=2"]
    cfg = load_config(args.preset, None, overrides)
    start = time.perf_counter()
    base = pretrain_stage(cfg, args.out)
    pretrain_s = time.perf_counter() - start
    run = RunDir(Path(args.out))
    cfg, materials = checked_config(cfg)
    materials = prepare(run, cfg, materials)
    start = time.perf_counter()
    finetune(run, cfg, materials, base, "plain", 0)
    finetune_s = time.perf_counter() - start
    last = run.checkpoint("plain", 0, cfg.finetune.steps)
    print(json.dumps({
        "deterministic": cfg.deterministic, "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__, "pretrain_steps": cfg.pretrain.steps, "finetune_steps": cfg.finetune.steps,
        "base_sha256": weights_hash(Path(base)), "finetuned_sha256": weights_hash(last),
        "pretrain_tokens_per_s": throughput(run.pretrain_log), "finetune_tokens_per_s": throughput(run.train_log("plain", 0)),
        "pretrain_wall_s": round(pretrain_s, 1), "finetune_wall_s": round(finetune_s, 1),
        "overrides": args.set}))


if __name__ == "__main__":
    main()
