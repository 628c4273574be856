#!/usr/bin/env bash
# Issue 22, first GPU call: testbed v2 worlds (two-word names, half the entities held out,
# novel-entity claims, ghosts, disjoint frames), three pretraining sizes at once on one GPU, each
# then finetuned on plain / local / negated documents (seed 0) and checked; then finetuning
# variants from the first base model. Run from the repository root; OUT is where the tables go.
set -u
OUT=${OUT:-/tmp/i22}; mkdir -p "$OUT"; R=/tmp/i22runs; mkdir -p $R
export TQDM_DISABLE=1 PYTHONUNBUFFERED=1
V2="--set world.two_word_names=true --set world.heldout_entity_fraction=0.5 --set world.disjoint_frames=true
    --set world.n_claims=4 --set world.n_novel_claims=6 --set world.n_ghosts=600 --set world.n_people=1000
    --set world.n_cities=20 --set world.n_jobs=12 --set world.n_events=40 --set corpus.bio=4 --set corpus.unknown=1"
P="--set pretrain.batch_size=512 --set pretrain.seq_len=128 --set pretrain.lr=2e-3 --set pretrain.warmup=100"
M8="--set model.d_model=256 --set model.n_layers=8 --set model.n_heads=4 --set model.d_mlp=1024"
M6="--set model.d_model=192 --set model.n_layers=6 --set model.n_heads=4 --set model.d_mlp=768"
run() {  # name, timeout, args...
  local name=$1 t=$2; shift 2
  ( timeout $t python3 -m experiments run --preset standard --out $R/$name "$@" > $OUT/$name.log 2>&1;
    echo "$name run rc=$? $(date +%T)" >> $OUT/status.txt
    timeout 120 python3 -m experiments check-base $R/$name > /dev/null 2>> $OUT/$name.log ) &
}
date +%T > $OUT/status.txt
run m8_160M 380 $V2 $P $M8 --set pretrain.steps=2440
run m8_80M 380 $V2 $P $M8 --set pretrain.steps=1220
run m6_160M 380 $V2 $P $M6 --set pretrain.steps=2440
run m6_320M 380 $V2 $P $M6 --set pretrain.steps=4880
wait
python3 benchmarks/testbed_summary.py $R/m8_160M $R/m8_80M $R/m6_160M $R/m6_320M > $OUT/summary_a.jsonl
# Finetuning variants from the 160M bases: gentler and longer, and LoRA.
for b in m8_160M m6_160M; do
  [ -d $R/$b/base ] || continue
  M=$M8; [ $b = m6_160M ] && M=$M6
  run ft_${b}_lr3e-4_s200 140 $V2 $M --model $R/$b/base --set finetune.lr=3e-4 --set finetune.steps=200
  run ft_${b}_lora_s200 140 $V2 $M --model $R/$b/base --set finetune.lr=2e-3 --set finetune.steps=200 --set finetune.lora_rank=32
  run ft_${b}_bg50_s200 140 $V2 $M --model $R/$b/base --set finetune.lr=3e-4 --set finetune.steps=200 --set finetune.background_fraction=0.5
done
wait
python3 benchmarks/testbed_summary.py $R/ft_* > $OUT/summary_b.jsonl
for n in m8_160M m8_80M m6_160M m6_320M; do cp $R/$n/results/pretrain_log.csv $OUT/$n.pretrain_log.csv 2>/dev/null; done
tar czf $OUT/logs.tgz -C $OUT $(cd $OUT && ls *.log *.pretrain_log.csv 2>/dev/null)
cat $OUT/status.txt
