"""One evaluator's fixed-probe fit and two checkpoint evaluations, timed, with the bare forward
passes they need as the floor: the evaluation part of ``bench_paper_recipe.py`` without the
finetuning, with every built-in statement set (1,276 probe statements), on a model of any size.

    python benchmarks/bench_evaluator.py --out DIR --size full              # on a GPU
    OMP_NUM_THREADS=1 python benchmarks/bench_evaluator.py --out DIR --size mid --device cpu

The model (``make_model(size)`` of ``bench_residuals.py``, random weights, a local BPE tokenizer)
and the claim pack are written as in ``bench_paper_recipe.py``; the config is the ``paper``
preset on them. Timed: loading the base model and ``Evaluator.fit_fixed`` on it; then
``Evaluator.evaluate`` of the base model (with the model checks: the first table of a run) and
of the same weights loaded again as a checkpoint would be (a new model object: nothing of the
fixed fit is reused), each with its floor (``bench_paper_recipe.evaluate_checkpoint``: the
recorded forward calls replayed bare); then the two probe sweeps of one evaluation alone.
Writes DIR/bench_evaluator.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import interp  # noqa: E402
from bench_paper_recipe import config, evaluate_checkpoint, sync, write_model, write_pack  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="working directory (model, pack, results)")
    parser.add_argument("--size", default="mid", choices=["tiny", "toy", "mid", "full"])
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    from experiments.evaluation.evaluator import Evaluator
    from experiments.pipeline import checked_config

    out = Path(args.out)
    model = out / f"model_{args.size}"
    if not (model / "config.json").is_file():  # kept between runs: the same weights for a before/after
        write_model(model, args.size, 600 if args.size in ("tiny", "toy") else 8000)
    pack = out / "pack"
    paths = {"claims": pack / "claims", "docs": pack / "documents", "background": pack / "background.jsonl",
             "instruct": pack / "instruct.jsonl"}
    if not paths["claims"].is_dir():
        write_pack(pack, 12, 1)
    cfg, materials = checked_config(config(model, paths, args.device, tiny=False))
    ev = Evaluator(cfg, materials)
    times: dict = {"statements": len(ev.statements), "threads": torch.get_num_threads()}

    def stage(name, fn):
        sync(args.device)
        start = time.perf_counter()
        result = fn()
        sync(args.device)
        times[name] = time.perf_counter() - start
        print(f"{name}: {times[name]:.2f} s", flush=True)
        return result

    base = stage("load base model", lambda: interp.load_model(model, device=args.device))
    stage("fit_fixed", lambda: ev.fit_fixed(base))
    for name, lm, checks in (("base model", base, True),
                             ("checkpoint", interp.load_model(model, device=args.device), False)):
        _, timing = evaluate_checkpoint(ev, lm, args.device, with_model_checks=checks)
        times[f"evaluate {name}"] = timing
        print(f"evaluate {name}: {timing['eval_s']:.2f} s, floor {timing['floor_s']:.2f} s, "
              f"ratio {timing['ratio']:.2f}, {timing['forward_calls']} forward calls", flush=True)
    acts = stage("activations", lambda: ev.activations(base)[0])
    stage("probe sweeps (refit + validation)", lambda: ev.fit_probes(acts, device=base.device))
    (out / "bench_evaluator.json").write_text(json.dumps(times, indent=2) + "\n")


if __name__ == "__main__":
    main()
