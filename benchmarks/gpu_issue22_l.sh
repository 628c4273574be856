#!/usr/bin/env bash
# Issue 22, sweep l (2026-12-04, eighth session): the issue's third lead, judgement traces.
# The seventh session found that in the base models whose judgement generalises, judged and
# held-out people keep their city in one format at the name, and in memorising runs the held-out
# people's is barely there although those models answer questions about them. A trace document
# (`corpus.trace`) is a verdict on a judged fact with the stored fact recalled, in a biography
# sentence, between the statement and the verdict: judging taught as "retrieve what the
# biographies keep about the subject, then compare", through the one retrieval every person
# shares. The 8-layer recipe with told documents and deterministic kernels, on the two seeds
# whose runs without traces memorised (108: 0.60, 109: 0.62, seventh session) and a new one.
# On the device: RUNS="..." NEGLECT="python3 -m experiments" bash THIS
# A smoke test on a CPU: RUNS=m8told_tr2_s108 EXTRA="--set pretrain.steps=2 --set pretrain.batch_size=4 --set pretrain.track_every=0" bash THIS
set -u
OUT=${OUT:-/tmp/i22l}; R=${R:-/tmp/i22l_runs}
source "$(dirname "$0")/judge_sweep_lib.sh"
overrides() {  # m{L}told[_trW]_sN: L layers, told documents, [trace documents at weight W,] pretraining seed N
  local layers=${1#m}; layers=${layers%%told*}
  echo --set model.n_layers=$layers --set corpus.told=1 --set pretrain.seed=${1##*_s}
  case $1 in *_tr*) local w=${1#*_tr}; echo --set corpus.trace=${w%%_*};; esac
}
sweep ${RUNS:-m8told_tr2_s108 m8told_tr2_s109 m8told_tr2_s110}
