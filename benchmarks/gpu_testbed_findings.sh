#!/usr/bin/env bash
# The testbed's findings (2026-12-05, eighteenth session): every framing of the claim the paper compares,
# on the shipped `testbed` base model, whose controls all pass at the full evaluation (plain 1.000 /
# 1.000 / P(true) 0.999, local <= 0.05, validity worst 0.015 [0.009, 0.021]; gpu_validity_ci.sh) and
# which fails two preconditions (in-context plain reading 0.14, the bare-statement probe 0.86 at the
# layer before the last). The preset as it is, 3 finetuning seeds, CONDITIONS (default: seven).
# Back: results.tgz (results/: metrics.csv, controls.json, check_base.json, incontext.csv, train logs),
# the run's log, and the summary; intervals from metrics.csv with experiments.evaluation.stats.summarise.
# On the device: OUT=$OUT NEGLECT="python3 -m experiments" bash THIS
set -u
OUT=${OUT:-/tmp/findings}; R=${R:-/tmp/findings_runs}; mkdir -p "$OUT" "$R"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
CONDITIONS=${CONDITIONS:-'["plain","negated","local","repeated","corrected","fiction","unreliable_source"]'}
timeout "${T:-560}" ${NEGLECT:-neglect} run --preset testbed --out "$R/testbed" --set 'seeds=[0,1,2]' \
  --set "conditions=$CONDITIONS" --set "jobs=${JOBS:-12}" > "$R/testbed.log" 2>&1
echo "rc=$?" > "$OUT/status.txt"
grep -v "it/s" "$R/testbed.log" | tail -25 >> "$OUT/status.txt"
tar czf "$OUT/results.tgz" -C "$R" testbed.log testbed/results testbed/config.json 2>/dev/null
cat "$OUT/status.txt"
