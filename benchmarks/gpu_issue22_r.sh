#!/usr/bin/env bash
# Issue 22, sweep r (2026-12-05, seventeenth session). Sixteen sessions left the trade: a 6-layer base
# forms truth at the bare statement at its last layer (0.94-0.98 at layer 6, 0.85-0.90 at layer 5, the
# one the bound may read), and every phase that lifted layer 5 past 0.90 lost in-context reading or the
# positive control; the 8-layer trace judges pass every precondition and are not convinced. So a model
# of 7 layers from scratch, the testbed's world, corpus and pretraining (no traces), with told documents
# so that a plain document in context moves the answer; then its controls with the preset's finetuning
# and with the MLPs' keys only (sweep q: on the shipped model plain belief 1.00 / 1.00 / P(true) 0.996).
#   m7t{T}_sN   7 layers, told at weight T/10 (m7t05: 0.5, m7t10: 1), pretraining seed N; screened at 80M
#               tokens on the held-out people's city at the name (the eighth session's bar, 0.3).
#   m7t{T}tr{W}_sN  and judgement traces at weight W (`corpus.trace`; the 8-layer judges had 2).
# Seventeenth session: m7t05 passed the screen in 0 of 4 seeds (1-4) and memorised when run to the end.
# Eighteenth session: m7t05tr2 passed it in 0 of 4 seeds (1-4; 0.07-0.13 at 80M tokens).
# On the device: OUT=$OUT D=570 NEGLECT="python3 -m experiments" bash THIS   (RUNS="a b,c": workers a and b,c)
set -u
OUT=${OUT:-/tmp/i22r}; R=${R:-/tmp/i22r_runs}
source "$(dirname "$0")/judge_sweep_lib.sh"
START=$(date +%s); D=${D:-570}; RUNS=${RUNS:-m7t05_s1,m7t05_s2}
FT=${FT-'base:finetune.lr=3e-4 k01:finetune.trainable=layers\.[01]\..*mlp\.(gate|up)_proj'}
overrides() {
  local kind=${1#m7t}; kind=${kind%%_*}; local told=${kind%%tr*}
  echo --set model.n_layers=7 --set pretrain.seed=${1##*_s} --set corpus.told=$(awk "BEGIN{print $told / 10}") \
       --set pretrain.screen_step=1220 --set pretrain.screen_min=0.3
  case $kind in *tr*) echo --set corpus.trace=${kind#*tr};; esac
}
run_workers "$RUNS"
