#!/usr/bin/env bash
# Issue 21, first GPU call: large-batch pretraining configs with check_base (standard and large
# worlds, every config its own process, all at once on one GPU, eager), then pretraining
# throughput of the pipeline's loop vs the bare loop. Run from the repository root; OUT is where
# the tables go.
set -u
OUT=${OUT:-/tmp/issue21}; mkdir -p "$OUT"
B=benchmarks/bench_pretrain.py
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,utilization.gpu --format=csv | tee "$OUT/log.txt"
E="--set pretrain.compile=false"
timeout 300 python3 $B sweep --preset standard --out /tmp/sw_std $E \
  --config b128_lr5e-3 "pretrain.batch_size=128 pretrain.steps=1125 pretrain.lr=5e-3 pretrain.warmup=50" \
  --config b128_lr3e-3 "pretrain.batch_size=128 pretrain.steps=1125 pretrain.lr=3e-3 pretrain.warmup=50" \
  --config b256_lr5e-3 "pretrain.batch_size=256 pretrain.steps=562 pretrain.lr=5e-3 pretrain.warmup=30" \
  --config b256_lr1e-2 "pretrain.batch_size=256 pretrain.steps=562 pretrain.lr=1e-2 pretrain.warmup=30" \
  --config b512_lr1e-2 "pretrain.batch_size=512 pretrain.steps=281 pretrain.lr=1e-2 pretrain.warmup=20" \
  --config b256_2x "pretrain.batch_size=256 pretrain.steps=1125 pretrain.lr=5e-3 pretrain.warmup=30" \
  --config b512_2x "pretrain.batch_size=512 pretrain.steps=562 pretrain.lr=1e-2 pretrain.warmup=30" \
  --config b1024_2x "pretrain.batch_size=1024 pretrain.steps=281 pretrain.lr=1.5e-2 pretrain.warmup=20" \
  > "$OUT/sweep_standard.txt" 2>&1 &
timeout 300 python3 $B sweep --preset large --out /tmp/sw_large $E \
  --config b256_lr2e-3 "pretrain.batch_size=256 pretrain.steps=1125 pretrain.lr=2e-3 pretrain.warmup=50" \
  --config b512_lr3e-3 "pretrain.batch_size=512 pretrain.steps=562 pretrain.lr=3e-3 pretrain.warmup=30" \
  --config b256_half "pretrain.batch_size=256 pretrain.steps=562 pretrain.lr=2e-3 pretrain.warmup=30" \
  > "$OUT/sweep_large.txt" 2>&1 &
wait
cat "$OUT/sweep_standard.txt" "$OUT/sweep_large.txt" | grep -v '^{' | tee -a "$OUT/log.txt"
timeout 280 python3 $B throughput --preset standard --batch ${BATCHES:-256 1024} --steps 50 --warm 20 --repeats 3 --out "$OUT" 2>&1 \
  | tee -a "$OUT/log.txt"
