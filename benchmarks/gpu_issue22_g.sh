#!/usr/bin/env bash
# Issue 22, sweep g (2026-12-03, fourth session): the `testbed` recipe pretrained from scratch with
# the told documents in the mix (sweep f: d192 x 8 with them read a plain document in context
# 0.81; a second phase on the shipped model only 0.41-0.51), the 6-layer model of the preset, two
# runs side by side: `corpus.told=1`, and the same with twice the tagged statements. Each is
# `neglect pretrain --export` (check-base on the GPU, written into the export's provenance.json)
# and comes back as <run>.tgz (the export) with its pretraining log and judgement tracking.
# A smoke test on a CPU: EXTRA="--set pretrain.steps=2 --set pretrain.batch_size=4 --set pretrain.track_every=0" bash THIS
set -u
OUT=${OUT:-/tmp/i22g}; R=${R:-/tmp/i22g_runs}; mkdir -p $OUT $R
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
stamp() { echo "$(date +%T) $*" >> $OUT/status.txt; }
run() {  # name, overrides...
  local name=$1; shift
  ( timeout ${T:-560} neglect pretrain --preset testbed --out $R/$name --export $R/$name.export "$@" ${EXTRA:-} \
      > $R/$name.log 2>&1
    stamp "$name rc=$?"
    cp $R/$name/results/pretrain_tracking.csv $R/$name/results/pretrain_log.csv $R/$name.export/ 2>/dev/null
    tar czf $OUT/$name.tgz -C $R $(cd $R && ls -d $name.export $name.log 2>/dev/null) ) &
}
stamp start
run told1 --set corpus.told=1
run told1_tag2 --set corpus.told=1 --set corpus.tagged=2
wait
cat $OUT/status.txt
for name in told1 told1_tag2; do  # the preconditions, from each export's provenance
  python3 -c "import json,sys; c=json.load(open(sys.argv[1]))['check_base']; print(sys.argv[2], {k: v for k, v in c.items() if not isinstance(v, (dict, list))})" \
    $R/$name.export/provenance.json $name 2>/dev/null || tail -5 $R/$name.log
done
