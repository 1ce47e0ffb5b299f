#!/usr/bin/env bash
# What the serving engine shows on a GPU host, in one call of the device tool. STEPS lists the
# steps in order (each has its own timeout; the default runs them all, most telling first):
#   transports, backend, parallel, paged_kv, collective
#            the GPU tests of the serving path: the KV transports (in-process and CUDA IPC to
#            another process), the CUDA backend (CUDA graphs included), tensor and pipeline
#            parallelism (device copies between layouts included), the KV copy kernel, the
#            collective;
#   skinny   the skinny GEMM of the decode steps' projections (gpu/kernels/skinny_gemm_test);
#   profile:MODEL
#            `troupe_gpu profile` of MODEL (random weights) into RESULTS/profile_MODEL.json: the
#            step times `troupe plan --profile` fits its latency model to;
#   backend:FILTER, parallel:FILTER
#            those tests with a --gtest_filter;
#   hf:MODEL Hugging Face transformers' generate on the same card (tools/hf_generate_peer.py);
#   bench:MODEL
#            serving_gpu_bench: decode steps eager and as CUDA-graph replays against the HBM
#            floor, generation, prefill;
#   cluster  tools/serving_cluster_run.sh cuda for CLUSTER_MODEL (default opt-13b): prefill and
#            decode as processes (KV by CUDA IPC on one host) or in one process (SPLIT=process,
#            an in-process device copy), greedy text against a colocated instance, the hand-off
#            and KV-transfer shares of end-to-end latency.
# Results go to RESULTS_DIR, and after every step, tarred, to $OUT/serving_gpu_all.tgz when $OUT
# is set (so a call cut short still brings back what ran).
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
steps="${STEPS:-transports bench:opt-13b cluster backend bench:opt-1.3b parallel paged_kv collective}"

pack() {  # what has run so far, for the device tool (whose $OUT takes a few files only)
  if [ -n "${OUT:-}" ]; then tar czf "$OUT/serving_gpu_all.tgz" -C "$results" . 2>/dev/null; fi
}

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
  grep -hE "^\[  (FAILED|PASSED|SKIPPED) |tests? ran|skipped:" "$results/$name.log" \
    | head -20 | sed 's/^/    /' | tee -a "$summary"
  pack
}

test_step() {  # test_step BINARY SECONDS [FILTER]
  local name="$1"
  if [ -n "${3:-}" ]; then name="$1.filtered"; fi
  step "$name" "$2" "$bundle/bin/$1" --gtest_output="xml:$results/$name.xml" \
    ${3:+--gtest_filter="$3"}
}

for s in $steps; do
  case "$s" in
    transports) test_step cuda_transports_test "${TEST_SECONDS:-90}" ;;
    backend) test_step cuda_backend_test "${BACKEND_TEST_SECONDS:-150}" ;;
    parallel) test_step cuda_parallel_test "${TEST_SECONDS:-120}" ;;
    paged_kv) test_step paged_kv_test "${TEST_SECONDS:-60}" ;;
    collective) test_step collective_test "${TEST_SECONDS:-60}" ;;
    skinny) test_step skinny_gemm_test "${TEST_SECONDS:-60}" ;;
    profile:*)
      m="${s#profile:}"
      step "profile_$m" "${PROFILE_SECONDS:-240}" "$bundle/bin/troupe_gpu" profile --model="$m" \
        --profile_out="$results/profile_$m.json"
      ;;
    backend:*) test_step cuda_backend_test "${BACKEND_TEST_SECONDS:-150}" "${s#backend:}" ;;
    parallel:*) test_step cuda_parallel_test "${TEST_SECONDS:-120}" "${s#parallel:}" ;;
    hf:*)
      model="${s#hf:}"
      step "hf_$model" "${HF_SECONDS:-60}" python3 "$tools/hf_generate_peer.py" --model="$model" \
        --out="$results/hf_$model.json"
      ;;
    bench:*)
      model="${s#bench:}"
      step "bench_$model" "${BENCH_SECONDS:-90}" "$bundle/bin/serving_gpu_bench" --model="$model" \
        --json_out="$results/serving_$model.json"
      grep -A8 "step ms" "$results/bench_$model.log" | tee -a "$summary"
      ;;
    cluster)
      BUNDLE="$bundle" MODEL="${CLUSTER_MODEL:-opt-13b}" LOAD="${LOAD:-32}" \
        PREFILL_BLOCKS="${PREFILL_BLOCKS:-1024}" DECODE_BLOCKS="${DECODE_BLOCKS:-2048}" \
        step cluster "${CLUSTER_SECONDS:-300}" bash "$tools/serving_cluster_run.sh" cuda \
        "$results/cluster"
      cat "$results/cluster/summary.txt" 2>/dev/null | tee -a "$summary"
      pack
      ;;
    *) echo "unknown step $s" | tee -a "$summary" ;;
  esac
done
