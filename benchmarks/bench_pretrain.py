"""Pretraining speed of the toy model (issue 21): the pipeline's loop vs a bare loop, presets
swept for the base-model checks, and the old code vs this tree on the CPU.

    # GPU: tokens/s of train() on StreamBatches vs a bare compiled loop, same model and batch
    python benchmarks/bench_pretrain.py throughput --preset standard --batch 256 1024 --out DIR
    # GPU: pretrain several configs at once (one process each) and print check_base for each
    python benchmarks/bench_pretrain.py sweep --out DIR --config NAME 'pretrain.batch_size=256 ...' ...
    # CPU: pretraining of an older commit (exported with git archive) vs this tree, alternating
    python benchmarks/bench_pretrain.py cpu-ab --ref 247039f --preset standard --set pretrain.batch_size=16 \
        --set pretrain.steps=300 --set pretrain.lr=0.003 --set pretrain.warmup=100 --repeats 3 [--old-omp 1]

``throughput`` runs one process per batch size (compile caches and memory do not leak between
them). In it, each repeat times the pipeline's loop (``experiments.training.loop.train`` over
``StreamBatches`` cut from the real corpus, bf16 autocast and fused AdamW on CUDA, compiled as
``stages.pretrain`` compiles it) and then the bare loop (the same model shape and batch; forward,
cross-entropy, backward, fused AdamW step; nothing else; compiled on CUDA) for ``--steps`` steps
after ``--warm`` untimed ones (compilation). The clock starts and stops on a device synchronise.
The table gives medians over ``--repeats`` and the ratio pipeline / bare.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize()


def setup(preset: str, overrides: list[str]):
    from experiments.config import load_config
    from experiments.materials.conditions import template_words
    from experiments.materials.corpus import all_words
    from experiments.materials.world import build_world
    from experiments.training.toymodel import build_tokenizer

    cfg = load_config(preset, None, overrides)
    world = build_world(cfg.world)
    return cfg, world, build_tokenizer(all_words(world) | template_words())


def throughput_case(args) -> dict:
    """One batch size: the pipeline's loop and the bare loop, alternating, in this process."""
    import torch
    import torch.nn.functional as F

    from experiments.training import corpus_tokens
    from experiments.training.loop import OptimConfig, train
    from experiments.training.stages import device_for, pretraining_documents
    from experiments.training.stream_batches import StreamBatches
    from experiments.training.threads import configure_threads
    from experiments.training.toymodel import build_model

    configure_threads()
    total_steps = args.warm + args.repeats * args.steps
    cfg, world, tok = setup(args.preset, args.set + [f"pretrain.batch_size={args.batch[0]}",
                                                     f"pretrain.steps={total_steps}"])
    device, p = device_for(cfg), cfg.pretrain
    start = time.perf_counter()
    tokens, offsets = corpus_tokens.corpus_tokens(world, dataclasses.asdict(cfg.corpus), cfg.world.seed,
                                                  pretraining_documents(cfg), tok, cfg.model.max_len)
    corpus_s = time.perf_counter() - start
    step_tokens = p.batch_size * p.seq_len

    use_bf16 = device.type == "cuda"

    def pipeline_engine(compiled: bool | str):
        model = build_model(cfg.model, len(tok), seed=0).to(device)
        batches = StreamBatches(tokens, offsets, p.batch_size, p.seq_len, seed=0, device=device)

        def run(steps: int) -> None:
            train(model, batches, OptimConfig(steps, p.lr, min(p.warmup, steps), p.weight_decay, p.grad_clip),
                  compile=compiled, log_every=p.log_every, desc="pipeline")
        return run

    def loss_of(model, ids):
        logits = model(input_ids=ids, use_cache=False).logits[:, :-1]
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))

    def bare_engine(compiled: bool | str):
        model = build_model(cfg.model, len(tok), seed=0).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=p.lr, fused=device.type == "cuda" or None)
        batches = StreamBatches(tokens, offsets, p.batch_size, p.seq_len, seed=1, device=device)
        loss_fn = (torch.compile(loss_of, mode=compiled) if isinstance(compiled, str)
                   else torch.compile(loss_of) if compiled else loss_of)

        def run(steps: int) -> None:
            for _ in range(steps):
                ids = next(batches)["input_ids"]
                if compiled == "reduce-overhead":
                    torch.compiler.cudagraph_mark_step_begin()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                    loss = loss_fn(model, ids)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
        return run

    def timed(fn, steps: int) -> float:
        sync(device)
        t = time.perf_counter()
        fn(steps)
        sync(device)
        return steps * step_tokens / (time.perf_counter() - t)

    builders = {"pipeline": (pipeline_engine, False), "pipeline-compiled": (pipeline_engine, True),
                "bare": (bare_engine, False), "bare-compiled": (bare_engine, True),
                "pipeline-cudagraphs": (pipeline_engine, "reduce-overhead"),
                "bare-cudagraphs": (bare_engine, "reduce-overhead")}
    engines = {name: builders[name][0](builders[name][1]) for name in args.engines.split(",")}
    warm = {}
    for name, fn in engines.items():
        t = time.perf_counter()
        fn(args.warm)
        sync(device)
        warm[name] = time.perf_counter() - t
    rates = {name: [] for name in engines}
    for _ in range(args.repeats):
        for name, fn in engines.items():
            rates[name].append(timed(fn, args.steps))
    return {"batch": p.batch_size, "seq_len": p.seq_len, "device": str(device),
            "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "corpus_tokens": int(len(tokens)), "corpus_s": round(corpus_s, 2),
            "warm_s": {k: round(v, 1) for k, v in warm.items()}, "tokens_per_s": rates,
            "median": {k: statistics.median(v) for k, v in rates.items()}}


