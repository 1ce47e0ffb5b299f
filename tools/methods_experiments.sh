#!/usr/bin/env bash
# Issue 6's experiments with `troupe train`: SLA's six arms on a 5000-image subset and on the
# full training set, and DHKD's arms against a teacher, over SEEDS, on Fashion-MNIST
# (shared/papers/sla.md and dhkd.md, section "Small-scale experiment"; docs/results/methods.md
# says how this scale differs from the notes'). Then tools/methods_results.py writes the tables
# and plots.
#
#   tools/methods_experiments.sh [RESULTS_DIR]      (default docs/results/methods_runs)
#
# Scale, from the environment (defaults: docs/results/methods.md's runs, which took about 1.5
# hours on the 2-core development machine as two copies with THREADS=1): SEEDS ("1 2 3"),
# SLA_SUBSET (5000), SLA_SUBSET_EPOCHS (10), SLA_FULL_EPOCHS (1), DHKD_IMAGES (10000),
# DHKD_EPOCHS (5), TEACHER_WIDTH (32), TEACHER_EPOCHS (3), THREADS (2), TROUPE
# (bazel-bin/tools/troupe), PARTS ("sla_subset dhkd dhkd_mechanism sla_full").
#
# A finished run leaves RUN/done and is skipped, so the script continues where it stopped; an
# interrupted run resumes from its checkpoint. Several copies of the script share the runs (each
# takes RUN.lock before a run): on 2 cores, two copies with THREADS=1 do more work than one with
# THREADS=2. A copy killed with SIGKILL leaves its lock: remove RUN.lock by hand before running
# again.
set -euo pipefail
out="${1:-docs/results/methods_runs}"
seeds="${SEEDS:-1 2 3}"
sla_subset="${SLA_SUBSET:-5000}"
sla_subset_epochs="${SLA_SUBSET_EPOCHS:-10}"
sla_full_epochs="${SLA_FULL_EPOCHS:-1}"
dhkd_images="${DHKD_IMAGES:-10000}"
dhkd_epochs="${DHKD_EPOCHS:-5}"
teacher_width="${TEACHER_WIDTH:-32}"
teacher_epochs="${TEACHER_EPOCHS:-3}"
threads="${THREADS:-2}"
parts=" ${PARTS:-sla_subset dhkd dhkd_mechanism sla_full} "
troupe="${TROUPE:-bazel-bin/tools/troupe}"
if [ -z "${TROUPE:-}" ]; then bazel build --jobs=2 //tools:troupe >/dev/null; fi
mkdir -p "$out"

# run DIR ARGS...: one `troupe train` run into DIR (logs, checkpoint, output), unless done.
run() {
  local dir="$1"
  shift
  if [ -f "$dir/done" ]; then return; fi
  mkdir -p "$(dirname "$dir")"
  if ! mkdir "$dir.lock" 2>/dev/null; then return; fi  # another copy is running it
  lock="$dir.lock"
  mkdir -p "$dir"
  echo "$(date +%H:%M:%S) $dir: troupe train $*"
  local resume=false
  if [ -f "$dir/checkpoint.pt" ]; then resume=true; fi
  "$troupe" train "$@" --torch_threads="$threads" --logs="$dir" --checkpoint="$dir/checkpoint.pt" \
    --resume="$resume" >"$dir/output.txt" 2>"$dir/progress.txt"
  rm -f "$dir/checkpoint.pt"
  tail -1 "$dir/output.txt"
  touch "$dir/done"
  rmdir "$lock"
  lock=""
}
lock=""
trap '[ -n "$lock" ] && rmdir "$lock"' EXIT

sla_arms="baseline da mt sla sla_sd"   # sla is scored SI and AG, sla_sd SI, AG and SD
half=$((sla_subset_epochs / 2))
three_quarters=$((sla_subset_epochs * 3 / 4))
[[ "$parts" == *" sla_subset "* ]] && for seed in $seeds; do
  for arm in $sla_arms; do
    run "$out/sla_subset/$arm/seed$seed" sla --arm="$arm" --seed="$seed" \
      --train_images="$sla_subset" --epochs="$sla_subset_epochs" --schedule=step \
      --milestones="$half,$three_quarters" --evaluate_every="$half"
  done
done

if [[ "$parts" == *" dhkd "* ]]; then
run "$out/dhkd/teacher" supervised --width="$teacher_width" --epochs="$teacher_epochs" --seed=100 \
  --save_model="$out/dhkd/teacher/model.pt"
# name:flags for each DHKD arm; the teacher's logits are computed once (no augmentation).
dhkd_arms=(
  "ce:--arm=ce"
  "kd:--arm=kd"
  "bkl:--arm=bkl"
  "ce_bkl:--arm=ce_bkl"
  "dhkd_linear_ga:--arm=dhkd --aux_hidden=0 --align=true"
  "dhkd_linear:--arm=dhkd --aux_hidden=0 --align=false"
  "dhkd_nonlinear_ga:--arm=dhkd --aux_hidden=200 --align=true"
  "dhkd_nonlinear:--arm=dhkd --aux_hidden=200 --align=false"
  "dhkd_bkl_linear_ga:--arm=dhkd --distill=bkl --aux_hidden=0 --align=true"
)
for seed in $seeds; do
  for entry in "${dhkd_arms[@]}"; do
    name="${entry%%:*}"
    # shellcheck disable=SC2086  # the flags split on purpose
    run "$out/dhkd/$name/seed$seed" dhkd ${entry#*:} --seed="$seed" \
      --teacher="$out/dhkd/teacher/model.pt" --teacher_width="$teacher_width" \
      --train_images="$dhkd_images" --epochs="$dhkd_epochs" --augment=false \
      --evaluate_every="$dhkd_epochs"
  done
done
fi

# The mechanism test, logged every 10 steps (the runs above log every 100): the one-head failure
# case, and the best DHKD arm for its backbone.
if [[ "$parts" == *" dhkd_mechanism "* ]]; then
for seed in $seeds; do
  for entry in "ce_bkl:--arm=ce_bkl" "dhkd_nonlinear_ga:--arm=dhkd --aux_hidden=200 --align=true"; do
    name="${entry%%:*}"
    # shellcheck disable=SC2086  # the flags split on purpose
    run "$out/dhkd_mechanism/$name/seed$seed" dhkd ${entry#*:} --seed="$seed" \
      --teacher="$out/dhkd/teacher/model.pt" --teacher_width="$teacher_width" \
      --train_images="$dhkd_images" --epochs="$dhkd_epochs" --augment=false \
      --evaluate_every="$dhkd_epochs" --cosine_every=10
  done
done
fi

[[ "$parts" == *" sla_full "* ]] && for seed in $seeds; do
  for arm in $sla_arms; do
    run "$out/sla_full/$arm/seed$seed" sla --arm="$arm" --seed="$seed" \
      --epochs="$sla_full_epochs" --schedule=cosine
  done
done
echo "$(date +%H:%M:%S) all runs done in $out"
