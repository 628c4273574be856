#!/usr/bin/env bash
# Issue 22, sweep q (2026-12-05, seventeenth session): the finetuning recipe on bases that already exist.
# The strong judges are not convinced by plain documents when finetuning trains whole MLPs: the write
# lands where the cloze answer reads it and not where the judgement does. Trained on its keys only
# (`gate_proj` and `up_proj`; `down_proj`, the values, frozen), an MLP can only route a name to what it
# already writes, and `testbed_judge` went from plain verdict 0.16 to 0.45 (one seed, CPU, demo size).
# Here: the controls (plain and local, 3 seeds, the testbed preset's full evaluation) for every
#   BASE=path  x  TAG:override   in $BASES x $FT, side by side (at most P at once).
# On the device: OUT=$OUT NEGLECT="python3 -m experiments" bash THIS
set -u
OUT=${OUT:-/tmp/i22q}; R=${R:-/tmp/i22q_runs}
source "$(dirname "$0")/judge_sweep_lib.sh"
START=$(date +%s); D=${D:-540}; P=${P:-9}
BASES=${BASES:-tj=experiments/pretrained/testbed_judge tb=experiments/pretrained/testbed}
KEYS='mlp\.(gate|up)_proj'
FT=${FT:-"tj:k01:finetune.trainable=layers\.[01]\..*$KEYS
tj:k01lr6:finetune.trainable=layers\.[01]\..*$KEYS;finetune.lr=6e-4
tj:k01lr10:finetune.trainable=layers\.[01]\..*$KEYS;finetune.lr=1e-3
tj:k0:finetune.trainable=layers\.0\..*$KEYS
tj:k0lr10:finetune.trainable=layers\.0\..*$KEYS;finetune.lr=1e-3
tj:k03:finetune.trainable=layers\.[0-3]\..*$KEYS
tj:kall:finetune.trainable=.*$KEYS
tb:k01:finetune.trainable=layers\.[01]\..*$KEYS
tb:k01lr6:finetune.trainable=layers\.[01]\..*$KEYS;finetune.lr=6e-4"}
JOBS=${JOBS:-2} variant_sweep