def cmd_throughput(args) -> None:
    if len(args.batch) == 1 and args.child:
        print("RESULT " + json.dumps(throughput_case(args)), flush=True)
        return
    rows = []
    for batch in args.batch:  # one process per batch size
        cmd = [sys.executable, __file__, "throughput", "--child", "--preset", args.preset, "--batch", str(batch),
               "--steps", str(args.steps), "--warm", str(args.warm), "--repeats", str(args.repeats),
               "--engines", args.engines,
               *[x for s in args.set for x in ("--set", s)]]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(f"batch {batch}: failed\n{proc.stderr[-3000:]}", flush=True)
            continue
        rows.append(json.loads(lines[-1][len("RESULT "):]))
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "throughput.json").write_text(json.dumps(rows, indent=1))
    print(f"\n{args.preset}: tokens/s, medians of {args.repeats} x {args.steps} steps after {args.warm} warm-up steps "
          "(warm-up seconds include compilation)")
    names = list(rows[0]["median"]) if rows else []
    reference = "bare-compiled" if "bare-compiled" in names else names[-1] if names else None
    print("| batch x seq | " + " | ".join(names) + f" | each / {reference} | warm-up s |")
    print("| --- | " + " | ".join("---:" for _ in names) + " | --- | --- |")
    for r in rows:
        m = r["median"]
        ratios = ", ".join(f"{m[n] / m[reference]:.2f}" for n in names)
        warm = ", ".join(str(r["warm_s"][n]) for n in names)
        print(f"| {r['batch']} x {r['seq_len']} | " + " | ".join(f"{m[n]:,.0f}" for n in names) + f" | {ratios} | {warm} |")


