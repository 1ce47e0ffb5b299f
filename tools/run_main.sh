#!/usr/bin/env bash
# Quick start: installs what is missing, builds, and runs the main job.
#
# The main job is `troupe serve` with its embedded default: an OpenAI-compatible server on
# http://127.0.0.1:8000 over a prefill and a decode instance running the tiny model on the CPU.
# It prints the URL and an example curl, and stops cleanly on Ctrl-C. Extra arguments go to
# `troupe serve` (e.g. --port=9000, --colocated, --duration_s=10).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
bazel build --jobs="${TROUPE_BAZEL_JOBS:-$(nproc)}" //tools:troupe
exec bazel-bin/tools/troupe serve "$@"
