#!/usr/bin/env bash
# Pretraining variants side by side on one GPU (issue 3 tuning record); logs go to $OUT.
# Usage on the GPU machine: bash benchmarks/sweep_issue3.sh   (wheels installed in /tmp/site)
export PYTHONPATH=.:/tmp/site TQDM_DISABLE=1 PYTHONUNBUFFERED=1
declare -A V=(
  [std]="preset=standard"
  [std12k]="preset=standard pretrain.steps=12000"
  [std_jh30]="preset=standard world.judge_heldout_fraction=0.3"
  [std_jcp]="preset=standard world.judge_claim_pairs=true"
  [large]="preset=large"
  [large_jcp]="preset=large world.judge_claim_pairs=true"
)
for name in "${!V[@]}"; do
  python3 benchmarks/pretrain_sweep.py cuda ${V[$name]} > "$OUT/$name.log" 2>&1 &
done
wait
