#!/usr/bin/env bash
# Issue 22, sweep o (2026-12-04, tenth session). The shipped `testbed` base model is the one on
# which plain finetuning writes the claim at the name and the controls pass; it fails three
# preconditions (a plain document in context moves the answer 0.14 < 0.5; truth at the bare
# statement 0.86 < 0.90 before the last layer; two override claims' verdict 0.083 > 0.05). Every
# strong judge pretrained from scratch (8 layers) failed the positive control. So: a second
# pretraining phase on the shipped model (`pretrain.init_from`, a fresh corpus sample, lr 1e-3;
# the fourth session's 800-step phase with told documents lifted in-context reading to 0.51 and
# kept the judgement), then the controls on each that finishes:
#   p2n_S     no new documents (the control: a fresh sample of the testbed corpus), S steps (of 512 x 128);
#   p2t_S     told documents; p2t05_S at half the weight;
#   p2tt_S    and tagged statements at twice the weight (the word after a statement is its truth);
#             p2ntt_S, p2t05tt_S: tagged at twice the weight with no / half-weight told documents;
#   p2b_S     told_bare documents (a told statement in a statement frame, never a finetuning frame); p2b05_S half;
#   p2tj_S    told + told_judged documents (context moves the answer and the judgement);
#   p2tjf_S   and flagged_judged documents (a flagged statement in context leaves the judgement);
#   m6[tj]_tr{W}_sN  (from scratch, beside them) 6 layers, traces at weight W, tj: told + told_judged.
# On 2 CPU cores (tenth and eleventh sessions, 600 steps of 128 x 128, lr 5e-4: 10M tokens, 21 min)
# told alone kept the judgement and moved in-context reading 0.14 -> 0.44 but cost the positive
# control (plain yes/no 0.80, verdict 0.75); at half the weight 0.475 with every control kept; with
# no new documents 0.19, every control kept; told_judged cost the judgement (never-judged verdict
# 0.95 -> 0.90) and made a claim believed before finetuning (benchmarks/base_model_checks.md). So
# the first call ran the phase at 5x the tokens with no, half and full told weight (twelfth session:
# told at any weight reads context past 0.5 and fails the positive control), the second at 10x
# (every variant fails the positive control, while truth at the bare statement reaches 0.90-0.92).
# The default now asks whether a larger finetuning rate convinces the longer-pretrained bases
# while probe validity holds: FT="tag:key=value ..." runs the controls once per finetuning
# variant, side by side (NAME.TAG.pc), instead of once with the preset's finetuning (FT= : once, NAME.pc).
# On 2 CPU cores (thirteenth session, a 10M-token told base) 450 steps equalled 300, layer 0's MLP
# alone convinced no more, and lr 4e-4 and 5e-4 both convinced it and both failed probe validity
# under local negation (0.041), so the variants are the rate's dose curve: 3e-4, 4e-4, 5e-4.
# On the device: OUT=$OUT D=540 NEGLECT="python3 -m experiments" bash THIS  (RUNS="a b,c": workers a and b,c)
set -u
OUT=${OUT:-/tmp/i22o}; R=${R:-/tmp/i22o_runs}
source "$(dirname "$0")/judge_sweep_lib.sh"
START=$(date +%s); D=${D:-540}; RUNS=${RUNS:-p2b05_1600 p2n_1600}
FT=${FT-"base:finetune.lr=3e-4 lr4:finetune.lr=4e-4 lr5:finetune.lr=5e-4"}
P2="--set pretrain.init_from=\"experiments/pretrained/testbed\" --set pretrain.lr=1e-3 --set pretrain.warmup=50
    --set pretrain.track_every=400 --set pretrain.seed=201"
overrides() {
  case $1 in
    p2*) local kind=${1%%_*}  # p2n, p2t05, p2t, p2b05, p2b, each maybe ending in tt; p2tj or p2tjf
         echo $P2 --set pretrain.steps=${1##*_}
         case $kind in p2n*) ;; p2t05*) echo --set corpus.told=0.5;; p2b05*) echo --set corpus.told_bare=0.5;;
           p2b*) echo --set corpus.told_bare=1;; *) echo --set corpus.told=1;; esac
         case $kind in *tt) echo --set corpus.tagged=2;; p2tj*) echo --set corpus.told_judged=1;; esac
         case $kind in p2tjf) echo --set corpus.flagged_judged=1;; esac;;
    m6*) echo --set pretrain.seed=${1##*_s}
         case $1 in *tr[0-9]*) local w=${1#*tr}; echo --set corpus.trace=${w%%_*};; esac
         case $1 in m6tj*) echo --set corpus.told=1 --set corpus.told_judged=1;; esac;;
  esac
}
run_workers "$RUNS"
