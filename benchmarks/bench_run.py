"""A whole `neglect run` timed stage by stage, with the GPU utilisation of each stage.

    python benchmarks/bench_run.py --out DIR -- --preset standard --set 'seeds=[0,1,2]'

Runs ``python -m experiments run ARGS --out DIR/run`` while ``nvidia-smi`` samples the GPU's
utilisation every 200 ms (when it exists), then ``neglect check-base``. Stage boundaries are
the times the stages' outputs were written (run config, corpus, base model, last finetuning
checkpoint, last evaluation table, metrics, report). Prints a markdown table; writes
DIR/run_timeline.json and DIR/gpu_samples.csv.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def newest(paths) -> float | None:
    times = [p.stat().st_mtime for p in paths if p.exists()]
    return max(times) if times else None


def stage_marks(run: Path, start: float, end: float) -> list[tuple[str, float, float]]:
    marks = [("start-up (imports, world, config)", start, newest([run / "config.json"])),
             ("corpus (generate + tokenize)", None, newest(run.glob("corpus/*.json"))),
             ("pretraining (model, compile, loop, saves)", None, newest([run / "base" / "config.json"])),
             ("finetuning (conditions x seeds)", None, newest([*run.glob("checkpoints/**/config.json"),
                                                                 *run.glob("results/train_logs/*.csv")])),
             ("evaluation (every checkpoint)", None, newest(run.glob("evals/**/*.csv"))),
             ("collect + report", None, end)]
    out, previous = [], start
    for name, _, stop in marks:
        stop = stop if stop is not None else previous
        out.append((name, previous, stop))
        previous = stop
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("run_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = out / "run"
    shutil.rmtree(run, ignore_errors=True)
    run_args = [a for a in args.run_args if a != "--"]
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))}
    smi = None
    samples = out / "gpu_samples.csv"
    if shutil.which("nvidia-smi"):
        smi = subprocess.Popen(["nvidia-smi", "--query-gpu=timestamp,utilization.gpu,memory.used",
                                "--format=csv,noheader,nounits", "-lms", "200"], stdout=open(samples, "w"))
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "experiments", "run", *run_args, "--out", str(run)], env=env,
                          capture_output=True, text=True)
    end = time.time()
    if smi is not None:
        smi.terminate()
        smi.wait()
    (out / "run_stderr.txt").write_text(proc.stderr[-200_000:])
    if proc.returncode:
        raise SystemExit(f"neglect run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    t = time.time()
    check = subprocess.run([sys.executable, "-m", "experiments", "check-base", str(run)], env=env,
                           capture_output=True, text=True)
    check_s = time.time() - t
    util = None
    if smi is not None and samples.stat().st_size:
        rows = [line.split(", ") for line in samples.read_text().splitlines() if line.count(",") == 2]
        util = pd.DataFrame({"t": [datetime.datetime.strptime(r[0], "%Y/%m/%d %H:%M:%S.%f").timestamp() for r in rows],
                             "util": [float(r[1]) for r in rows], "mem_mib": [float(r[2]) for r in rows]})
    stages = []
    for name, a, b in stage_marks(run, start, end):
        row = {"stage": name, "seconds": round(b - a, 1)}
        if util is not None:
            window = util[(util.t >= a) & (util.t <= b)]
            row["gpu_util_mean"] = round(float(window.util.mean()), 1) if len(window) else None
            row["samples"] = len(window)
        stages.append(row)
    log = pd.read_csv(run / "results" / "pretrain_log.csv")
    steady = log.iloc[len(log) // 5:]  # past compilation
    loop = {"tokens": int(log.tokens.iloc[-1]), "loop_s": float(log.time.iloc[-1]),
            "tokens_per_s_whole_loop": float(log.tokens.iloc[-1] / log.time.iloc[-1]),
            "tokens_per_s_steady": float((steady.tokens.iloc[-1] - steady.tokens.iloc[0])
                                         / max(steady.time.iloc[-1] - steady.time.iloc[0], 1e-9))}
    result = {"args": run_args, "total_s": round(end - start, 1), "stages": stages, "pretrain_loop": loop,
              "gpu_util_mean_run": None if util is None else round(float(util.util.mean()), 1),
              "check_base_s": round(check_s, 1), "check_base": json.loads(check.stdout) if check.returncode == 0 else
              check.stderr[-2000:]}
    (out / "run_timeline.json").write_text(json.dumps(result, indent=1))
    print(f"`neglect run {' '.join(run_args)}`: {result['total_s']} s end to end")
    print("| stage | seconds | GPU utilisation (mean of nvidia-smi samples) |")
    print("| --- | ---: | ---: |")
    for s in stages:
        print(f"| {s['stage']} | {s['seconds']} | {s.get('gpu_util_mean')} |")
    print(f"pretraining loop: {loop['tokens']:,} tokens in {loop['loop_s']:.1f} s = {loop['tokens_per_s_whole_loop']:,.0f} "
          f"tokens/s (with compilation), {loop['tokens_per_s_steady']:,.0f} tokens/s past the first fifth")
    print("check-base:", json.dumps(result["check_base"]))


if __name__ == "__main__":
    main()
