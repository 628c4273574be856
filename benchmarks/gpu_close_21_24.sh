#!/usr/bin/env bash
# One GPU call closing issues 21 and 24 (2026-12-03): `neglect run --preset standard` with 3
# seeds at jobs=1 and jobs=4 (stage times, GPU utilisation), then the paper recipe on a 0.5B
# architecture (evaluation vs its bare forward floor). Each step has its own timeout; results
# land in $OUT (run_j1.json, run_j4.json, bench_paper_recipe.{json,md}, log.txt).
set -u
OUT=${OUT:-/tmp/close}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HF_HUB_OFFLINE=1
for j in 1 4; do
  timeout ${T_RUN:-170} python3 benchmarks/bench_run.py --out /tmp/run_j$j -- --preset standard \
    --set 'seeds=[0,1,2]' --set jobs=$j 2>&1 | grep -v '^\s*$' | tail -25 | tee -a "$OUT/log.txt"
  cp /tmp/run_j$j/run_timeline.json "$OUT/run_j$j.json" 2>/dev/null
done
timeout ${T_PAPER:-300} python3 benchmarks/bench_paper_recipe.py --out /tmp/paper 2>&1 | tail -40 | tee -a "$OUT/log.txt"
cp /tmp/paper/bench_paper_recipe.json /tmp/paper/bench_paper_recipe.md "$OUT/" 2>/dev/null
echo done | tee -a "$OUT/log.txt"
