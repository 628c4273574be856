"""Sharded finetuning (FSDP2, experiments.training.sharded) on 1 vs N GPUs, and the largest model it
finetunes with LoRA on the GPUs at hand.

Throughput: a ~1B-parameter Llama (TinyLlama-1.1B's shape; random weights built from the
config, nothing downloaded), full finetuning with ``experiments.training.loop.train`` on packed
random-token batches, the *same global batch* on every GPU count (each of N GPUs takes 1/N of
it), bf16 autocast, fused AdamW. One GPU is the plain loop (the model fits it); N > 1 GPUs are
FSDP. tokens/s over the timed steps (the clock starts and stops on a device synchronise);
scaling efficiency = tokens/s on N GPUs / (N x tokens/s on 1).

Loss curves: a small Llama on a seeded Markov-chain corpus with the same global batch on 1 GPU
(plain) and N GPUs (FSDP), per precision, printed side by side with the largest difference of
the per-step loss and of the final weights (gathered by ``export``).

Largest model: Llama/Qwen2 shapes of growing size (1B ... 405B, ``LADDER``), each built on the
meta device (no memory), sharded over all N GPUs, materialised there with random bf16 weights,
LoRA rank 32 on every linear layer (fp32 adapters), a few steps at one sequence per GPU; the
ladder stops at the first shape that fails (out of memory). Each case is its own torchrun.

    python benchmarks/bench_fsdp.py --gpus 1,2 --out bench_fsdp.json      # >= 2 GPUs (1,2,4 with 4)
    python benchmarks/bench_fsdp.py --tiny --device cpu                   # smoke test: gloo, 2 processes

NVLink multicast stays off in every process (``distributed.no_multicast``: NCCL_NVLS_ENABLE=0,
TORCH_SYMM_MEM_DISABLE_MULTICAST=1, NVSHMEM_DISABLE_NVLS=1, inherited by each torchrun worker).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_multigpu import SHAPES, build_model, device_name, launch, markov_docs, random_docs, sync  # noqa: E402
from bench_training import clocked  # noqa: E402
from experiments.training import distributed, sharded  # noqa: E402

# (architecture, config) of real models' shapes, smallest first; tiny/small for the smoke test
LADDER = {
    "tiny": ("llama", SHAPES["tiny"]),
    "small": ("llama", SHAPES["small"]),
    "tinyllama-1b": ("llama", SHAPES["1b"]),
    "llama3-8b": ("llama", dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                                num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192)),
    "qwen2.5-14b": ("qwen2", dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=48,
                                  num_attention_heads=40, num_key_value_heads=8, vocab_size=152064,
                                  max_position_embeddings=8192)),
    "qwen2.5-32b": ("qwen2", dict(hidden_size=5120, intermediate_size=27648, num_hidden_layers=64,
                                  num_attention_heads=40, num_key_value_heads=8, vocab_size=152064,
                                  max_position_embeddings=8192)),
    "qwen2.5-72b": ("qwen2", dict(hidden_size=8192, intermediate_size=29568, num_hidden_layers=80,
                                  num_attention_heads=64, num_key_value_heads=8, vocab_size=152064,
                                  max_position_embeddings=8192)),
    "qwen1.5-110b": ("qwen2", dict(hidden_size=8192, intermediate_size=49152, num_hidden_layers=80,
                                   num_attention_heads=64, num_key_value_heads=8, vocab_size=152064,
                                   max_position_embeddings=8192)),
    "llama3.1-405b": ("llama", dict(hidden_size=16384, intermediate_size=53248, num_hidden_layers=126,
                                    num_attention_heads=128, num_key_value_heads=8, vocab_size=128256,
                                    max_position_embeddings=8192)),
}


def meta_lora_model(shape: str, dtype: torch.dtype, rank: int):
    """A ``LADDER`` model with LoRA adapters, on the meta device (no memory yet)."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    from experiments.training.lora import LoraSettings, add_lora

    arch, shape_kwargs = LADDER[shape]
    config = (LlamaConfig if arch == "llama" else Qwen2Config)(**shape_kwargs, tie_word_embeddings=False,
                                                                attn_implementation="sdpa", use_cache=False)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        return add_lora(model, LoraSettings(rank=rank, alpha=2.0 * rank))


