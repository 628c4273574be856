#!/usr/bin/env bash
# Where finetuning writes a belief (experiments/causal): plain, negated and local finetuning of both
# shipped base models (the testbed and the 8-layer judge; each preset's finetuning, 3 seeds, full
# evaluation), then `neglect patch` of every checkpoint at the last step, yes/no and forced choice.
# On the device: OUT=$OUT NEGLECT="python3 -m experiments" bash THIS   (one H100: about 4 minutes; PRESETS="..."
# for fewer)
set -u
OUT=${OUT:-/tmp/patching}; R=${R:-/tmp/patching_runs}; mkdir -p $OUT $R
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
NEGLECT=${NEGLECT:-neglect}
one() {  # preset: run, then patch both kinds; results back as PRESET.tgz
  local preset=$1
  $NEGLECT run --preset $preset --out $R/$preset --set 'seeds=[0,1,2]' --set finetune.n_checkpoints=2 --set jobs=3 \
    > $R/$preset.log 2>&1
  rc=$?; echo "$(date +%T) $preset run rc=$rc" >> $OUT/status.txt
  for kind in yesno forced_choice; do
    $NEGLECT patch $R/$preset --kind $kind > $R/$preset.patch_$kind.txt 2>&1
    rc=$?; echo "$(date +%T) $preset patch $kind rc=$rc" >> $OUT/status.txt
  done
  tar czf $OUT/$preset.tgz -C $R $preset.log $preset.patch_yesno.txt $preset.patch_forced_choice.txt \
    $preset/results $preset/figures/patching.html $preset/figures/patching_forced_choice.html 2>/dev/null
}
for preset in ${PRESETS:-testbed testbed_judge}; do one $preset & done; wait
cat $OUT/status.txt; cat $R/*.patch_*.txt | grep -v Loading
