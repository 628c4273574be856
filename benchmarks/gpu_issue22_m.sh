#!/usr/bin/env bash
# Issue 22, eighth session, one call on one H200, two jobs side by side:
# 1. the `testbed` preset's 3-seed finetuning on the shipped base model, re-read with the
#    preset's 256 control items (the seventh session's GPU figures were read with 64);
# 2. sweep l's seed-109 trace model (never-judged verdict still rising at 400M tokens: 0.59, 0.73,
#    0.75 over the last three tracking points) continued for 300M more tokens at half the rate
#    (`pretrain.init_from`), to see whether its judgement keeps generalising.
# On the device: CAND=.cand/m8told_tr2_s109.export NEGLECT="python3 -m experiments" bash THIS
set -u
OUT=${OUT:-/tmp/i22m}; R=${R:-/tmp/i22m_runs}
source "$(dirname "$0")/judge_sweep_lib.sh"
stamp start
( timeout ${T:-520} ${NEGLECT:-neglect} run --preset testbed --out $R/ft --set 'seeds=[0,1,2]' \
    --set finetune.n_checkpoints=2 --set jobs=4 > $R/ft.log 2>&1; stamp "ft rc=$?"
  tar czf $OUT/ft.tgz -C $R ft.log ft/results ft/report.html 2>/dev/null ) &
exported m8told_tr2_s109_cont --set model.n_layers=8 --set corpus.told=1 --set corpus.trace=2 --set pretrain.seed=109 \
  --set pretrain.init_from=$PWD/${CAND:-.cand/m8told_tr2_s109.export} --set pretrain.steps=4575 --set pretrain.lr=1e-3
wait
cat $OUT/status.txt
preconditions m8told_tr2_s109_cont