def materialise(model, device: torch.device, seed: int) -> None:
    """Allocate a sharded meta model's shards on ``device`` with random weights: matrices N(0, 0.02),
    vectors 1, LoRA B 0 (each rank fills its own shards), rotary frequencies recomputed."""
    model.to_empty(device=device)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            local = p.to_local() if hasattr(p, "to_local") else p
            if "lora_B" in name:
                local.zero_()
            elif p.ndim == 1:
                local.fill_(1.0)
            else:
                local.normal_(0.0, 0.02)
        for module in model.modules():
            if "RotaryEmbedding" in type(module).__name__:
                with torch.device(device):
                    fresh = type(module)(module.config)
                for name, buffer in fresh.named_buffers(recurse=False):
                    getattr(module, name).copy_(buffer)


def worker_throughput(args, dist) -> dict:
    from experiments.training.loop import OptimConfig, packed_batches, train

    gpus, device = dist.world_size, dist.device
    model = build_model(args.shape, device)
    stream, marks = packed_batches(random_docs(model.config.vocab_size), args.batch, args.seq, seed=0), {}
    cfg = OptimConfig(steps=args.warm + args.steps, lr=1e-5, warmup=2, weight_decay=0.01, grad_clip=1.0)
    dist = sharded.sharded(dist) if gpus > 1 else dist
    log = train(model, clocked(stream, args.warm, device, marks), cfg, desc=f"throughput x{gpus}", dist=dist)
    sync(device)
    seconds = time.perf_counter() - marks["start"]
    return {"case": "throughput", "gpus": gpus, "fsdp": gpus > 1, "shape": args.shape,
            "params_M": sum(p.numel() for p in model.parameters()) / 1e6, "global_batch": args.batch,
            "seq": args.seq, "timed_steps": args.steps, "tokens_per_s": args.steps * args.batch * args.seq / seconds,
            "peak_mem_GiB": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
            "final_loss": log[-1]["loss"]}


def worker_curve(args, dist) -> dict:
    from safetensors.torch import save_file

    from experiments.training.loop import OptimConfig, packed_batches, train

    gpus = dist.world_size
    model = build_model(args.shape, dist.device)
    stream = packed_batches(markov_docs(model.config.vocab_size), args.batch, args.seq, seed=0)
    cfg = OptimConfig(steps=args.steps, lr=1e-3, warmup=5, weight_decay=0.01, grad_clip=1.0, grad_accum=2,
                      precision=args.precision)
    dist = sharded.sharded(dist) if gpus > 1 else dist
    log = train(model, stream, cfg, desc=f"curve x{gpus}", dist=dist)
    flat = lambda step, m: save_file(  # noqa: E731
        {"flat": torch.cat([p.detach().float().flatten().cpu() for p in m.parameters()])}, args.weights)
    dist.export(flat, args.steps, model)
    return {"case": "curve", "gpus": gpus, "shape": args.shape, "precision": args.precision,
            "global_batch": args.batch, "grad_accum": 2, "seq": args.seq, "losses": [e["loss"] for e in log]}


def worker_search(args, dist) -> dict:
    from experiments.training.loop import OptimConfig, packed_batches, train

    device = dist.device
    dist = sharded.sharded(dist)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = meta_lora_model(args.shape, dtype, args.lora_rank)
    dist.wrap(model)  # sharded on the meta device; train() finds it sharded
    materialise(model, device, seed=dist.rank)
    global_batch = args.batch * dist.world_size
    stream, marks = packed_batches(random_docs(model.config.vocab_size), global_batch, args.seq, seed=0), {}
    cfg = OptimConfig(steps=args.warm + args.steps, lr=1e-4, warmup=1, grad_clip=1.0)
    log = train(model, clocked(stream, args.warm, device, marks), cfg, desc=f"{args.shape} x{dist.world_size}",
                dist=dist)
    sync(device)
    seconds = time.perf_counter() - marks["start"]
    return {"case": "search", "gpus": dist.world_size, "shape": args.shape,
            "params_B": sum(p.numel() for p in model.parameters()) / 1e9,
            "trainable_M": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
            "global_batch": global_batch, "seq": args.seq, "tokens_per_s": args.steps * global_batch * args.seq / seconds,
            "peak_mem_GiB": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
            "final_loss": log[-1]["loss"]}


