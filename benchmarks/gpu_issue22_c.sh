#!/usr/bin/env bash
# Issue 22, judgement that generalises: five testbed variants pretrained side by side on one GPU,
# each then checked (judged vs never-judged facts, names told in context, full check-base).
#   in-context judgements (corpus.context), statements tagged with their truth (corpus.tagged),
#   the ghosts' "unknown, so false" documents on or off, 1,000 vs 8,000 people.
# A smoke test on a CPU: PRESET=tiny EXTRA="--set pretrain.steps=20" R=/tmp/smoke bash THIS
set -u
OUT=${OUT:-/tmp/i22c}; mkdir -p "$OUT"; R=${R:-/tmp/i22c_runs}; mkdir -p $R
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
stamp() { echo "$(date +%T) $*" >> $OUT/status.txt; }
variant() {  # name, overrides...
  local name=$1; shift
  ( timeout ${T:-560} python3 benchmarks/judge_generalisation.py --preset ${PRESET:-testbed} --out $R/$name \
      --check-base "$@" ${EXTRA:-} > $OUT/$name.json 2> $OUT/$name.err
    stamp "$name rc=$?" ) &
}
stamp start
NOUNK="--set corpus.unknown=0"
variant ctx $NOUNK --set corpus.context=1
variant ctx_unk --set corpus.context=1
variant ctx_tag $NOUNK --set corpus.context=1 --set corpus.tagged=1
variant tag $NOUNK --set corpus.tagged=1
variant big_ctx_tag $NOUNK --set corpus.context=1 --set corpus.tagged=1 --set world.n_people=8000 --set world.n_ghosts=2000
wait
for d in $R/*; do tail -c 2000 $d/results/pretrain_log.csv > $OUT/$(basename $d).log_tail.csv 2>/dev/null; done
cat $OUT/*.json > $OUT/summary.jsonl; tar czf $OUT/errs.tgz -C $OUT $(cd $OUT && ls *.err *.log_tail.csv) && rm -f $OUT/*.err $OUT/*.log_tail.csv
cat $OUT/status.txt
