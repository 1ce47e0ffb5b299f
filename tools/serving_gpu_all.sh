#!/usr/bin/env bash
# What the serving engine shows on a GPU host, in one call of the device tool (each step has its
# own timeout; STAGES picks some of them):
#   tests    the GPU tests of the serving path: the KV copy kernel, the collective, the KV
#            transports (in-process and CUDA IPC to another process), tensor and pipeline
#            parallelism, the CUDA backend (CUDA graphs included);
#   bench    serving_gpu_bench for BENCH_MODELS (default opt-1.3b opt-13b): decode steps eager and
#            as CUDA-graph replays against the HBM floor, generation, prefill;
#   cluster  tools/serving_cluster_run.sh cuda for CLUSTER_MODEL (default opt-13b): prefill and
#            decode as processes (KV by CUDA IPC on one host) or in one process (SPLIT=process,
#            an in-process device copy), greedy text against a colocated instance, the hand-off
#            and KV-transfer shares of end-to-end latency.
# Results go to RESULTS_DIR (and, tarred, to $OUT/serving_gpu_all.tgz when $OUT is set).
#
#   tools/gpu_bundle.sh .gpu_bundle "//gpu/... + //serving/... + //tools:serving_gpu_bench + //tools:troupe_gpu"
#   tools/serving_gpu_all.sh .gpu_bundle RESULTS_DIR            (on the GPU host)
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
stages="${STAGES:-tests bench cluster}"

step() {  # step NAME SECONDS COMMAND...: COMMAND under `timeout`, its output in RESULTS/NAME.log
  local name="$1" seconds="$2"
  shift 2
  local start=$SECONDS
  timeout "$seconds" "$@" > "$results/$name.log" 2>&1
  local code=$?
  local verdict=ok
  if [ "$code" -eq 124 ]; then verdict="timed out after ${seconds}s";
  elif [ "$code" -ne 0 ]; then verdict="exit $code"; fi
  echo "$name: $verdict ($((SECONDS - start)) s)" | tee -a "$summary"
  grep -hE "^\[  (FAILED|PASSED|SKIPPED) |tests? ran|Skipped|skipped:" "$results/$name.log" \
    | head -20 | sed 's/^/    /' | tee -a "$summary"
}

if [[ " $stages " == *" tests "* ]]; then
  for t in paged_kv_test collective_test cuda_transports_test cuda_parallel_test; do
    step "$t" "${TEST_SECONDS:-120}" "$bundle/bin/$t" --gtest_output="xml:$results/$t.xml"
  done
  step cuda_backend_test "${BACKEND_TEST_SECONDS:-150}" "$bundle/bin/cuda_backend_test" \
    --gtest_output="xml:$results/cuda_backend_test.xml"
fi
if [[ " $stages " == *" bench "* ]]; then
  for model in ${BENCH_MODELS:-opt-1.3b opt-13b}; do
    step "bench_$model" "${BENCH_SECONDS:-90}" "$bundle/bin/serving_gpu_bench" --model="$model" \
      --json_out="$results/serving_$model.json"
    grep -A8 "step ms" "$results/bench_$model.log" | tee -a "$summary"
  done
fi
if [[ " $stages " == *" cluster "* ]]; then
  BUNDLE="$bundle" MODEL="${CLUSTER_MODEL:-opt-13b}" LOAD="${LOAD:-32}" \
    PREFILL_BLOCKS="${PREFILL_BLOCKS:-1024}" DECODE_BLOCKS="${DECODE_BLOCKS:-2048}" \
    step cluster "${CLUSTER_SECONDS:-300}" bash "$tools/serving_cluster_run.sh" cuda \
    "$results/cluster"
  cat "$results/cluster/summary.txt" 2>/dev/null | tee -a "$summary"
fi
if [ -n "${OUT:-}" ]; then tar czf "$OUT/serving_gpu_all.tgz" -C "$results" .; fi
