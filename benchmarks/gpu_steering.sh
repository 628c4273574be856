#!/usr/bin/env bash
# Does the verdict read the truth probe's direction? (experiments/causal/steering.py, `neglect steer`)
# Plain, negated and local finetuning of both shipped base models (the testbed and the 8-layer judge;
# each preset's finetuning, 3 seeds, full evaluation), then `neglect steer` of the base model and every
# checkpoint at the last step, at every layer below the last, for the logistic (the run's) and mass-mean
# probes, added on the statement's tokens and at the answer position. Logs and tables are gathered in
# $L (a step that outlives STEP_S seconds is stopped with its Python traceback in its log) and packed
# into $OUT/steering.tgz, also after a `timeout` on this script (the pack is its EXIT trap).
# On the device: OUT=$OUT NEGLECT="python3 -X faulthandler -m experiments" bash THIS
set -u
OUT=${OUT:-/tmp/steering}; R=${R:-/tmp/steering_runs}; L=$R/logs; mkdir -p $OUT $L
trap 'tar czf $OUT/steering.tgz -C $R logs' EXIT; trap 'exit 124' TERM INT
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
NEGLECT=${NEGLECT:-neglect}
STEP_S=${STEP_S:-240}
one() {  # preset, its number of layers, then the (site probe) pairs to steer
  local preset=$1 n=$2 layers=""; shift 2
  for l in $(seq 1 $((n - 1))); do layers="$layers --layer $l"; done
  $NEGLECT run --preset $preset --out $R/$preset --set 'seeds=[0,1,2]' --set finetune.n_checkpoints=2 --set jobs=3 \
    > $L/$preset.run.log 2>&1
  local rc=$?; echo "$(date +%T) $preset run rc=$rc" >> $L/status.txt
  while [ $# -gt 1 ]; do
    local site=$1 probe=$2; shift 2
    timeout -s ABRT $STEP_S $NEGLECT steer $R/$preset $layers --site $site --probe $probe --alpha -2 --alpha -1 \
      --alpha 1 --alpha 2 --random 2 > $L/$preset.steer_${site}_$probe.txt 2>&1
    rc=$?; echo "$(date +%T) $preset steer $site $probe rc=$rc" >> $L/status.txt
    cp $R/$preset/results/steering.csv $L/$preset.steering_${site}_$probe.csv 2>/dev/null
  done
}
one testbed 6 ${TESTBED_STEPS:-statement logistic last mass_mean} &
one testbed_judge 8 ${JUDGE_STEPS:-statement logistic statement mass_mean last logistic last mass_mean} &
wait
cat $L/status.txt; grep -h "layer" $L/*.steer_*.txt | cut -c1-240
