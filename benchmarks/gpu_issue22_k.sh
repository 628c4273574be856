#!/usr/bin/env bash
# Issue 22, sweep k (2026-12-04, sixth session): sweep j found that a larger world (2,000 and
# 4,000 people) delays the verdicts (at 4,000 people they had not formed by 400M tokens in 2 of 3
# runs) and generalises them only in part where they form (never-judged verdict 0.81-0.86). The
# one run that gave a base model close to every precondition was sweep f's d192 x 8 layers with
# told documents (never-judged 0.95 / 0.95, in-context plain 0.81), at the world seed. Here the
# same recipe with the three pretraining seeds on which the 6-layer recipe memorised its
# verdicts, side by side on one H200, each exported with its check-base.
# On the device: NEGLECT="python3 -m experiments" bash THIS
# A smoke test on a CPU: RUNS=m8told_wd03_s101 EXTRA="--set pretrain.steps=2 --set pretrain.batch_size=4 --set pretrain.track_every=0" bash THIS
set -u
OUT=${OUT:-/tmp/i22k}; R=${R:-/tmp/i22k_runs}
source "$(dirname "$0")/judge_sweep_lib.sh"
# Second call (sweep k2): RUNS="m8told_s104 m8told_s105 m8told_wd03_s101" (two more seeds, and
# weight decay 0.3, sweep i's partial lever, on the 8-layer recipe).
overrides() {  # m8told[_wdXY]_sN: 8 layers, told documents, [weight decay X.Y,] pretraining seed N
  echo --set model.n_layers=8 --set corpus.told=1 --set pretrain.seed=${1##*_s}
  case $1 in *_wd*) local wd=${1#*_wd}; wd=${wd%%_*}; echo --set pretrain.weight_decay=${wd:0:1}.${wd:1};; esac
}
sweep ${RUNS:-m8told_s101 m8told_s102 m8told_s103}
