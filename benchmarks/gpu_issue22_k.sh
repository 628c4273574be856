#!/usr/bin/env bash
# Issue 22, sweep k (2026-12-04, sixth session): sweep j found that a larger world (2,000 and
# 4,000 people) delays the verdicts (at 4,000 people they had not formed by 400M tokens in 2 of 3
# runs) and generalises them only in part where they form (never-judged verdict 0.81-0.86). The
# one run that gave a base model close to every precondition was sweep f's d192 x 8 layers with
# told documents (never-judged 0.95 / 0.95, in-context plain 0.81), at the world seed. Here the
# same recipe with the three pretraining seeds on which the 6-layer recipe memorised its
# verdicts, side by side on one H200, each exported with its check-base.
# On the device: NEGLECT="python3 -m experiments" bash THIS
# A smoke test on a CPU: SEEDS=101 EXTRA="--set pretrain.steps=2 --set pretrain.batch_size=4 --set pretrain.track_every=0" bash THIS
set -u
OUT=${OUT:-/tmp/i22k}; R=${R:-/tmp/i22k_runs}
source "$(dirname "$0")/judge_sweep_lib.sh"
stamp start
for s in ${SEEDS:-101 102 103}; do
  exported m8told_s$s --set model.n_layers=8 --set corpus.told=1 --set pretrain.seed=$s
done
wait
cat $OUT/status.txt
preconditions $(for s in ${SEEDS:-101 102 103}; do echo m8told_s$s; done)
