"""Data-parallel finetuning (experiments.training.distributed: DDP over NCCL) on 1 and 2 GPUs.

Throughput: a ~1B-parameter Llama (TinyLlama-1.1B's shape: 22 layers, d 2048, MLP 5632, 32/4
heads, vocab 32000; random weights built from the config, nothing downloaded) trained with
``experiments.training.loop.train`` on packed random-token batches, the same micro-batch per GPU (the
global batch grows with the GPUs), bf16 autocast, fused AdamW. tokens/s over the timed steps
(the clock starts and stops on a device synchronise); scaling = tokens/s on 2 GPUs / (2 x 1 GPU).

Loss curves: a small Llama trained on a seeded Markov-chain corpus with the *same* global batch
on 1 and 2 GPUs (each GPU takes half of every batch), per precision: the largest difference of
the per-step loss and of the final weights. One GPU is the plain loop (no DDP wrapper).

    python benchmarks/bench_multigpu.py --out bench_multigpu.json     # a machine with >= 2 GPUs
    python benchmarks/bench_multigpu.py --tiny --device cpu           # smoke test: gloo, 2 CPU processes

Every case runs under its own ``torchrun --standalone --nproc_per_node=N`` (this file with
``--worker``); rank 0 prints one RESULT line. NVLink multicast stays off (NCCL_NVLS_ENABLE=0,
TORCH_SYMM_MEM_DISABLE_MULTICAST=1, NVSHMEM_DISABLE_NVLS=1: ``distributed.no_multicast``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_training import clocked  # noqa: E402  (the script's folder is on sys.path)
from experiments.training import distributed  # noqa: E402

SHAPES = {
    # TinyLlama-1.1B: 1.10B parameters, untied embeddings.
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4, vocab_size=32000, max_position_embeddings=4096),
    "small": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=4, vocab_size=2000, max_position_embeddings=1024),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=500, max_position_embeddings=256),
}


def build_model(shape: str, device: torch.device):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**SHAPES[shape], tie_word_embeddings=False, attn_implementation="sdpa", use_cache=False)
    with torch.device(device):  # initialise on the GPU: seconds instead of a minute on the CPU
        return LlamaForCausalLM(config)


def random_docs(vocab: int, n: int = 400):
    g = torch.Generator().manual_seed(0)
    return [torch.randint(4, vocab, (int(k),), generator=g).tolist() for k in torch.randint(50, 1500, (n,), generator=g)]


def markov_docs(vocab: int, n: int = 2000):
    """Documents from a seeded sparse Markov chain (4 likely successors per token): learnable, so
    the loss curve falls and two runs that drift apart show it."""
    g = torch.Generator().manual_seed(0)
    successors = torch.randint(4, vocab, (vocab, 4), generator=g).tolist()
    docs = []
    for length in torch.randint(20, 200, (n,), generator=g).tolist():
        token, doc = int(torch.randint(4, vocab, (1,), generator=g)), []
        for pick in torch.randint(0, 4, (length,), generator=g).tolist():
            doc.append(token)
            token = successors[token][pick]
        docs.append(doc)
    return docs


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def worker_throughput(args, dist) -> dict:
    from experiments.training.loop import OptimConfig, packed_batches, train

    device = dist.device
    model = build_model(args.shape, device)
    global_batch = args.batch * dist.world_size
    stream, marks = packed_batches(random_docs(model.config.vocab_size), global_batch, args.seq, seed=0), {}
    cfg = OptimConfig(steps=args.warm + args.steps, lr=1e-5, warmup=2, weight_decay=0.01, grad_clip=1.0)
    log = train(model, clocked(stream, args.warm, device, marks), cfg, compile=args.compile, desc=f"throughput x{dist.world_size}", dist=dist)
    sync(device)
    seconds = time.perf_counter() - marks["start"]
    tokens = args.steps * global_batch * args.seq
    return {"case": "throughput", "gpus": dist.world_size, "shape": args.shape, "compile": args.compile,
            "params_M": sum(p.numel() for p in model.parameters()) / 1e6, "batch_per_gpu": args.batch,
            "seq": args.seq, "timed_steps": args.steps, "tokens_per_s": tokens / seconds,
            "peak_mem_GiB": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
            "final_loss": log[-1]["loss"]}


def worker_curve(args, dist) -> dict:
    from safetensors.torch import save_file

    from experiments.training.loop import OptimConfig, packed_batches, train

    model = build_model(args.shape, dist.device)
    stream = packed_batches(markov_docs(model.config.vocab_size), args.batch, args.seq, seed=0)
    cfg = OptimConfig(steps=args.steps, lr=1e-3, warmup=5, weight_decay=0.01, grad_clip=1.0, grad_accum=2,
                      precision=args.precision)
    log = train(model, stream, cfg, desc=f"curve x{dist.world_size}", dist=dist)
    if dist.is_writer:
        flat = torch.cat([p.detach().float().flatten().cpu() for p in model.parameters()])
        save_file({"flat": flat}, args.weights)
    return {"case": "curve", "gpus": dist.world_size, "shape": args.shape, "precision": args.precision,
            "global_batch": args.batch, "grad_accum": 2, "seq": args.seq, "losses": [e["loss"] for e in log]}


def worker(args) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 curves compare true fp32 arithmetic
    dist = distributed.init(args.device)
    try:
        result = (worker_throughput if args.worker == "throughput" else worker_curve)(args, dist)
        if dist.is_writer:
            print("RESULT " + json.dumps({**result, "device": device_name(dist.device)}), flush=True)
    finally:
        dist.close()


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def launch(args, gpus: int, case: str, extra: list[str], script: str = __file__) -> dict:
    """One case of ``script`` (this file, or another benchmark with the same ``--worker CASE
    --device D`` flags) under torchrun with ``gpus`` processes; its RESULT (or the error)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", script,
           "--worker", case, "--device", args.device, *extra]
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT)}
    start = time.time()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.case_timeout, env=env, cwd=ROOT)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        res = json.loads(lines[-1][7:]) if lines else {"error": (proc.stderr or proc.stdout)[-2000:]}
    except subprocess.TimeoutExpired:
        res = {"error": f"timed out after {args.case_timeout}s"}
    return {"case": case, "gpus": gpus, **res, "wall_s": round(time.time() - start, 1)}


