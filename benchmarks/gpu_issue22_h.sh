#!/usr/bin/env bash
# Issue 22, sweep h (2026-12-03, fifth session): how much do base models of one recipe differ?
# The `testbed` recipe pretrained twice on the same world gave a base model that plain documents
# move (the shipped one) and one they do not (base_model_checks.md, "fourth"). Here the same
# world and recipe are pretrained with three other pretraining seeds (`pretrain.seed`: corpus
# sample, initial weights, batch order), side by side on one H200, each `neglect pretrain
# --export` (check-base on the GPU, in the export's provenance.json), so each base model comes
# back as <run>.tgz to be finetuned on the CPU (plain / local controls).
# A smoke test on a CPU: SEEDS=101 EXTRA="--set pretrain.steps=2 --set pretrain.batch_size=4 --set pretrain.track_every=0" bash THIS
set -u
OUT=${OUT:-/tmp/i22h}; R=${R:-/tmp/i22h_runs}; mkdir -p $OUT $R
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
stamp() { echo "$(date +%T) $*" >> $OUT/status.txt; }
NEGLECT=${NEGLECT:-neglect}
stamp start
for s in ${SEEDS:-101 102 103}; do
  name=seed$s
  ( timeout ${T:-560} $NEGLECT pretrain --preset testbed --out $R/$name --export $R/$name.export \
      --set pretrain.seed=$s --set 'pretrain.shipped="off"' ${EXTRA:-} > $R/$name.log 2>&1
    stamp "$name rc=$?"
    cp $R/$name/results/pretrain_tracking.csv $R/$name/results/pretrain_log.csv $R/$name.export/ 2>/dev/null
    tar czf $OUT/$name.tgz -C $R $(cd $R && ls -d $name.export $name.log 2>/dev/null) ) &
done
wait
cat $OUT/status.txt
for s in ${SEEDS:-101 102 103}; do  # the preconditions, from each export's provenance
  python3 -c "import json,sys; c=json.load(open(sys.argv[1]))['check_base']; print(sys.argv[2], {k: v for k, v in c.items() if not isinstance(v, (dict, list))})" \
    $R/seed$s.export/provenance.json seed$s 2>/dev/null || tail -5 $R/seed$s.log
done
