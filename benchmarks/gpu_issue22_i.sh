#!/usr/bin/env bash
# Issue 22, sweep i (2026-12-03, fifth session): sweep h found that the `testbed` recipe's
# judgement of never-judged facts forms in 2 of 5 pretraining runs (the shipped model and the
# fourth session's rerun: 0.95-0.98); with pretraining seeds 101-103 the judged facts are judged
# right (1.0) but never-judged ones 0.52-0.78: the verdicts were memorised fact by fact. Weight
# decay is the textbook lever that favours the cheaper, general circuit (retrieve, then compare)
# over a memorised table: the same recipe at weight decay 0.3 with the three seeds that failed,
# and at 1.0 with one, side by side on one H200, each exported with its check-base.
# On the device: NEGLECT="python3 -m experiments" bash THIS
# A smoke test on a CPU: RUNS="wd03_s101" EXTRA="--set pretrain.steps=2 --set pretrain.batch_size=4 --set pretrain.track_every=0" bash THIS
set -u
OUT=${OUT:-/tmp/i22i}; R=${R:-/tmp/i22i_runs}
source "$(dirname "$0")/judge_sweep_lib.sh"
overrides() {  # wdXY_sN: weight decay X.Y, pretraining seed N
  local wd=${1%%_*}; wd=${wd#wd}
  echo --set pretrain.weight_decay=${wd:0:1}.${wd:1} --set pretrain.seed=${1##*_s}
}
sweep ${RUNS:-wd03_s101 wd03_s102 wd03_s103 wd10_s101}
