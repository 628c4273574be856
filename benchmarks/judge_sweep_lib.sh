# Shared by the issue-22 sweep scripts (gpu_issue22_c.sh to gpu_issue22_i.sh): OUT, R and the
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
exported() {  # name, overrides...: `export_run` in the background
  export_run "$@" &
}
export_run() {  # name, overrides...: `neglect pretrain --preset testbed --export` (check-base on the GPU, into
  # the export's provenance.json), stopped after T seconds; the export, its log and tracking come back as
  # <name>.tgz.aa, .ab ... Run again with the same R, a stopped run resumes (a screened-out one stops at once).
  local name=$1; shift
  ( timeout ${T:-560} ${NEGLECT:-neglect} pretrain --preset testbed --out $R/$name --export $R/$name.export \
      --set 'pretrain.shipped="off"' "$@" ${EXTRA:-} > $R/$name.log 2>&1
    stamp "$name rc=$?"
    cp $R/$name/results/pretrain_tracking.csv $R/$name/results/pretrain_log.csv $R/$name.export/ 2>/dev/null
    # a run stopped by its timeout still sends back how far it got
    cp $R/$name/results/pretrain_tracking.csv $R/$name.tracking.csv 2>/dev/null
    cp $R/$name/results/pretrain_log.csv $R/$name.pretrain_log.csv 2>/dev/null
    # in parts of 15 MiB (a file over 16 MiB does not come back): cat NAME.tgz.* | tar xz
    tar czf - -C $R $(cd $R && ls -d $name.export $name.log $name.tracking.csv $name.pretrain_log.csv 2>/dev/null) \
      | split -b 15M - $OUT/$name.tgz. )
}
preconditions() {  # names...: each export's check-base figures, from its provenance.json
  for name in "$@"; do
    python3 -c "import json,sys; c=json.load(open(sys.argv[1]))['check_base']; print(sys.argv[2], {k: round(v, 3) for k, v in c.items() if isinstance(v, (int, float))})" \
      $R/$name.export/provenance.json $name 2>/dev/null || tail -5 $R/$name.log
  done
}
collect() {  # the runs' JSON lines into summary.jsonl, their logs and log tails into errs.tgz
  for d in $R/*; do tail -c 1500 $d/results/pretrain_log.csv > $OUT/$(basename $d).log_tail.csv 2>/dev/null; done
  cat $OUT/*.json > $OUT/summary.jsonl
  tar czf $OUT/errs.tgz -C $OUT $(cd $OUT && ls *.err *.log_tail.csv *.tracking.csv 2>/dev/null) && rm -f $OUT/*.err $OUT/*.log_tail.csv $OUT/*.tracking.csv
  cat $OUT/status.txt
}
sweep() {  # names...: each name's overrides from the caller's `overrides NAME`, pretrained side by side
  # (`exported`), then every run's status and check-base figures
  stamp start
  for name in "$@"; do exported $name $(overrides $name); done
  wait
  cat $OUT/status.txt
  preconditions "$@"
}
# left, controls and worker need the caller's START and D (deadline, seconds from START) and `overrides NAME`.
left() { echo $((START + D - $(date +%s))); }
controls() {  # name [tag overrides...]: plain and local finetuning (the testbed recipe, 3 seeds) on the name's
  # export into NAME.pc, or with a tag and finetuning overrides into NAME.TAG.pc
  local name=$1 pc=$1.pc; shift
  [ $# -gt 0 ] && { pc=$name.$1.pc; shift; }
  [ -f $R/$pc/results/controls.json ] && return
  timeout $(left) ${NEGLECT:-neglect} run --preset testbed --out $R/$pc --set base_model=$R/$name.export \
    --set 'finetune.trainable=layers\.[01]\..*mlp' --set 'conditions=["plain","local"]' --set 'seeds=[0,1,2]' \
    --set finetune.n_checkpoints=2 --set jobs=3 "$@" > $R/$pc.log 2>&1
  stamp "$pc rc=$?"
  tar czf $OUT/$pc.tgz -C $R $pc.log $pc/results 2>/dev/null
}
worker() {  # names...: each pretrained (screened) in turn, its controls run if it finishes; with FT="tag:key=value
  # ..." the controls run once per finetuning variant, side by side, instead of once with the preset's
  for name in "$@"; do
    [ $(left) -lt 100 ] && { stamp "$name not started"; continue; }
    T=$(left) export_run $name $(overrides $name)
    [ -f $R/$name.export/provenance.json ] && [ $(left) -gt 120 ] || continue
    if [ -z "${FT:-}" ]; then controls $name; else
      for v in $FT; do controls $name ${v%%:*} --set ${v#*:} & done; wait
    fi
  done
}
bundle() {  # names...: what comes back fits the device's 8 files: four exports at most (those whose positive
  # control passed first, then the others in order), the controls' results and the status in one results.tgz
  local name passed=() others=()
  for name in "$@"; do
    if python3 -c "import json,sys; sys.exit(not json.load(open(sys.argv[1]))['positive_control']['passed'])" \
        $R/$name.pc/results/controls.json 2>/dev/null; then passed+=($name); else others+=($name); fi
  done
  for name in $(echo ${passed[@]} ${others[@]} | cut -s -d' ' -f5-); do rm -f $OUT/$name.tgz.*; done
  preconditions "$@" > $OUT/preconditions.txt
  tar czf $OUT/results.tgz -C $OUT $(cd $OUT && ls status.txt preconditions.txt *.pc.tgz 2>/dev/null) && rm -f $OUT/*.pc.tgz
  ls -la $OUT
}
run_workers() {  # "a b,c": one worker per word (a,b: a then b), side by side; then the status, each run's
  # check-base figures and the bundle (needs START, D, `overrides NAME` and FT, as `worker` does)
  stamp start
  for names in $1; do worker ${names//,/ } & done
  wait
  cat $OUT/status.txt
  preconditions ${1//,/ }
  bundle ${1//,/ }
}
variant_controls() {  # "base:tag:key=value;key=value": the controls of one base under one finetuning variant
  # (JOBS worker processes, default 2)
  local base=${1%%:*} rest=${1#*:}; local tag=${rest%%:*} sets=() kv
  IFS=';' read -ra kvs <<< "${rest#*:}"
  for kv in "${kvs[@]}"; do sets+=(--set "$kv"); done
  controls $base $tag "${sets[@]}" --set jobs=${JOBS:-2}
}
variant_sweep() {  # the controls of every "base:tag:overrides" line of FT on the BASES ("tag=path ..."), P at
  # once; the status and every controls' results back in results.tgz (needs START and D)
  stamp start
  for b in $BASES; do ln -sfn "$PWD/${b#*=}" $R/${b%%=*}.export; done
  export -f variant_controls controls left stamp; export START D R OUT NEGLECT JOBS
  echo "$FT" | xargs -d '\n' -P $P -I{} bash -c 'variant_controls "$@"' _ {}
  cat $OUT/status.txt
  tar czf $OUT/results.tgz -C $OUT $(cd $OUT && ls status.txt *.pc.tgz 2>/dev/null) && rm -f $OUT/*.pc.tgz
  ls -la $OUT
}
