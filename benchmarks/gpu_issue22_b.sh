#!/usr/bin/env bash
# Issue 22, second GPU call (the first ran out of time generating four 8M-document corpora at
# once, before the corpus sampler's context pool was fixed): two testbed v2 pretraining sizes at
# once on one GPU, each finetuned on plain / local / negated (seed 0) and checked; then
# finetuning variants from the d192 x 6 base. Stage times go to status.txt as they happen.
set -u
# A smoke test on a CPU: PRESET=tiny EXTRA="--set pretrain.steps=20 ..." R=/tmp/smoke bash THIS
OUT=${OUT:-/tmp/i22}; mkdir -p "$OUT"; R=${R:-/tmp/i22runs}; mkdir -p $R
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=10
V2="--set world.two_word_names=true --set world.heldout_entity_fraction=0.5 --set world.disjoint_frames=true
    --set world.n_claims=4 --set world.n_novel_claims=6 --set world.n_ghosts=600 --set world.n_people=1000
    --set world.n_cities=20 --set world.n_jobs=12 --set world.n_events=40 --set corpus.bio=4 --set corpus.unknown=1"
P="--set pretrain.batch_size=512 --set pretrain.seq_len=128 --set pretrain.lr=2e-3 --set pretrain.warmup=100"
M8="--set model.d_model=256 --set model.n_layers=8 --set model.n_heads=4 --set model.d_mlp=1024"
M6="--set model.d_model=192 --set model.n_layers=6 --set model.n_heads=4 --set model.d_mlp=768"
stamp() { echo "$(date +%T) $*" >> $OUT/status.txt; }
watch_dirs() {  # record when each run's corpus, base model and metrics appear
  while true; do
    for d in $R/*; do for f in corpus base results/metrics.csv results/check_base.json; do
      [ -e $d/$f ] && [ ! -e $d/.seen_${f//\//_} ] && touch $d/.seen_${f//\//_} && stamp "$(basename $d) has $f"
    done; done; sleep 5
  done
}
run() {  # name, timeout, args...
  local name=$1 t=$2; shift 2
  ( timeout $t python3 -m experiments run --preset ${PRESET:-standard} --out $R/$name "$@" ${EXTRA:-} > $OUT/$name.log 2>&1
    stamp "$name run rc=$?"
    [ -n "${CHECK:-}" ] && timeout 60 python3 -m experiments check-base $R/$name > /dev/null 2>> $OUT/$name.log ) &
  PIDS="$PIDS $!"
}
stamp start; watch_dirs & WATCH=$!; PIDS=""
CHECK=1
run m6_160M 270 $V2 $P $M6 --set pretrain.steps=2440
run m8_160M 270 $V2 $P $M8 --set pretrain.steps=2440
wait $PIDS; PIDS=""
python3 benchmarks/testbed_summary.py $R/m6_160M $R/m8_160M > $OUT/summary_a.jsonl 2>> $OUT/summary_errors.txt
stamp "phase A summarised"
B=m6_160M; [ -d $R/$B/base ] || B=m8_160M; M=$M6; [ $B = m8_160M ] && M=$M8
if [ -d $R/$B/base ]; then
  CHECK=
  run ft_lr3e-4_s200 100 $V2 $M --model $R/$B/base --set finetune.lr=3e-4 --set finetune.steps=200
  run ft_bg50_s300 100 $V2 $M --model $R/$B/base --set finetune.lr=3e-4 --set finetune.steps=300 --set finetune.background_fraction=0.5
  run ft_lora_s200 100 $V2 $M --model $R/$B/base --set finetune.lr=2e-3 --set finetune.steps=200 --set finetune.lora_rank=32
  wait $PIDS
  python3 benchmarks/testbed_summary.py $R/ft_* > $OUT/summary_b.jsonl 2>> $OUT/summary_errors.txt
  stamp "phase B summarised (base $B)"
fi
kill $WATCH 2>/dev/null
for n in m6_160M m8_160M; do cp $R/$n/results/pretrain_log.csv $OUT/$n.pretrain_log.csv 2>/dev/null; done
mkdir -p $OUT/ship && cp -r $R/m6_160M/base $OUT/ship/ 2>/dev/null
tar czf $OUT/logs.tgz -C $OUT $(cd $OUT && ls *.log *.pretrain_log.csv 2>/dev/null)
tar czf $OUT/m6_base.tgz -C $R/m6_160M base config.json results 2>/dev/null; rm -rf $OUT/ship
ls -la $OUT; cat $OUT/status.txt
