"""Finetuning throughput of experiments.training.loop.train vs Hugging Face Trainer.

Same model (a Qwen2-0.5B-shaped config with random weights, built from the config: nothing is
downloaded), same packed batches (no padding), same batch size and sequence length, both with fp32
master weights + bf16 autocast, fused AdamW, SDPA attention, gradient clipping, linear schedule.
Model-FLOPs utilisation is measured against the bf16 matmul rate measured in the same call.

FLOPs per token (PaLM convention, causal attention counted in full):
    6 * N_matmul + 12 * n_layers * d_model * seq_len,
N_matmul = parameters taking part in matmuls (all parameters, the tied embedding counted once as
the output head). The table also gives MFU with attention counted causally (half).

    python benchmarks/bench_training.py --preset qwen2-0.5b --out bench.json     # on the GPU
    python benchmarks/bench_training.py --preset tiny --steps 4 --warm 2          # CPU smoke test

Each (engine, compile) case runs in its own process so that memory and compile caches do not
leak between them; results are appended to ``--out`` as they finish.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRESETS = {
    # Qwen2-0.5B's shape: 24 layers, d 896, MLP 4864, 14 heads / 2 KV heads, vocab 151936, tied.
    "qwen2-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                       num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
                       max_position_embeddings=32768, rope_theta=1_000_000.0, rms_norm_eps=1e-6),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1000, tie_word_embeddings=True, max_position_embeddings=512),
}


def build_model(preset: str, device: torch.device):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    torch.manual_seed(0)
    config = Qwen2Config(**PRESETS[preset], attn_implementation="sdpa", use_cache=False)
    with torch.device(device):  # initialise on the GPU: seconds instead of a minute on the CPU
        return Qwen2ForCausalLM(config)


def flops_per_token(model, seq_len: int, causal_half: bool = False) -> float:
    cfg = model.config
    n = sum(p.numel() for p in model.parameters())  # tied: embedding counted once, as the head
    attention = 12 * cfg.num_hidden_layers * cfg.hidden_size * seq_len
    return 6 * n + (attention / 2 if causal_half else attention)


def matmul_tflops(device: torch.device, size: int = 8192, reps: int = 10) -> float:
    """bf16 dense matmul rate on random data (mean of ``reps`` after 3 warm-ups)."""
    if device.type != "cuda":
        size, reps = 512, 3
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * size ** 3 * reps / (time.perf_counter() - start) / 1e12


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def clocked(stream, warm: int, device, marks: dict):
    """``stream`` unchanged, but ``marks["start"]`` is set once step ``warm`` has finished on the
    device, so warm-up (compilation, allocator growth) stays out of the timing."""
    for i, batch in enumerate(stream):
        if i == warm:
            sync(device)
            marks["start"] = time.perf_counter()
        yield batch


def batches(vocab: int, batch: int, seq: int):
    """Packed batches of random-token documents (lengths 50..1500), seeded."""
    from experiments.training.loop import packed_batches
    g = torch.Generator().manual_seed(0)
    docs = [torch.randint(4, vocab, (int(n),), generator=g).tolist()
            for n in torch.randint(50, 1500, (400,), generator=g)]
    return packed_batches(docs, batch, seq, seed=0)


def run_ours(args, device) -> dict:
    from experiments.training.loop import OptimConfig, train
    model = build_model(args.preset, device)
    cfg = OptimConfig(steps=args.warm + args.steps, lr=1e-5, warmup=2, weight_decay=0.01, grad_clip=1.0)
    stream, marks = batches(model.config.vocab_size, args.batch, args.seq), {}
    log = train(model, clocked(stream, args.warm, device, marks), cfg, compile=args.compile, desc="ours")
    sync(device)
    seconds = time.perf_counter() - marks["start"]
    return result(args, model, device, "experiments.training.loop.train", args.steps * args.batch * args.seq, seconds,
                  log[-1]["loss"])


def run_trainer(args, device) -> dict:
    from transformers import Trainer, TrainerCallback, TrainingArguments
    model = build_model(args.preset, device)
    stream = batches(model.config.vocab_size, args.batch, args.seq)
    rows = []
    for _ in range(args.warm + args.steps):
        x = next(stream)["input_ids"]
        rows += [{"input_ids": r, "labels": r.clone()} for r in x]

    class Rows(torch.utils.data.Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            return rows[i]

    marks = {}

    class Clock(TrainerCallback):
        def on_step_end(self, targs, state, control, **kw):
            if state.global_step in (args.warm, args.warm + args.steps):
                sync(device)
                marks[state.global_step] = time.perf_counter()

    targs = TrainingArguments(
        output_dir=str(Path(args.tmp) / "trainer"), per_device_train_batch_size=args.batch,
        max_steps=args.warm + args.steps, learning_rate=1e-5, warmup_steps=2, weight_decay=0.01,
        max_grad_norm=1.0, lr_scheduler_type="linear", bf16=device.type == "cuda", use_cpu=device.type != "cuda",
        optim="adamw_torch_fused" if device.type == "cuda" else "adamw_torch", adam_beta2=0.95,
        logging_steps=args.warm + args.steps, save_strategy="no", report_to=[], dataloader_num_workers=0,
        torch_compile=args.compile, disable_tqdm=True, seed=0)
    trainer = Trainer(model=model, args=targs, train_dataset=Rows(), callbacks=[Clock()])
    out = trainer.train()
    seconds = marks[args.warm + args.steps] - marks[args.warm]
    return result(args, model, device, "transformers.Trainer", args.steps * args.batch * args.seq, seconds,
                  out.training_loss)


def result(args, model, device, engine, tokens, seconds, loss) -> dict:
    rate = tokens / seconds
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else float("nan")
    return {"engine": engine, "compile": args.compile, "preset": args.preset, "batch": args.batch, "seq": args.seq,
            "params_M": sum(p.numel() for p in model.parameters()) / 1e6, "measured_steps": args.steps,
            "tokens_per_s": rate, "model_tflops": rate * flops_per_token(model, args.seq) / 1e12,
            "model_tflops_causal": rate * flops_per_token(model, args.seq, causal_half=True) / 1e12,
            "peak_mem_GiB": peak, "final_loss": float(loss)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="qwen2-0.5b", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=20, help="measured steps (after --warm)")
    ap.add_argument("--warm", type=int, default=5)
    ap.add_argument("--cases", default="ours,trainer,ours+compile,trainer+compile")
    ap.add_argument("--case-timeout", type=int, default=240)
    ap.add_argument("--out", default="bench_training.json")
    ap.add_argument("--tmp", default="/tmp/bench_training")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one case in this process
    ap.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    if args.one:
        res = (run_ours if args.one == "ours" else run_trainer)(args, device)
        print("RESULT " + json.dumps(res), flush=True)
        return
    peak = matmul_tflops(device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    results = {"device": name, "torch": torch.__version__, "bf16_matmul_tflops": peak, "cases": []}
    print(f"{name}: bf16 matmul {peak:.0f} TFLOP/s", flush=True)
    gc.collect()
    for case in args.cases.split(","):
        engine, _, compiled = case.partition("+")
        cmd = [sys.executable, __file__, "--one", engine, "--preset", args.preset, "--batch", str(args.batch),
               "--seq", str(args.seq), "--steps", str(args.steps), "--warm", str(args.warm), "--tmp", args.tmp]
        cmd += ["--compile"] if compiled else []
        start = time.time()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.case_timeout,
                                  env={**os.environ, "TQDM_DISABLE": "1"})
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if lines:
                res = json.loads(lines[-1][7:])
            else:
                res = {"engine": engine, "compile": bool(compiled), "error": (proc.stderr or proc.stdout)[-1500:]}
        except subprocess.TimeoutExpired:
            res = {"engine": engine, "compile": bool(compiled), "error": f"timed out after {args.case_timeout}s"}
        res["wall_s"] = time.time() - start
        if "tokens_per_s" in res:
            res["mfu"] = res["model_tflops"] / peak
            res["mfu_causal"] = res["model_tflops_causal"] / peak
        results["cases"].append(res)
        print(json.dumps(res), flush=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
    print(table(results))


def table(results: dict) -> str:
    lines = [f"device: {results['device']}, torch {results['torch']}, measured bf16 matmul "
             f"{results['bf16_matmul_tflops']:.0f} TFLOP/s", "",
             "| engine | torch.compile | tokens/s | model TFLOP/s | MFU | MFU (causal attn) | peak GiB |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in results["cases"]:
        if "tokens_per_s" not in r:
            lines.append(f"| {r['engine']} | {r['compile']} | failed: {r['error'][-200:]!r} | | | | |")
            continue
        lines.append(f"| {r['engine']} | {r['compile']} | {r['tokens_per_s']:,.0f} | {r['model_tflops']:.0f} | "
                     f"{r['mfu']:.1%} | {r['mfu_causal']:.1%} | {r['peak_mem_GiB']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
