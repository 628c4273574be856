# Shared by the issue-22 sweep scripts (gpu_issue22_c.sh, gpu_issue22_d.sh): OUT, R and the
# optional PRESET / EXTRA / T (timeout per run) come from the caller's environment.
OUT=${OUT:-/tmp/i22}; mkdir -p "$OUT"; R=${R:-/tmp/i22_runs}; mkdir -p $R
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
stamp() { echo "$(date +%T) $*" >> $OUT/status.txt; }
variant() {  # name, overrides...: pretrain one testbed variant in the background, then check it
  local name=$1; shift
  ( timeout ${T:-540} python3 benchmarks/judge_generalisation.py --preset ${PRESET:-testbed} --out $R/$name \
      --check-base "$@" ${EXTRA:-} > $OUT/$name.json 2> $OUT/$name.err
    stamp "$name rc=$?" ) &
}
collect() {  # the runs' JSON lines into summary.jsonl, their logs and log tails into errs.tgz
  for d in $R/*; do tail -c 1500 $d/results/pretrain_log.csv > $OUT/$(basename $d).log_tail.csv 2>/dev/null; done
  cat $OUT/*.json > $OUT/summary.jsonl
  tar czf $OUT/errs.tgz -C $OUT $(cd $OUT && ls *.err *.log_tail.csv *.tracking.csv 2>/dev/null) && rm -f $OUT/*.err $OUT/*.log_tail.csv $OUT/*.tracking.csv
  cat $OUT/status.txt
}
