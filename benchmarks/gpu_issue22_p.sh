#!/usr/bin/env bash
# Issue 22, sweep p (2026-12-05, sixteenth session). The one base that passes every control and every
# precondition but truth at the bare statement is `c_ntt_t05tt` (a 52M-token tagged phase on the GPU,
# then 10M tokens of told documents at half weight with the tags on the CPU: statement probe 0.857 at
# layer 5 < 0.90). The 105M-token told phases from the shipped model reach 0.883-0.893 and fail the
# positive control (this session, sweep o with RUNS="p2t05tt_1600 p2t05_1600"). So: short phases on
# `c_ntt_t05tt` itself (INIT, carried in .cand/), at a low rate on the GPU's large batches, asking whether
# more tagged statements lift truth at the bare statement before the positive control is lost:
#   q{T}_{W}_{S}   told at weight T/10 (0: none), tagged at weight W, S steps of 512 x 128, lr LR (3e-4).
# On the device: OUT=$OUT D=480 NEGLECT="python3 -m experiments" bash THIS   (RUNS="a b,c": workers a and b,c)
set -u
OUT=${OUT:-/tmp/i22p}; R=${R:-/tmp/i22p_runs}
source "$(dirname "$0")/judge_sweep_lib.sh"
START=$(date +%s); D=${D:-480}; RUNS=${RUNS:-q5_4_200 q0_2_200 q5_2_200 q5_4_400}
FT=${FT-}
INIT=${INIT:-.cand/c_ntt_t05tt}; LR=${LR:-3e-4}
overrides() {
  local told=${1#q}; told=${told%%_*}; local rest=${1#*_}
  echo --set "pretrain.init_from=\"$INIT\"" --set pretrain.lr=$LR --set pretrain.warmup=20 \
       --set pretrain.track_every=1000 --set pretrain.seed=301 --set pretrain.steps=${rest#*_} \
       --set corpus.told=$(awk "BEGIN{print $told / 10}") --set corpus.tagged=${rest%%_*}
}
run_workers "$RUNS"
