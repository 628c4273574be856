#!/usr/bin/env bash
# Issue 22, sweep f (2026-12-03, fourth session): the two preconditions the shipped `testbed`
# base model still fails, attacked on one H200 in one call.
# - in_context_plain_answer (0.14; bound 0.5): the corpus has flagged-false documents followed by
#   the true answer but nothing where an unflagged statement moves an answer, so the model learned
#   to ignore context. `corpus.told` documents (a plain false statement about a judged person,
#   then the question answered from it) teach the other way. Tried as a second phase on the
#   shipped base model (`pretrain.init_from`, 800 steps = 52M tokens, lr 1e-3), so the judgement
#   it already has is not put at risk, at two weights, with and without ghosts' in-context facts
#   (`corpus.context`), beside a control phase with no new documents.
# - statement_probe_best_acc before the last layer (0.86 at layer 5 of 6; 0.94 at layer 6): a
#   deeper model (d192 x 8 layers), pretrained from scratch with the told documents in the mix.
# Each base model that could be shipped comes back as <run>.base.tgz.
# A smoke test on a CPU: EXTRA="--set pretrain.steps=2 --set pretrain.batch_size=4" LIGHT_ONLY=1 bash THIS
set -u
OUT=${OUT:-/tmp/i22f}; R=${R:-/tmp/i22f_runs}
source "$(dirname "$0")/judge_sweep_lib.sh"
stamp start
P2="--set pretrain.init_from=\"experiments/pretrained/testbed\" --set pretrain.steps=${P2_STEPS:-800} --set pretrain.lr=1e-3 --set pretrain.warmup=50 --set pretrain.track_every=400"
[ -z "${LIGHT_ONLY:-}" ] && variant m8_told --set model.n_layers=8 --set corpus.told=1
variant p2_none $P2
variant p2_told1 $P2 --set corpus.told=1
variant p2_told2 $P2 --set corpus.told=2
variant p2_told1_ctx $P2 --set corpus.told=1 --set corpus.context=1
wait
for d in $R/*; do
  cp $d/results/pretrain_tracking.csv $OUT/$(basename $d).tracking.csv 2>/dev/null
done
for name in m8_told p2_told1 p2_told2; do
  [ -f $R/$name/base/config.json ] && tar czf $OUT/$name.base.tgz -C $R/$name base
done
collect
