#!/usr/bin/env bash
# One GPU call (2026-12-03, third session): issue 23's 5 worlds x 10 claims x 3 seeds on
# `standard`, alone on the GPU and timed; then, in what is left of the call, issue 22's
# positive control on the `testbed` base model (shipped) with 3 finetuning seeds and the
# finetuning recipe the CPU sweep chose (300 documents per claim, 300 steps).
# Results land in $OUT: i23_log.txt, i23_results.tgz (every table, the report's figures'
# data and check_base.json of each world), i22_log.txt, i22_results.tgz.
# CPU smoke: P23=tiny P22=tiny JOBS=1 EXTRA22='--set finetune.steps=6' bash THIS
set -u
OUT=${OUT:-/tmp/g2322}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HF_HUB_OFFLINE=1
start=$(date +%s)
R23=/tmp/i23
timeout ${T23:-520} python3 -m experiments run --preset ${P23:-standard} --out $R23 \
  --set worlds=5 --set world.n_claims=10 --set 'seeds=[0,1,2]' --set jobs=${JOBS:-4} ${EXTRA23:-} > "$OUT/i23_log.txt" 2>&1
rc=$?
echo "issue 23 run: $(( $(date +%s) - start )) s wall, rc $rc" | tee -a "$OUT/i23_log.txt" >&2
tar czf "$OUT/i23_results.tgz" -C $R23 --exclude='*.safetensors' --exclude=checkpoints --exclude=figures_cache \
  --exclude=train_state --exclude=corpus --exclude=base --exclude=report.html . 2>/dev/null
left=$(( ${BUDGET:-590} - ($(date +%s) - start) ))
echo "left for issue 22: $left s" >&2
if [ $left -gt 60 ]; then
  R22=/tmp/i22
  t0=$(date +%s)
  timeout $(( left - 15 )) python3 -m experiments run --preset ${P22:-testbed} --out $R22 --set 'seeds=[0,1,2]' \
    --set jobs=${JOBS:-4} --set finetune.docs_per_claim=300 --set finetune.steps=300 ${EXTRA22:-} > "$OUT/i22_log.txt" 2>&1
  rc=$?
  echo "issue 22 run: $(( $(date +%s) - t0 )) s wall, rc $rc" | tee -a "$OUT/i22_log.txt" >&2
  tar czf "$OUT/i22_results.tgz" -C $R22 results config.json 2>/dev/null
fi
tail -n 30 "$OUT/i23_log.txt" >&2
tail -n 12 "$OUT/i22_log.txt" >&2 2>/dev/null