WORKERS = {"throughput": worker_throughput, "curve": worker_curve, "search": worker_search}


def worker(args) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 curves compare true fp32 arithmetic
    dist = distributed.init(args.device)
    try:
        result = WORKERS[args.worker](args, dist)
        if dist.is_writer:
            print("RESULT " + json.dumps({**result, "device": device_name(dist.device)}), flush=True)
    finally:
        dist.close()


def side_by_side(runs: list[dict], every: int) -> str:
    """The loss curves of ``runs`` (same global batch) as a markdown table, every ``every`` steps."""
    head = "| step | " + " | ".join(f"loss, {r['gpus']} GPU{'s' * (r['gpus'] > 1)}" for r in runs) + " |"
    rows = [head, "| ---: |" + " ---: |" * len(runs)]
    n = min(len(r["losses"]) for r in runs)
    for i in sorted(set(range(0, n, every)) | {n - 1}):
        rows.append(f"| {i + 1} | " + " | ".join(f"{r['losses'][i]:.5f}" for r in runs) + " |")
    return "\n".join(rows)


def compare(runs: list[dict], precision: str) -> dict:
    """The largest loss and final-weight difference between the first run and each other one."""
    from safetensors.torch import load_file

    row = {"precision": precision, "gpus": [r["gpus"] for r in runs]}
    broken = [r for r in runs if "losses" not in r]
    if broken:
        return {**row, "error": broken[0].get("error")}
    a, wa = torch.tensor(runs[0]["losses"]), load_file(runs[0]["weights"])["flat"]
    diffs = [(float((torch.tensor(r["losses"]) - a).abs().max()), float((load_file(r["weights"])["flat"] - wa).abs().max()))
             for r in runs[1:]]
    return {**row, "steps": len(a), "first_loss": float(a[0]), "last_loss": float(a[-1]),
            "max_abs_loss_diff": [d[0] for d in diffs], "max_abs_weight_diff": [d[1] for d in diffs],
            "table": side_by_side(runs, max(1, len(a) // 10))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="tiny models and few steps (smoke test)")
    ap.add_argument("--gpus", default="1,2", help="process counts to compare, 1 first (the search uses the last)")
    ap.add_argument("--batch", type=int, default=16, help="throughput: global batch (sequences per step)")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=20, help="throughput: timed steps (after --warm)")
    ap.add_argument("--warm", type=int, default=5)
    ap.add_argument("--curve-steps", type=int, default=200)
    ap.add_argument("--curve-precisions", default="fp32,bf16")
    ap.add_argument("--search", default="tinyllama-1b,llama3-8b,qwen2.5-14b,qwen2.5-32b,qwen2.5-72b,qwen1.5-110b,"
                                        "llama3.1-405b", help="LADDER shapes to try in turn ('' skips the search)")
    ap.add_argument("--search-steps", type=int, default=3)
    ap.add_argument("--lora-rank", type=int, default=32)
    ap.add_argument("--case-timeout", type=int, default=600)
    ap.add_argument("--out", help="also write the results as JSON here")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)  # internal
    ap.add_argument("--shape", default="1b", help=argparse.SUPPRESS)
    ap.add_argument("--precision", default="auto", help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    args = ap.parse_args()
    distributed.no_multicast()  # inherited by every torchrun worker
    if args.worker:
        return worker(args)
    if args.tiny:
        args.batch, args.seq, args.steps, args.warm, args.curve_steps = 4, 64, 3, 1, 10
        args.curve_precisions, args.search, args.search_steps, args.lora_rank = "fp32", "tiny,small", 2, 4
    gpus = [int(n) for n in args.gpus.split(",")]
    if gpus[0] != 1 or len(gpus) < 2:
        sys.exit(f"bench_fsdp: --gpus must start with 1 and name a larger count; got {args.gpus!r}")
    if args.device == "cuda" and torch.cuda.device_count() < max(gpus):
        sys.exit(f"bench_fsdp: needs {max(gpus)} GPUs, {torch.cuda.device_count()} visible")
    if any(args.batch % n for n in gpus):
        sys.exit(f"bench_fsdp: the global batch {args.batch} must split evenly over {gpus} GPUs")
    big, small = ("tiny", "tiny") if args.tiny else ("1b", "small")
    results = {"device": device_name(torch.device(args.device)), "torch": torch.__version__, "throughput": [],
               "curves": [], "search": []}
    script = str(Path(__file__).resolve())
    for n in gpus:
        extra = ["--shape", big, "--batch", str(args.batch), "--seq", str(args.seq), "--steps", str(args.steps),
                 "--warm", str(args.warm)]
        results["throughput"].append(launch(args, n, "throughput", extra, script))
        print(json.dumps(results["throughput"][-1]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for precision in args.curve_precisions.split(","):
            runs = []
            for n in gpus:
                weights = str(Path(tmp) / f"curve_{precision}_{n}.safetensors")
                extra = ["--shape", small, "--batch", str(args.batch), "--seq", "64" if args.tiny else "256",
                         "--steps", str(args.curve_steps), "--precision", precision, "--weights", weights]
                runs.append({**launch(args, n, "curve", extra, script), "weights": weights})
            results["curves"].append(compare(runs, precision))
            print(json.dumps({k: v for k, v in results["curves"][-1].items() if k != "table"}), flush=True)
    for shape in filter(None, args.search.split(",")):
        extra = ["--shape", shape, "--batch", "1", "--seq", str(args.seq), "--steps", str(args.search_steps),
                 "--warm", "1", "--lora-rank", str(args.lora_rank)]
        results["search"].append(launch(args, gpus[-1], "search", extra, script))
        print(json.dumps(results["search"][-1]), flush=True)
        if "error" in results["search"][-1]:
            break  # a larger shape would not fit either
    rates = {r["gpus"]: r.get("tokens_per_s") for r in results["throughput"]}
    results["scaling_efficiency"] = {n: rates[n] / (n * rates[1]) for n in gpus[1:] if rates.get(n) and rates.get(1)}
    fitted = [r for r in results["search"] if "error" not in r]
    results["largest_lora_model"] = fitted[-1]["shape"] if fitted else None
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    report(results, args.out)
    failed = [r for r in results["throughput"] + results["curves"] if "error" in r]
    for r in failed:
        print(f"error in {r}", file=sys.stderr)
    sys.exit(1 if failed or not fitted else 0)


def report(results: dict, out: str | None) -> None:
    """The tables of one run, in markdown."""
    print(f"\n{results['device']}, torch {results['torch']}" + (f"  (results in {out})" if out else ""))
    print("\n| GPUs | mode | tokens/s | scaling efficiency | peak GiB | final loss |\n| ---: | --- | ---: | ---: | ---: | ---: |")
    for r in results["throughput"]:
        if "error" in r:
            print(f"| {r['gpus']} | error | | | | |")
            continue
        eff = results["scaling_efficiency"].get(r["gpus"], 1.0 if r["gpus"] == 1 else float("nan"))
        print(f"| {r['gpus']} | {'FSDP' if r['fsdp'] else 'plain'} | {r['tokens_per_s']:,.0f} | {eff:.1%} "
              f"| {r['peak_mem_GiB'] or float('nan'):.1f} | {r['final_loss']:.4f} |")
    for c in results["curves"]:
        if "error" in c:
            print(f"\nloss curves {c['gpus']} GPUs ({c['precision']}): error")
            continue
        print(f"\nloss curves, same global batch, {c['precision']}: max |dloss| vs 1 GPU {c['max_abs_loss_diff']}, "
              f"max |dweight| {c['max_abs_weight_diff']} over {c['steps']} steps\n{c['table']}")
    if results["search"]:
        print("\n| model (LoRA) | params B | trainable M | GPUs | tokens/s | peak GiB |\n| --- | ---: | ---: | ---: | ---: | ---: |")
        for r in results["search"]:
            print(f"| {r['shape']} | error: {str(r['error']).strip().splitlines()[-1][:80]} | | {r['gpus']} | | |"
                  if "error" in r else f"| {r['shape']} | {r['params_B']:.3g} | {r['trainable_M']:.1f} | {r['gpus']} "
                  f"| {r['tokens_per_s']:,.0f} | {r['peak_mem_GiB'] or float('nan'):.1f} |")
        print(f"largest model FSDP finetuned with LoRA here: {results['largest_lora_model']}")


if __name__ == "__main__":
    main()