# -- sweep: pretraining configs side by side, each with check_base ------------------------------
def sweep_case(args) -> dict:

    import interp
    from experiments.artifacts.rundir import RunDir
    from experiments.evaluation.checks import check_base
    from experiments.materials.synthetic import WorldMaterials
    from experiments.training import stages
    from experiments.training.threads import configure_threads

    configure_threads()
    cfg, world, _ = setup(args.preset, args.set)
    start = time.perf_counter()
    base = stages.pretrain(RunDir(args.out), cfg, WorldMaterials(world))
    pretrain_s = time.perf_counter() - start
    lm = interp.load_model(base, device=stages.device_for(cfg))
    result = check_base(lm, world)
    p = cfg.pretrain
    return {"name": args.name, "set": args.set, "tokens": p.steps * p.batch_size * p.seq_len,
            "pretrain_s": round(pretrain_s, 1), "check_s": round(time.perf_counter() - start - pretrain_s, 1),
            **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()
               if k != "claim_belief_by_kind"}}


def prime_corpora(args, configs: dict[str, list[str]]) -> None:
    """Build each distinct corpus once (all cores) and copy it into every run directory that uses it."""
    from experiments.artifacts.rundir import RunDir
    from experiments.training import corpus_tokens
    from experiments.training.stages import pretraining_documents

    built: dict[str, Path] = {}
    for name, sets in configs.items():
        cfg, world, tok = setup(args.preset, args.set + sets)
        spec = (world, dataclasses.asdict(cfg.corpus), cfg.world.seed, pretraining_documents(cfg), tok,
                cfg.model.max_len)
        key = corpus_tokens.corpus_key(*spec)
        run = RunDir(Path(args.out) / name)
        if key in built:
            (run.root / "corpus").mkdir(parents=True, exist_ok=True)
            for f in built[key].glob(f"pretrain-{key}*"):
                shutil.copy(f, run.root / "corpus" / f.name)
        corpus_tokens.cached_corpus_tokens(run, *spec)
        built.setdefault(key, run.root / "corpus")


