#!/usr/bin/env bash
# Issue 22, second sweep of this session: the best world of gpu_issue22_c.sh (statements tagged
# with their truth, no "unknown" documents) with weight decay 0.1 (memorised judgements cost more
# than a rule), more tokens, a deeper model, more judged people (20% held out) and more people.
# Ran against the `testbed` preset of commit 008c8cf (before it took this sweep's best recipe).
# A smoke test on a CPU: PRESET=tiny EXTRA="--set pretrain.steps=20" R=/tmp/smoke bash THIS
set -u
OUT=${OUT:-/tmp/i22d}; R=${R:-/tmp/i22d_runs}
source "$(dirname "$0")/judge_sweep_lib.sh"
stamp start
W="--set corpus.unknown=0 --set corpus.tagged=1 --set pretrain.weight_decay=0.1"
LONG="--set pretrain.steps=${LONG_STEPS:-3660}"
variant tag_wd_240M $W $LONG
variant tag_wd_h20 $W --set world.heldout_entity_fraction=0.2
variant big_tag_wd $W --set world.n_people=8000
# the deeper model reads the same corpus: wait for the first run's, then copy it
( while ! ls $R/tag_wd_240M/corpus/*.json > /dev/null 2>&1; do sleep 2; done
  mkdir -p $R/tag_wd_m8_240M && cp -r $R/tag_wd_240M/corpus $R/tag_wd_m8_240M/ && stamp "corpus copied"
  variant tag_wd_m8_240M $W $LONG --set model.d_model=256 --set model.n_layers=8 --set model.d_mlp=1024
  wait ) &
wait
collect
