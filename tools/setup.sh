#!/usr/bin/env bash
# Installs what Troupe needs from Debian 12's packages, and only what is missing.
#
#   tools/setup.sh          # idempotent; says what it installs; fails clearly if it cannot
#
# Everything comes from Debian's own repositories. The CUDA 13 toolkit is not a Debian package:
# it is expected at /usr/local/cuda, and without it the CUDA targets are not compiled.
set -euo pipefail

packages=(
  bazel-bootstrap          # Bazel 4.2.3 (offline recipe: WORKSPACE, third_party/)
  g++ python3              # toolchain; python3 summarizes test results
  libcaf-dev               # C++ Actor Framework 0.17.6
  libtorch-dev             # LibTorch 1.13.1, CPU
  libabsl-dev              # Abseil 20220623
  libgtest-dev libgmock-dev libbenchmark-dev
  libcpp-httplib-dev libssl-dev
  nlohmann-json3-dev libtomlplusplus-dev libspdlog-dev libfmt-dev
  iproute2                 # network namespaces for the multi-host test
  python3-matplotlib       # plots of benchmark results
)
names=("${packages[@]}")

missing=()
for package in "${names[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup: all ${#names[@]} Debian packages are installed"
else
  echo "setup: installing ${#missing[@]} missing Debian package(s): ${missing[*]}"
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null; then
      echo "setup: error: not root and no sudo; as root run: apt-get install ${missing[*]}" >&2
      exit 1
    fi
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
    for package in "${missing[@]}"; do
      if ! apt-cache policy "$package" 2>/dev/null | grep -q 'Candidate: [^(]'; then
        echo "setup: error: package $package is not available from the configured apt sources;" \
          "it is in Debian 12 (bookworm) main: check /etc/apt/sources.list" >&2
      fi
    done
    echo "setup: error: apt-get could not install: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installed ${missing[*]}"
fi

if [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup: CUDA toolkit: $(/usr/local/cuda/bin/nvcc --version | grep -o 'release [0-9.]*')"
else
  echo "setup: note: no CUDA toolkit at /usr/local/cuda; CUDA targets will not be compiled"
fi
