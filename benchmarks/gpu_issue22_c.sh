#!/usr/bin/env bash
# Issue 22, judgement that generalises: five testbed variants pretrained side by side on one GPU,
# each then checked (judged vs never-judged facts, names told in context, full check-base).
#   in-context judgements (corpus.context), statements tagged with their truth (corpus.tagged),
#   the ghosts' "unknown, so false" documents on or off, 1,000 vs 8,000 people.
# Ran against the `testbed` preset of commit c9b16cd (before it took this sweep's best recipe).
# A smoke test on a CPU: PRESET=tiny EXTRA="--set pretrain.steps=20" R=/tmp/smoke bash THIS
set -u
OUT=${OUT:-/tmp/i22c}; R=${R:-/tmp/i22c_runs}
source "$(dirname "$0")/judge_sweep_lib.sh"
stamp start
NOUNK="--set corpus.unknown=0"
variant ctx $NOUNK --set corpus.context=1
variant ctx_unk --set corpus.context=1
variant ctx_tag $NOUNK --set corpus.context=1 --set corpus.tagged=1
variant tag $NOUNK --set corpus.tagged=1
variant big_ctx_tag $NOUNK --set corpus.context=1 --set corpus.tagged=1 --set world.n_people=8000 --set world.n_ghosts=2000
wait
collect
