#!/usr/bin/env bash
# Issue 22, sweep t (2026-12-05, nineteenth session): finetuning in the pretraining regime.
# The strong judges (testbed_judge: every precondition passed) keep a person's attribute at the name,
# where pretraining wrote it slowly: each biography one document among ~2,000 in a batch, at a rate
# whose per-document step is ~20x smaller than the testbed finetuning's (300 steps of 16 documents,
# half of them claim documents). Plain finetuning there teaches the answer without writing the claim
# at the name. Here the claim documents are learnt the way pretraining learnt facts: large batches,
# 95% background (pretraining-corpus documents), every claim document seen about once, all
# parameters (or layers 0-1's MLPs), for 10.9M tokens. The controls (plain and local, the testbed
# preset's full evaluation) for every  BASE x TAG:override  in $BASES x $FT, side by side.
# On the device: OUT=$OUT NEGLECT="python3 -m experiments" bash THIS
set -u
OUT=${OUT:-/tmp/i22t}; R=${R:-/tmp/i22t_runs}
source "$(dirname "$0")/judge_sweep_lib.sh"
START=$(date +%s); D=${D:-540}; P=${P:-3}
BASES=${BASES:-tj=experiments/pretrained/testbed_judge tb=experiments/pretrained/testbed}
CPT='finetune.batch_size=256;finetune.background_fraction=0.95;finetune.steps=1500;finetune.docs_per_claim=2000;finetune.n_checkpoints=3;seeds=[0]'
# One finetuning seed each (three variants x 3 seeds x 2 conditions side by side do not fit 540 s).
FT=${FT:-"tj:cpt:$CPT;finetune.trainable=;finetune.lr=1e-3
tj:cptm01:$CPT;finetune.lr=1e-3
tb:cpt:$CPT;finetune.trainable=;finetune.lr=1e-3"}
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}
JOBS=${JOBS:-3} variant_sweep
