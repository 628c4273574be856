#!/usr/bin/env bash
# Issue 22, sweep j (2026-12-04, sixth session): sweeps h and i found that the `testbed`
# recipe's judgement of never-judged facts generalises in 3 of 9 pretraining runs; in the others
# the judged facts' verdicts (500 people x 2 facts: about 1,000 verdict entries) were memorised
# fact by fact. The issue's second lead: a much larger world, so that a verdict table costs more
# (and each entry is seen less often) while the general circuit (retrieve, then compare) costs
# the same. The `testbed` recipe at 4,000 people (2,000 judged, 2,000 only described) with the
# three pretraining seeds on which the recipe memorised, and at 2,000 people with one of them,
# side by side on one H200, each exported with its check-base.
# On the device: NEGLECT="python3 -m experiments" bash THIS
# A smoke test on a CPU: RUNS="p4000_s101" EXTRA="--set pretrain.steps=2 --set pretrain.batch_size=4 --set pretrain.track_every=0" bash THIS
set -u
OUT=${OUT:-/tmp/i22j}; R=${R:-/tmp/i22j_runs}
source "$(dirname "$0")/judge_sweep_lib.sh"
overrides() {  # pN_sM: N people, pretraining seed M
  local people=${1%%_*}
  echo --set world.n_people=${people#p} --set pretrain.seed=${1##*_s}
}
sweep ${RUNS:-p4000_s101 p4000_s102 p4000_s103 p2000_s101}
