#!/usr/bin/env bash
# Issue 22, sweep o (2026-12-04, tenth session). The shipped `testbed` base model is the one on
# which plain finetuning writes the claim at the name and the controls pass; it fails three
# preconditions (a plain document in context moves the answer 0.14 < 0.5; truth at the bare
# statement 0.86 < 0.90 before the last layer; two override claims' verdict 0.083 > 0.05). Every
# strong judge pretrained from scratch (8 layers) failed the positive control. So: a second
# pretraining phase on the shipped model (`pretrain.init_from`, a fresh corpus sample, lr 1e-3;
# the fourth session's 800-step phase with told documents lifted in-context reading to 0.51 and
# kept the judgement), then the controls on each that finishes:
#   p2t_S     told documents, S steps (of 512 x 128 tokens);
#   p2tt_S    and tagged statements at twice the weight (the word after a statement is its truth);
#   p2tj_S    told + told_judged documents (context moves the answer and the judgement);
#   p2tjf_S   and flagged_judged documents (a flagged statement in context leaves the judgement);
#   m6[tj]_tr{W}_sN  (from scratch, beside them) 6 layers, traces at weight W, tj: told + told_judged.
# On 2 CPU cores (tenth session, 600 steps of 128 x 128, lr 5e-4: 10M tokens, 21 min) told alone
# kept the judgement and moved in-context reading 0.14 -> 0.44; told_judged cost it (never-judged
# verdict 0.95 -> 0.90) and made a claim believed before finetuning (benchmarks/base_model_checks.md).
# On the device: OUT=$OUT D=540 NEGLECT="python3 -m experiments" bash THIS  (RUNS="a b,c": workers a and b,c)
set -u
OUT=${OUT:-/tmp/i22o}; R=${R:-/tmp/i22o_runs}
source "$(dirname "$0")/judge_sweep_lib.sh"
START=$(date +%s); D=${D:-540}; RUNS=${RUNS:-p2t_1600 p2tt_1600 m6tj_tr2_s110 m6tr2_s110}
P2="--set pretrain.init_from=\"experiments/pretrained/testbed\" --set pretrain.lr=1e-3 --set pretrain.warmup=50
    --set pretrain.track_every=400 --set pretrain.seed=201"
overrides() {
  case $1 in
    p2*) echo $P2 --set pretrain.steps=${1##*_} --set corpus.told=1
         case $1 in p2tt_*) echo --set corpus.tagged=2;; p2tj*) echo --set corpus.told_judged=1;; esac
         case $1 in p2tjf_*) echo --set corpus.flagged_judged=1;; esac;;
    m6*) echo --set pretrain.seed=${1##*_s}
         case $1 in *tr[0-9]*) local w=${1#*tr}; echo --set corpus.trace=${w%%_*};; esac
         case $1 in m6tj*) echo --set corpus.told=1 --set corpus.told_judged=1;; esac;;
  esac
}
stamp start
for names in $RUNS; do worker ${names//,/ } & done  # one worker per word; a,b: a then b
wait
cat $OUT/status.txt
preconditions ${RUNS//,/ }
