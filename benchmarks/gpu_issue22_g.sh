#!/usr/bin/env bash
# Issue 22, sweep g (2026-12-03, fourth session): the `testbed` recipe pretrained from scratch with
# the told documents in the mix (sweep f: d192 x 8 with them read a plain document in context
# 0.81; a second phase on the shipped model only 0.41-0.51), the 6-layer model of the preset, two
# runs side by side: `corpus.told=1`, and the same with twice the tagged statements. Each is
# `neglect pretrain --export` (check-base on the GPU, written into the export's provenance.json)
# and comes back as <run>.tgz (the export) with its pretraining log and judgement tracking.
# A smoke test on a CPU: EXTRA="--set pretrain.steps=2 --set pretrain.batch_size=4 --set pretrain.track_every=0" bash THIS
set -u
OUT=${OUT:-/tmp/i22g}; R=${R:-/tmp/i22g_runs}
source "$(dirname "$0")/judge_sweep_lib.sh"
stamp start
exported told1 --set corpus.told=1
exported told1_tag2 --set corpus.told=1 --set corpus.tagged=2
wait
cat $OUT/status.txt
preconditions told1 told1_tag2
