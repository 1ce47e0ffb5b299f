#!/usr/bin/env bash
# Builds every CUDA test and benchmark (targets tagged "cuda"), and the CPU benchmarks worth
# running on the GPU hosts too (tagged "gpu_bundle"), with --config=cuda, and packs them into a
# self-contained bundle for a GPU host that has no Bazel:
#
#   tools/gpu_bundle.sh [OUT_DIR [SCOPE]]   (default: .gpu_bundle, ignored by git; SCOPE is a
#                                           Bazel target pattern, default //...)
#
# OUT_DIR/bin     the binaries
# OUT_DIR/lib     every shared library they need that a GPU host may lack (CAF, Abseil, the
#                 project's own); glibc, libstdc++ and the CUDA/NCCL libraries are the host's
# OUT_DIR/run.sh  runs every test (*_test) and prints a pass/fail table; on the host:
#                 OUT_DIR/run.sh [RESULTS_DIR]
# OUT_DIR/env.sh  sets LD_LIBRARY_PATH for running the other binaries by hand:
#                 . OUT_DIR/env.sh; OUT_DIR/bin/actor_bench
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.gpu_bundle}"
scope="${2:-//...}"
jobs="${TROUPE_BAZEL_JOBS:-$(nproc)}"

mapfile -t targets < <(bazel query --noshow_progress \
  "attr(tags, '\\b(cuda|gpu_bundle)\\b', kind('cc_test|cc_binary', $scope))" 2>/dev/null)
if [ "${#targets[@]}" -eq 0 ]; then
  echo "gpu_bundle: no CUDA targets found" >&2
  exit 1
fi
echo "gpu_bundle: building ${#targets[@]} CUDA target(s) with --config=cuda"
bazel build --config=cuda --jobs="$jobs" "${targets[@]}"

rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
bin_dir="$(bazel info --config=cuda bazel-bin 2>/dev/null)"
binaries=()
for target in "${targets[@]}"; do
  path="${target#//}"
  path="${path/://}"
  cp "$bin_dir/$path" "$out/bin/"
  binaries+=("$bin_dir/$path")
done

# Libraries the host provides itself: glibc and the compiler runtime (the host's are newer),
# and the CUDA driver/toolkit libraries (from /usr/local/cuda/lib64 and the NCCL wheel).
host_provided='^(libc|libm|libdl|librt|libpthread|ld-linux-x86-64|libgcc_s|libstdc\+\+|libcuda|libcudart|libcublas|libcublasLt|libnccl)\.so'
for binary in "${binaries[@]}"; do  # In place: their RPATH finds the project's own libraries.
  ldd "$binary" | awk '/=> \// { print $1, $3 }' | while read -r name file; do
    if [[ ! "$name" =~ $host_provided ]]; then
      cp -L -n "$file" "$out/lib/" 2>/dev/null || true
    fi
  done
done

cat > "$out/env.sh" <<'ENV'
# Source this on the GPU host: the bundle's libraries, then the host's CUDA and NCCL.
bundle="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
nccl="/opt/torch/.venv/lib/python3.12/site-packages/nvidia/nccl/lib"
export LD_LIBRARY_PATH="$bundle/lib:/usr/local/cuda/lib64:$nccl${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ENV

cat > "$out/run.sh" <<'RUN'
#!/usr/bin/env bash
# Runs every test of this bundle and prints a pass/fail table. Logs go to RESULTS_DIR.
here="$(cd "$(dirname "$0")" && pwd)"
results="${1:-$here/results}"
mkdir -p "$results"
. "$here/env.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
  | sed 's/^/gpu: /'
printf '%-32s %-6s %s\n' BINARY RESULT DETAIL
failed=0
for binary in "$here"/bin/*_test; do
  name="$(basename "$binary")"
  timeout 600 "$binary" --gtest_output="xml:$results/$name.xml" > "$results/$name.log" 2>&1
  code=$?
  count() { grep -oP "^\[  $1 *\] \K[0-9]+(?= tests?)" "$results/$name.log" | head -1; }
  passed_n="$(count PASSED)"; failed_n="$(count FAILED)"; skipped_n="$(count SKIPPED)"
  detail="passed ${passed_n:-0}, failed ${failed_n:-0}, skipped ${skipped_n:-0}"
  if [ "$code" -ne 0 ]; then
    result=FAIL; failed=$((failed + 1)); detail="$detail (exit $code)"
  elif [ -n "$skipped_n" ]; then
    result=SKIP  # On a GPU host a skip means the GPU was not usable: look at the log.
  else
    result=PASS
  fi
  printf '%-32s %-6s %s\n' "$name" "$result" "$detail"
done
exit "$failed"
RUN
chmod +x "$out/run.sh"
echo "gpu_bundle: $(ls "$out/bin" | wc -l) binaries, $(ls "$out/lib" | wc -l) libraries," \
  "$(du -sh "$out" | cut -f1) in $out"
