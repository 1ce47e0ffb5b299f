#!/usr/bin/env bash
# Training throughput of the C++ trainer (methods/train, run by `troupe train supervised`)
# against the same model, batch and optimizer in Python PyTorch (tools/train_peer.py, Debian's
# python3-torch: the same LibTorch 1.13), on this machine, in one run (issue 6's benchmark; docs/results/methods.md).
#
#   tools/train_throughput.sh [RESULTS_DIR]     (default docs/results/methods_throughput)
#
# Each side trains small_cnn (width 16) on IMAGES Fashion-MNIST images (10000) for EPOCHS epochs
# (3) with batch 128, SGD with momentum, no augmentation, THREADS LibTorch threads (2); the two
# alternate ROUNDS times (2), and every epoch but each run's first (warm-up) counts. Needs
# tools/setup.sh and `apt-get install python3-torch`.
#
# The C++ trainer's batches are channels-last (BatchOptions.memory_format). The plain peer is
# the benchmark; a third contender, the peer with --channels_last, runs in the same rounds as a
# supplementary row, to show how much of the C++ lead is that layout.
set -euo pipefail
out="${1:-docs/results/methods_throughput}"
images="${IMAGES:-10000}"
epochs="${EPOCHS:-3}"
threads="${THREADS:-2}"
rounds="${ROUNDS:-2}"
mkdir -p "$out"
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "python3-torch is missing: apt-get install python3-torch" >&2
  exit 1
fi
bazel build --jobs=2 //tools:troupe >/dev/null
for round in $(seq 1 "$rounds"); do
  bazel-bin/tools/troupe train supervised --architecture=small_cnn --train_images="$images" \
    --test_images=1000 --epochs="$epochs" --batch_size=128 --augment=false --schedule=constant \
    --torch_threads="$threads" --logs="$out/cpp_$round" >"$out/cpp_$round.txt" 2>&1
  /usr/bin/python3 tools/train_peer.py --images="$images" --epochs="$epochs" --batch_size=128 \
    --threads="$threads" --json_out="$out/python_$round.json" >"$out/python_$round.txt" 2>&1
  /usr/bin/python3 tools/train_peer.py --images="$images" --epochs="$epochs" --batch_size=128 \
    --threads="$threads" --channels_last --json_out="$out/python_channels_last_$round.json" \
    >"$out/python_channels_last_$round.txt" 2>&1
done
/usr/bin/python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
cpp, py, py_cl = [], [], []
for r in range(1, rounds + 1):
    log = json.load(open(f"{out}/cpp_{r}/train_log.json"))
    epochs = log["epochs"] if isinstance(log, dict) and "epochs" in log else log
    cpp += [e["images_per_second"] for e in epochs][1:]
    py += json.load(open(f"{out}/python_{r}.json"))["images_per_second"][1:]
    py_cl += json.load(open(f"{out}/python_channels_last_{r}.json"))["images_per_second"][1:]
c, p, pc = statistics.median(cpp), statistics.median(py), statistics.median(py_cl)
summary = {"cpp_images_per_second": cpp, "python_images_per_second": py,
           "python_channels_last_images_per_second": py_cl,
           "cpp_median": c, "python_median": p, "python_channels_last_median": pc,
           "ratio": c / p, "ratio_to_python_channels_last": c / pc}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
print(f"C++ trainer: median {c:.0f} img/s over {len(cpp)} epochs {[round(v) for v in cpp]}")
print(f"PyTorch:     median {p:.0f} img/s over {len(py)} epochs {[round(v) for v in py]}")
print(f"PyTorch, channels-last (supplementary): median {pc:.0f} img/s {[round(v) for v in py_cl]}")
print(f"ratio C++ / Python: {c / p:.2f}x (target >= 1.2x); "
      f"C++ / channels-last Python: {c / pc:.2f}x")
PY
