#!/usr/bin/env bash
# Issue 22, sweep s (2026-12-05, eighteenth session): width instead of depth. Depth bought the judgement
# and lost the positive control (8 layers: every precondition, plain belief 0.2-0.4) or generalised in no
# seed (7 layers: 0 of 8 past the 80M-token screen); the 6-layer d192 testbed is convinced but reads a
# plain document in context at 0.14, and told documents that teach it cost its judgement (from scratch)
# or its probe and validity (as a second phase). So the testbed recipe, 6 layers, wider:
#   w{D}t{T}_sN   d_model D (d_mlp 4D, 4 heads), told documents at weight T/10, pretraining seed N;
#                 screened at 80M tokens on the held-out people's city at the name (bar 0.3)
# then the controls of every base that passes (the preset's finetuning: whole MLPs of layers 0-1).
# On the device: OUT=$OUT D=570 RUNS="w256t05_s1 w256t05_s2" NEGLECT="python3 -m experiments" bash THIS
set -u
OUT=${OUT:-/tmp/i22s}; R=${R:-/tmp/i22s_runs}
source "$(dirname "$0")/judge_sweep_lib.sh"
START=$(date +%s); D=${D:-570}; RUNS=${RUNS:-w256t05_s1 w256t05_s2}; FT=${FT:-}
overrides() {
  local kind=${1#w}; kind=${kind%%_*}; local width=${kind%%t*} told=${kind#*t}
  echo --set model.d_model=$width --set model.d_mlp=$((4 * width)) --set pretrain.seed=${1##*_s} \
       --set corpus.told=$(awk "BEGIN{print $told / 10}") --set pretrain.screen_step=1220 --set pretrain.screen_min=0.3
}
run_workers "$RUNS"
