#!/usr/bin/env bash
# Issue 22: the testbed's controls over 3 finetuning seeds at the full evaluation size (every probe
# statement; the `demo` preset samples 40 subjects per split), on one H200, from the shipped base
# model. Results (tables, controls, check-base, the summary) come back as i22_results.tgz; if the
# call's time runs out first, whatever was finished does (the run resumes where it stopped).
set -u
OUT=${OUT:-/tmp/i22s}; R=${R:-/tmp/i22s_run}; mkdir -p $OUT
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
t0=$(date +%s)
timeout ${T:-540} python3 -m experiments run --preset testbed --out $R --set 'seeds=[0,1,2]' --set jobs=${JOBS:-4} \
  ${EXTRA:-} > $OUT/log.txt 2>&1
rc=$?
echo "run: $(( $(date +%s) - t0 )) s wall, rc $rc" | tee -a $OUT/log.txt >&2
tar czf $OUT/i22_results.tgz -C $R results config.json evals 2>/dev/null
tail -n 25 $OUT/log.txt >&2
