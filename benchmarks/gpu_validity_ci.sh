#!/usr/bin/env bash
# Probe validity with its interval (2026-12-05, eighteenth session). Every checkpoint now keeps which
# control statement the fixed probe read right and which control question it answered right
# (RUN/evals/items/), and results/controls.json gives each validity drop a paired bootstrap interval
# over held-out subjects (probe statements) and control questions (verdicts; yes/no: a fact's pair).
# Here the testbed preset's controls at its full evaluation, 3 seeds, side by side:
#   testbed   the shipped model, plain / negated / local (the preset as it is)
#   NAME      each NAME=PATH of $BASES: that base model, plain / local, the preset's finetuning
# Back: NAME.controls.json, the status and results.tgz (every run's results/ and evals/items/).
# On the device: OUT=$OUT NEGLECT="python3 -m experiments" BASES="c=.cand/c_ntt_t05tt.export" bash THIS
set -u
OUT=${OUT:-/tmp/vci}; R=${R:-/tmp/vci_runs}; mkdir -p "$OUT" "$R"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
N=${NEGLECT:-neglect}; T=${T:-540}
one() {  # name, run options...
  local name=$1; shift
  ( timeout "$T" $N run --preset testbed --out "$R/$name" --set 'seeds=[0,1,2]' "$@" > "$R/$name.log" 2>&1
    rc=$?; echo "$(date +%T) $name rc=$rc" >> "$OUT/status.txt" ) &
}
one testbed --set jobs=6
for b in ${BASES:-}; do
  one "${b%%=*}" --set "base_model=${b#*=}" --set 'finetune.trainable=layers\.[01]\..*mlp' \
      --set 'conditions=["plain","local"]' --set jobs=3
done
wait
for d in "$R"/*/; do
  n=$(basename "$d"); cp "$d/results/controls.json" "$OUT/$n.controls.json" 2>/dev/null
  { echo "== $n"; grep -E "control|validity" "$R/$n.log" | tail -4; } >> "$OUT/status.txt"
done
tar czf "$OUT/results.tgz" -C "$R" $(cd "$R" && ls -d */results */evals/items *.log 2>/dev/null)
cat "$OUT/status.txt"
