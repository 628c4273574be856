#!/usr/bin/env bash
# Issue 22, next sweep (prepared 2026-12-03, not yet run): is the `testbed` recipe past both
# transitions (verdicts on never-judged facts; the truth right after a statement) reliably, and
# when does each happen? Three world seeds, 480M tokens each (twice the preset; a corpus of a
# quarter the documents, seen ~5 times, so that three corpora generate within the call),
# judgement tracked every 10% of the steps (each run's results/pretrain_tracking.csv comes back
# in errs.tgz as <run>.tracking.csv), check-base at the end.
# SEEDS (world seeds, default "0 1 2") and STEPS (default 7320) narrow it; each base model
# comes back as <run>.base.tgz.
# A smoke test on a CPU: PRESET=tiny EXTRA="--set pretrain.steps=20 --set pretrain.track_every=10" bash THIS
set -u
OUT=${OUT:-/tmp/i22e}; R=${R:-/tmp/i22e_runs}
source "$(dirname "$0")/judge_sweep_lib.sh"
stamp start
for seed in ${SEEDS:-0 1 2}; do
  variant s${seed}_${STEPS:-7320} --set world.seed=$seed --set pretrain.steps=${STEPS:-7320} \
    --set pretrain.track_every=$(( ${STEPS:-7320} / 10 )) --set pretrain.corpus_fraction=0.25
done
wait
for d in $R/*; do
  cp $d/results/pretrain_tracking.csv $OUT/$(basename $d).tracking.csv 2>/dev/null
  [ -f $d/base/config.json ] && tar czf $OUT/$(basename $d).base.tgz -C $d base  # ~14 MB: the model itself
done
collect
