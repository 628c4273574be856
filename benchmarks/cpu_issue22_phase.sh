#!/usr/bin/env bash
# Issue 22 on 2 CPU cores (tenth to fifteenth sessions): one more pretraining phase of 10M tokens
# (600 steps of 128 x 128, lr 5e-4) on a base model, then its preconditions (`neglect check-base`)
# and, unless NORUN is set, its controls (plain and local finetuning, 3 seeds, the PRESET's
# evaluation with the belief-frame screen; layers 0-1 MLPs trained, as the testbed preset does).
#
# usage: INIT=BASE_DIR [R=/tmp/i22cpu] [NORUN=1] [PRESET=testbed|demo] bash THIS NAME [--set corpus.X=Y ...]
#   INIT  the base model the phase starts from (default: the shipped testbed model)
#   PRESET  the controls' evaluation: testbed (default; every held-out subject, as on the GPU) or demo
#         (40 subjects, as `make demo`: faster, and optimistic about probe validity -- sixteenth session:
#         c_ntt_t05tt's worst drop was 0.022 at the demo's size on the CPU, 0.035-0.047 at the full one on the GPU)
#   NAME  writes R/NAME (pretraining run), R/NAME.export (the model), R/NAME.checkbase.json and R/NAME.pc (controls)
# Fifteenth session: INIT=p2ntt_800's export (gpu_issue22_o.sh, RUNS=p2ntt_800, on one H200), NAME
# c_ntt_t05tt with --set corpus.told=0.5 --set corpus.tagged=2; then again from that one with
# --set pretrain.seed=202 (a fresh corpus sample). Takes ~25 min to pretrain, ~3 min to check,
# ~22 min for the controls. Numbers: base_model_checks.md (fifteenth session).
set -eux
NAME=$1; shift
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
N=${NEGLECT:-.venv/bin/neglect}
R=${R:-/tmp/i22cpu}/$NAME
INIT=${INIT:-experiments/pretrained/testbed}
[ -n "$(ls "$R.export" 2>/dev/null)" ] || \
$N pretrain --preset testbed --out "$R" --export "$R.export" --set 'pretrain.shipped="off"' \
  --set "pretrain.init_from=\"$INIT\"" --set pretrain.batch_size=128 \
  --set pretrain.steps=600 --set pretrain.lr=5e-4 --set pretrain.warmup=20 --set pretrain.seed=201 "$@"
$N check-base "$R" > "$R.checkbase.json"
[ -n "${NORUN:-}" ] || $N run --preset "${PRESET:-testbed}" --out "$R.pc" --set base_model="$R.export" --set 'finetune.trainable=layers\.[01]\..*mlp' \
  --set 'conditions=["plain","local"]' --set 'seeds=[0,1,2]' --set finetune.n_checkpoints=2 --set jobs=2
