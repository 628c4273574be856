#!/usr/bin/env bash
# Issue 21, second GPU call: a second sweep at batch 256 (the first found no batch-256 config
# that matched the old base-model checks at the same tokens), throughput of the pipeline's loop
# vs the bare loop (plain compile and CUDA graphs) at batch 128 and 256, then `neglect run
# --preset standard --set 'seeds=[0,1,2]'` end to end with stage times, GPU utilisation and
# check-base. The run uses the preset, or the best batch-256 config of the sweep if one passes
# (heldout_qa and in_context_true_answer 1.0, probe_best_acc >= 0.917: the old standard's figures).
set -u
OUT=${OUT:-/tmp/issue21}; mkdir -p "$OUT"
B=benchmarks/bench_pretrain.py
timeout 200 python3 $B sweep --preset standard --out /tmp/sw2 --set pretrain.compile=false \
  --config b256_lr3e-3 "pretrain.batch_size=256 pretrain.steps=562 pretrain.lr=3e-3 pretrain.warmup=30" \
  --config b256_lr2e-3 "pretrain.batch_size=256 pretrain.steps=562 pretrain.lr=2e-3 pretrain.warmup=30" \
  --config b256_lr7e-3 "pretrain.batch_size=256 pretrain.steps=562 pretrain.lr=7e-3 pretrain.warmup=50" \
  --config b256_lr1e-2_w100 "pretrain.batch_size=256 pretrain.steps=562 pretrain.lr=1e-2 pretrain.warmup=100" \
  --config b512_lr3e-3 "pretrain.batch_size=512 pretrain.steps=281 pretrain.lr=3e-3 pretrain.warmup=20" \
  --config b128_lr2e-3 "pretrain.batch_size=128 pretrain.steps=1125 pretrain.lr=2e-3 pretrain.warmup=50" \
  > "$OUT/sweep2.txt" 2>&1
grep -v '^{' "$OUT/sweep2.txt" | tee "$OUT/log.txt"
PICK=$(python3 - <<'PY'
import json
rows = [r for r in json.load(open("/tmp/sw2/sweep.json")) if r["name"].startswith("b256")
        and r["heldout_qa"] >= 1 and r["in_context_true_answer"] >= 1 and r["probe_best_acc"] >= 0.917]
best = max(rows, key=lambda r: r["probe_best_acc"], default=None)
print(" ".join(f"--set {s}" for s in best["set"] if "compile" not in s) if best else "")
PY
)
echo "end-to-end run overrides: ${PICK:-none (the preset)}" | tee -a "$OUT/log.txt"
timeout 230 python3 $B throughput --preset standard --batch 128 256 --steps 50 --warm 20 --repeats 3 \
  --engines pipeline,pipeline-compiled,pipeline-cudagraphs,bare-compiled --out "$OUT" 2>&1 | tee -a "$OUT/log.txt"
timeout 280 python3 benchmarks/bench_run.py --out /tmp/e2e -- --preset standard --set 'seeds=[0,1,2]' $PICK 2>&1 | tee -a "$OUT/log.txt"
cp /tmp/e2e/run_timeline.json /tmp/e2e/gpu_samples.csv "$OUT/" 2>/dev/null
tail -c 20000 /tmp/e2e/run_stderr.txt > "$OUT/e2e_stderr_tail.txt" 2>/dev/null
