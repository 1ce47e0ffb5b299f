#!/usr/bin/env bash
# Everything the serving engine still has to show on a GPU host, in one call of about 8 minutes
# (for the device tool: `run` with carry [".gpu_bundle", "third_party/npm"]):
#   1. cuda_backend_test (34 tests passed on an H200; the CUDA-graph test is new),
#   2. serving_gpu_bench for opt-1.3b and opt-13b, eager and CUDA-graph decode steps,
#   3. tools/serving_cluster_run.sh cuda: prefill and decode processes of troupe_gpu (one or two
#      GPUs), greedy text against a colocated instance, the hand-off share.
# Results go to RESULTS_DIR (and, tarred, to $OUT/serving_gpu_all.tgz when $OUT is set).
#
#   tools/gpu_bundle.sh .gpu_bundle "//serving/engine:* + //tools:serving_gpu_bench + //tools:troupe_gpu"
#   tools/serving_gpu_all.sh .gpu_bundle RESULTS_DIR            (on the GPU host)
set -uo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 BUNDLE_DIR RESULTS_DIR" >&2
  exit 2
fi
bundle="$1"
results="$2"
tools="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$results"
BENCH_MODELS="${BENCH_MODELS:-opt-1.3b opt-13b}" HF_MODELS="${HF_MODELS:- }" \
  BENCH_SECONDS="${BENCH_SECONDS:-80}" TEST_SECONDS="${TEST_SECONDS:-150}" \
  timeout 330 bash "$tools/serving_gpu_run.sh" "$bundle" "$results/backend" \
  > "$results/backend.out" 2>&1
BUNDLE="$bundle" LOAD="${LOAD:-32}" timeout 150 bash "$tools/serving_cluster_run.sh" cuda \
  "$results/cluster" > "$results/cluster.out" 2>&1
{
  echo "== backend"
  cat "$results/backend/summary.txt" 2>/dev/null
  grep -h -A10 "batch    step" "$results"/backend/bench_*.log 2>/dev/null
  echo "== cluster"
  cat "$results/cluster/summary.txt" 2>/dev/null
} | tee "$results/summary.txt"
if [ -n "${OUT:-}" ]; then tar czf "$OUT/serving_gpu_all.tgz" -C "$results" .; fi