def compare_curves(one: dict, two: dict, precision: str) -> dict:
    """Loss curves and final weights of two runs with the same global batch (``one`` fewer GPUs)."""
    from safetensors.torch import load_file

    row = {"precision": precision, "gpus": [one["gpus"], two["gpus"]]}
    if "losses" not in one or "losses" not in two:
        return {**row, "error": one.get("error") or two.get("error")}
    a, b = torch.tensor(one["losses"]), torch.tensor(two["losses"])
    wa, wb = (load_file(run["weights"])["flat"] for run in (one, two))
    return {**row, "steps": len(a), "first_loss": float(a[0]), "last_loss": float(a[-1]),
            "max_abs_loss_diff": float((a - b).abs().max()), "max_abs_weight_diff": float((wa - wb).abs().max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="tiny models and few steps (smoke test)")
    ap.add_argument("--gpus", default="1,2", help="process counts to compare")
    ap.add_argument("--batch", type=int, default=8, help="throughput: sequences per GPU per step")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=20, help="throughput: timed steps (after --warm)")
    ap.add_argument("--warm", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="throughput with train(compile=True)")
    ap.add_argument("--curve-steps", type=int, default=200)
    ap.add_argument("--curve-precisions", default="fp32,bf16")
    ap.add_argument("--case-timeout", type=int, default=300)
    ap.add_argument("--out", help="also write the results as JSON here")
    ap.add_argument("--worker", choices=["throughput", "curve"], help=argparse.SUPPRESS)  # internal
    ap.add_argument("--shape", default="1b", choices=sorted(SHAPES), help=argparse.SUPPRESS)
    ap.add_argument("--precision", default="auto", help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    args = ap.parse_args()
    distributed.no_multicast()  # inherited by every torchrun worker
    if args.worker:
        return worker(args)
    if args.tiny:
        args.batch, args.seq, args.steps, args.warm, args.curve_steps = 4, 64, 4, 2, 12
    gpus = [int(n) for n in args.gpus.split(",")]
    if args.device == "cuda" and torch.cuda.device_count() < max(gpus):
        sys.exit(f"bench_multigpu: needs {max(gpus)} GPUs, {torch.cuda.device_count()} visible")
    big, small = ("tiny", "tiny") if args.tiny else ("1b", "small")
    results = {"device": device_name(torch.device(args.device)), "torch": torch.__version__, "throughput": [],
               "curves": []}
    for n in gpus:
        extra = ["--shape", big, "--batch", str(args.batch), "--seq", str(args.seq), "--steps", str(args.steps),
                 "--warm", str(args.warm)] + (["--compile"] if args.compile else [])
        results["throughput"].append(launch(args, n, "throughput", extra))
        print(json.dumps(results["throughput"][-1]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for precision in args.curve_precisions.split(","):
            runs = []
            for n in (gpus[0], gpus[-1]):
                weights = str(Path(tmp) / f"curve_{precision}_{n}.safetensors")
                extra = ["--shape", small, "--batch", "4" if args.tiny else "16", "--seq", "64" if args.tiny else "256",
                         "--steps", str(args.curve_steps), "--precision", precision, "--weights", weights]
                runs.append({**launch(args, n, "curve", extra), "weights": weights})
            results["curves"].append(compare_curves(*runs, precision))
            print(json.dumps(results["curves"][-1]), flush=True)
    rates = {r["gpus"]: r.get("tokens_per_s") for r in results["throughput"]}
    if rates.get(1) and rates.get(2):
        results["scaling_2_over_1"] = rates[2] / (2 * rates[1])
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"\n{results['device']}" + (f"  (results in {args.out})" if args.out else ""))
    print("| GPUs | tokens/s | peak GiB | final loss |\n| ---: | ---: | ---: | ---: |")
    for r in results["throughput"]:
        print(f"| {r['gpus']} | {r.get('tokens_per_s', float('nan')):,.0f} | {r.get('peak_mem_GiB') or float('nan'):.1f} "
              f"| {r.get('final_loss', float('nan')):.4f} |" if "error" not in r else f"| {r['gpus']} | error | | |")
    if "scaling_2_over_1" in results:
        print(f"scaling efficiency 2 vs 1: {results['scaling_2_over_1']:.1%}")
    for c in results["curves"]:
        print(f"loss curve {c['gpus'][0]} vs {c['gpus'][1]} GPUs ({c['precision']}): " + (
            f"max |dloss| {c['max_abs_loss_diff']:.2e}, max |dweight| {c['max_abs_weight_diff']:.2e} over {c['steps']} "
            f"steps (loss {c['first_loss']:.3f} -> {c['last_loss']:.3f})" if "error" not in c else "error"))
    errors = [r for r in results["throughput"] + results["curves"] if "error" in r]
    for r in errors:
        print(f"error in {r}", file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
