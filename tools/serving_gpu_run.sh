#!/usr/bin/env bash
# On a GPU host: the CUDA serving backend's test, its benchmark on OPT models and the Hugging
# Face peer, within about 5 minutes (each step has its own timeout).
#
#   tools/serving_gpu_run.sh BUNDLE_DIR RESULTS_DIR
#
# BUNDLE_DIR is what tools/gpu_bundle.sh made (bin/cuda_backend_test, bin/serving_gpu_bench,
# env.sh); RESULTS_DIR gets a log per step, the benchmark's JSON files and summary.txt, whose
# lines say how each step ended. opt-13b in fp16 (about 26 GB of weights) fits one 80 GB H100.
set -uo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 BUNDLE_DIR RESULTS_DIR" >&2
  exit 2
fi
bundle="$(cd "$1" && pwd)"
results="$2"
tools="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$results"
. "$bundle/env.sh"
summary="$results/summary.txt"
: > "$summary"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
  | sed 's/^/gpu: /' | tee -a "$summary"

failed=0
# step NAME SECONDS COMMAND...: runs COMMAND under `timeout`, its output into RESULTS/NAME.log.
step() {
  local name="$1" seconds="$2"
  shift 2
  local start=$SECONDS
  timeout "$seconds" "$@" 2>&1 | tee "$results/$name.log"
  local code=${PIPESTATUS[0]}
  local verdict=ok
  if [ "$code" -eq 124 ]; then verdict="timed out after ${seconds}s"; fi
  if [ "$code" -ne 0 ]; then failed=$((failed + 1)); [ "$code" -ne 124 ] && verdict="exit $code"; fi
  echo "$name: $verdict ($((SECONDS - start)) s)" | tee -a "$summary"
}

# The whole run fits about 5 minutes; BENCH_MODELS / HF_MODELS pick the sizes (each model's
# bench loads its random weights first: opt-13b takes the longest).
step cuda_backend_test "${TEST_SECONDS:-150}" "$bundle/bin/cuda_backend_test" \
  --gtest_output="xml:$results/cuda_backend_test.xml"
for model in ${BENCH_MODELS:-opt-1.3b opt-13b}; do
  step "bench_$model" "${BENCH_SECONDS:-75}" "$bundle/bin/serving_gpu_bench" --model="$model" \
    --json_out="$results/serving_$model.json"
done
for model in ${HF_MODELS:-opt-1.3b}; do
  step "hf_$model" "${HF_SECONDS:-45}" python3 "$tools/hf_generate_peer.py" --model="$model" \
    --out="$results/hf_$model.json"
done
echo "failed steps: $failed" | tee -a "$summary"
exit "$failed"
