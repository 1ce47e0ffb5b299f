#!/usr/bin/env bash
# Quick start: installs what is missing and runs the whole test suite.
#
# 1. compiles every CUDA target with --config=cuda (compile only: CI has no GPU);
# 2. builds and runs every test (`bazel test //...`);
# 3. prints one line per failure and, last, "N passed, N failed" (test cases, plus the CUDA
#    compile as one check). Exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh || exit 1
jobs="${TROUPE_BAZEL_JOBS:-$(nproc)}"
started=$(date +%s)

cuda_status=skipped
if [ -x /usr/local/cuda/bin/nvcc ]; then
  mapfile -t cuda_targets < <(bazel query --noshow_progress 'attr(tags, "\bcuda\b", //...)' 2>/dev/null)
  echo "run_tests: compiling ${#cuda_targets[@]} CUDA target(s) with --config=cuda"
  if bazel build --config=cuda --jobs="$jobs" --keep_going "${cuda_targets[@]}"; then
    cuda_status=passed
  else
    cuda_status=failed
  fi
else
  echo "run_tests: no CUDA toolkit at /usr/local/cuda: CUDA targets not compiled"
fi

echo "run_tests: building and running every test"
bazel test --jobs="$jobs" --keep_going //...
testlogs="$(bazel info bazel-testlogs 2>/dev/null)"
mapfile -t tests < <(bazel query --noshow_progress 'tests(//...) except attr(tags, "manual", //...)' 2>/dev/null)

python3 tools/test_summary.py --testlogs="$testlogs" --cuda="$cuda_status" \
  --seconds="$(( $(date +%s) - started ))" "${tests[@]}"