def cmd_sweep(args) -> None:
    if args.child:
        print("RESULT " + json.dumps(sweep_case(args)), flush=True)
        return
    configs = {name: sets.split() for name, sets in args.config}
    start = time.perf_counter()
    prime_corpora(args, configs)
    print(f"corpora ready in {time.perf_counter() - start:.1f} s", flush=True)
    procs = {}
    for name, sets in configs.items():
        cmd = [sys.executable, __file__, "sweep", "--child", "--name", name, "--preset", args.preset,
               "--out", str(Path(args.out) / name), *[x for s in args.set + sets for x in ("--set", s)]]
        stderr = open(Path(args.out) / f"{name}.stderr", "w")  # a file: a full pipe would block the child
        procs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                       env={**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"})
    rows = []
    for name, proc in procs.items():
        out, _ = proc.communicate()
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(f"{name}: failed\n{(Path(args.out) / f'{name}.stderr').read_text()[-3000:]}", flush=True)
            continue
        rows.append(json.loads(lines[-1][len("RESULT "):]))
        print(json.dumps(rows[-1]), flush=True)
    (Path(args.out) / "sweep.json").write_text(json.dumps(rows, indent=1))
    print(f"\nsweep of {len(configs)} configs, {time.perf_counter() - start:.0f} s in all (concurrent)")
    print("| config | overrides | tokens | pretrain s | heldout_qa | claim_belief | in_context_true | probe_best | "
          "verdict_acc | probe by layer |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        print(f"| {r['name']} | `{' '.join(r['set'])}` | {r['tokens'] / 1e6:.1f}M | {r['pretrain_s']} | "
              f"{r['heldout_qa']:.3f} | {r['claim_belief']:.3f} | {r['in_context_true_answer']:.3f} | "
              f"{r['probe_best_acc']:.3f} | {r['verdict_acc_heldout']:.3f} | "
              f"{' '.join(f'{x:.2f}' for x in r['probe_acc_by_layer'])} |")


# -- cpu-ab: an older commit vs this tree -------------------------------------------------------
DRIVER = r"""
import json, sys, time
t0 = time.perf_counter()
try:  # the tree under test decides its own threads, as its CLI would
    from experiments.training.threads import configure_threads
    configure_threads()
except ImportError:
    pass
import pandas as pd, torch
from experiments.artifacts.rundir import RunDir
from experiments.config import load_config
from experiments.materials import load_materials
from experiments.training.stages import pretrain
cfg = load_config(sys.argv[2], None, json.loads(sys.argv[3]))
start = time.perf_counter()
pretrain(RunDir(sys.argv[1]), cfg, load_materials(cfg))
stage = time.perf_counter() - start
log = pd.read_csv(sys.argv[1] + "/results/pretrain_log.csv")
print("RESULT " + json.dumps({"stage_s": stage, "loop_tokens_per_s": float(log.tokens.iloc[-1] / log.time.iloc[-1]),
                              "threads": torch.get_num_threads(), "loss": float(log.loss.iloc[-1])}))
"""


def cmd_cpu_ab(args) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench_pretrain_"))
    old = work / "old"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.ref, "experiments", "interp", "probes"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.ref], capture_output=True,
                            text=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    trees = {f"{args.ref} ({commit})": (old, {})}
    if args.old_omp:  # the old code with the thread count fixed by the environment
        trees[f"{args.ref}, OMP_NUM_THREADS={args.old_omp}"] = (old, {"OMP_NUM_THREADS": str(args.old_omp)})
    trees["this tree"] = (ROOT, {})
    results: dict[str, list[dict]] = {name: [] for name in trees}
    for r in range(args.repeats):
        for i, (name, (tree, extra)) in enumerate(trees.items()):  # alternating: load from others hits all alike
            out = work / f"run{r}_{i}"
            proc = subprocess.run([sys.executable, "-c", DRIVER, str(out), args.preset, json.dumps(args.set)],
                                  capture_output=True, text=True, cwd=work,
                                  env={**env, **extra, "PYTHONPATH": str(tree), "TQDM_DISABLE": "1",
                                       "CUDA_VISIBLE_DEVICES": ""})
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode or not lines:
                raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
            results[name].append(json.loads(lines[-1][len("RESULT "):]))
            print(name, results[name][-1], flush=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"\nCPU, preset {args.preset} {' '.join(args.set)}; medians of {args.repeats} alternating runs; "
          f"{os.cpu_count()} cores, load average before: {args.load}")
    print("| code | torch threads | loop tokens/s | pretraining stage s (corpus + loop + saves) | final loss |")
    print("| --- | ---: | ---: | ---: | ---: |")
    med = {}
    for name, rows in results.items():
        med[name] = statistics.median(r["loop_tokens_per_s"] for r in rows)
        print(f"| {name} | {rows[0]['threads']} | {med[name]:,.0f} | {statistics.median(r['stage_s'] for r in rows):.1f} | "
              f"{rows[0]['loss']:.4f} |")
    names = list(results)
    print("speed-up of this tree (loop tokens/s, medians): " + ", ".join(
        f"{med['this tree'] / med[n]:.2f}x over {n}" for n in names if n != "this tree"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(required=True)
    p = sub.add_parser("throughput")
    p.add_argument("--preset", default="standard")
    p.add_argument("--batch", type=int, nargs="+", default=[256])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warm", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--engines", default="pipeline,pipeline-compiled,bare-compiled",
                   help="comma-separated: pipeline, pipeline-compiled, pipeline-cudagraphs, bare, bare-compiled, "
                        "bare-cudagraphs (compile mode reduce-overhead)")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--out")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_throughput)
    p = sub.add_parser("sweep")
    p.add_argument("--preset", default="standard")
    p.add_argument("--config", nargs=2, action="append", default=[], metavar=("NAME", "OVERRIDES"))
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--out", required=True)
    p.add_argument("--name", help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("cpu-ab")
    p.add_argument("--ref", default="main")
    p.add_argument("--preset", default="standard")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--old-omp", type=int, help="also run the old code with OMP_NUM_THREADS set to this")
    p.set_defaults(func=cmd_cpu_ab, load=None)
    args = parser.parse_args()
    if args.func is cmd_cpu_ab:
        args.load = os.getloadavg()[0]
    args.func(args)


if __name__ == "__main__":
    main()
