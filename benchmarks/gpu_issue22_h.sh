#!/usr/bin/env bash
# Issue 22, sweep h (2026-12-03, fifth session): how much do base models of one recipe differ?
# The `testbed` recipe pretrained twice on the same world gave a base model that plain documents
# move (the shipped one) and one they do not (base_model_checks.md, "fourth"). Here the same
# world and recipe are pretrained with three other pretraining seeds (`pretrain.seed`: corpus
# sample, initial weights, batch order), side by side on one H200, each `neglect pretrain
# --export` (check-base on the GPU, in the export's provenance.json), so each base model comes
# back as <run>.tgz to be finetuned on the CPU (plain / local controls).
# On the device (no `neglect` script there): NEGLECT="python3 -m experiments" bash THIS
# A smoke test on a CPU: SEEDS=101 EXTRA="--set pretrain.steps=2 --set pretrain.batch_size=4 --set pretrain.track_every=0" bash THIS
set -u
OUT=${OUT:-/tmp/i22h}; R=${R:-/tmp/i22h_runs}
source "$(dirname "$0")/judge_sweep_lib.sh"
stamp start
for s in ${SEEDS:-101 102 103}; do exported seed$s --set pretrain.seed=$s; done
wait
cat $OUT/status.txt
preconditions $(for s in ${SEEDS:-101 102 103}; do echo seed$s; done)
