#!/usr/bin/env bash
# Issue 22, sweep n (2026-12-04, ninth session). testbed_judge passes every precondition but fails
# the positive control: after plain finetuning its open answer takes a route that bypasses the
# attribute at the name, which its judgement reads. Its recipe has told documents (`corpus.told`),
# which teach the *answer* to follow a plain document in context and never the judgement. Two
# recipes on the 8-layer trace model, each screened at 80M tokens (the held-out people's city at
# the name >= 0.3), then, for each base that finishes, the positive and negative controls:
#   m8tr2_sN     traces, no told documents (the eighth session's lead);
#   m8tj_tr2_sN  traces, told documents and `corpus.told_judged` (a plain false statement in context,
#                then a yes/no question or verdict judged by it), so answer and judgement are taught
#                to read context alike;
#   m6tjf_sN     (next) 6 layers, told, told_judged and `corpus.flagged_judged`, no traces.
# Also the `testbed` preset's 3-seed finetuning at its new rate (lr 3e-4) on the GPU.
# Two workers, each pretraining its names in turn; nothing starts that cannot finish its screen
# before the deadline D (seconds); run again with the same R while the machine is warm and the
# stopped runs resume.
# On the device: OUT=$OUT D=540 NEGLECT="python3 -m experiments" bash THIS
# Next (tenth session): FT=0 RUNS_A="m6tj_tr2_s110 m6tjf_s110" RUNS_B="m6tj_tr2_s111 m6tjf_s111" OUT=$OUT D=540 ...
set -u
OUT=${OUT:-/tmp/i22n}; R=${R:-/tmp/i22n_runs}
source "$(dirname "$0")/judge_sweep_lib.sh"
START=$(date +%s); D=${D:-540}
SCREEN="--set pretrain.screen_step=1220 --set pretrain.screen_min=0.3"
overrides() {  # m{L}[tj[f]][_]tr{W}_sN or m{L}tj[f]_sN: L layers; tj: told + told_judged documents; f: and
  # flagged_judged; tr{W}: traces at weight W. 8-layer runs screened (the bar was read on 8-layer runs)
  local layers=${1#m}; layers=${layers%%[!0-9]*}
  echo --set model.n_layers=$layers --set pretrain.seed=${1##*_s}
  [ $layers = 8 ] && echo $SCREEN
  case $1 in *tr[0-9]*) local w=${1#*tr}; echo --set corpus.trace=${w%%_*};; esac
  case $1 in m?tj*) echo --set corpus.told=1 --set corpus.told_judged=1;; esac
  case $1 in m?tjf*) echo --set corpus.flagged_judged=1;; esac
}
stamp start
if [ -n "${VARIANT_OF:-}" ]; then  # the controls on VARIANT_OF's export with every MLP finetuned (FT_SET)
  ( timeout $(left) ${NEGLECT:-neglect} run --preset testbed --out $R/var --set base_model=$VARIANT_OF \
      --set 'conditions=["plain","local"]' --set 'seeds=[0,1,2]' --set finetune.n_checkpoints=2 --set jobs=3 \
      ${FT_SET:---set finetune.trainable=layers\..*mlp} > $R/var.log 2>&1; stamp "var rc=$?"
    tar czf $OUT/var.tgz -C $R var.log var/results 2>/dev/null ) &
elif [ "${FT:-1}" = 1 ] && [ ! -f $R/ft/results/controls.json ]; then  # FT=0: not this time
  ( timeout $(left) ${NEGLECT:-neglect} run --preset testbed --out $R/ft --set 'seeds=[0,1,2]' \
      --set finetune.n_checkpoints=2 --set jobs=3 > $R/ft.log 2>&1; stamp "ft rc=$?"
    tar czf $OUT/ft.tgz -C $R ft.log ft/results 2>/dev/null ) &
fi
worker ${RUNS_A:-m8tj_tr2_s110 m8tj_tr2_s111 m8tj_tr2_s112} &
worker ${RUNS_B:-m8tr2_s110 m8tr2_s111 m8tr2_s112} &
wait
cat $OUT/status.txt
preconditions ${RUNS_A:-m8tj_tr2_s110 m8tj_tr2_s111 m8tj_tr2_s112} ${RUNS_B:-m8tr2_s110 m8tr2_s111 m8tr2_s112}
