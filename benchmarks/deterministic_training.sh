#!/usr/bin/env bash
# Does one config and seed give one set of weights on the GPU (config key `deterministic`), and
# what do deterministic kernels cost? Seventh session (2026-12-04): the 8-layer testbed recipe
# with pretraining seed 104, pretrained twice on one H200, gave a base model that judged
# never-judged facts 0.98 once and 0.64 the next time (benchmarks/base_model_checks.md).
# Runs (benchmarks/deterministic_training.py; STEPS pretraining steps, then 300 finetuning steps
# of the plain condition): det_a, then fast_a, alone (their throughput), then det_b and fast_b
# side by side (their hashes under another load). With deterministic kernels det_a and det_b must
# agree bit for bit; fast_a and fast_b show what torch's default kernels do.
# On the device: OUT=$OUT NEGLECT_PY=python3 bash THIS
# A smoke test on a CPU: PRESET=tiny STEPS=30 FT=6 EXTRA= bash THIS
set -u
OUT=${OUT:-/tmp/det}; R=${R:-/tmp/det_runs}; mkdir -p "$OUT" "$R"
PY=${NEGLECT_PY:-python3}; STEPS=${STEPS:-600}; FT=${FT:-300}; PRESET=${PRESET:-testbed}
EXTRA=${EXTRA---set model.n_layers=8 --set corpus.told=1 --set pretrain.seed=104 --set pretrain.compile=true --set pretrain.track_every=0}
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
one() {  # name, true|false
  [ -d "$R/det_a/corpus" ] && [ ! -d "$R/$1/corpus" ] && mkdir -p "$R/$1" && cp -r "$R/det_a/corpus" "$R/$1/"
  $PY benchmarks/deterministic_training.py --out "$R/$1" --preset $PRESET --deterministic $2 --finetune-steps $FT \
    --set pretrain.steps=$STEPS $EXTRA > "$OUT/$1.json" 2> "$OUT/$1.err"
  echo "$1 rc=$?"
}
one det_a true; one fast_a false
one det_b true & one fast_b false & wait
$PY - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
r = {n: json.loads((out / f"{n}.json").read_text()) for n in ("det_a", "det_b", "fast_a", "fast_b")}
for kind in ("base", "finetuned"):
    print(kind, "deterministic runs equal:", r["det_a"][f"{kind}_sha256"] == r["det_b"][f"{kind}_sha256"],
          "| default kernels equal:", r["fast_a"][f"{kind}_sha256"] == r["fast_b"][f"{kind}_sha256"])
for stage in ("pretrain", "finetune"):
    d, f = r["det_a"][f"{stage}_tokens_per_s"], r["fast_a"][f"{stage}_tokens_per_s"]
    print(f"{stage} tokens/s alone: deterministic {d:,.0f}, default {f:,.0f}, ratio {d / f:.3f}")
(out / "summary.json").write_text(json.dumps(r, indent=1))
PY
