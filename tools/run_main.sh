#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and runs the main job.
#
# Today the main job is the runtime demo (`troupe demo`): one node with two CPU workers fed by
# a load generator; it prints its actors and metrics and stops cleanly on Ctrl-C. Extra
# arguments go to `troupe demo` (e.g. --duration_s=10).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
bazel build --jobs="${TROUPE_BAZEL_JOBS:-$(nproc)}" //tools:troupe
exec bazel-bin/tools/troupe demo "$@"
