#!/usr/bin/env bash
# The placement simulator against the real engine (issue 5, docs/placement.md "Validation"):
# profile the backend, serve the model, sweep the request rate with `troupe bench` (SLOs
# attached), then replay the very requests of every run in `troupe simulate` with step times
# fitted to the profile, and compare the SLO attainments rate by rate.
#
#   tools/placement_validation.sh cpu RESULTS     troupe (LibTorch), the tiny model, here
#   tools/placement_validation.sh cuda RESULTS    on a GPU host: troupe_gpu from BUNDLE
#                                                 (default .gpu_bundle), MODEL (opt-13b), one GPU;
#                                                 the simulate step then runs here, on RESULTS
#   tools/placement_validation.sh simulate RESULTS   only that step (troupe simulate)
#
# Environment (defaults in brackets): MODE colocated|disaggregated|chunked [colocated];
# DATASET [chatbot]; MAX_TOTAL (tokens per request) [cpu 512, cuda 2048]; RATES [cpu 1,2,3,4,6;
# cuda 1,2,4,6,8]; NUM_REQUESTS per rate [cpu 60, cuda 200]; TTFT_MS/TPOT_MS, the SLO
# [cpu 100/15: fixed before the first run at about 10x and 3x an unloaded request's; cuda
# 250/100, DistServe's chatbot SLO for OPT-13B]; KV_BLOCKS per instance [cpu 1024, cuda 4096];
# SEED [0]; WARMUP_REQUESTS [40]; SLO_SCALES, also compared [0.1,0.12,0.15,0.2,0.3,0.5,1]. On the CPU, MODE=disaggregated serves both instances in one process on the same two
# cores, which the simulator (one device per instance) does not model.
set -uo pipefail
if [ $# -ne 2 ] || { [ "$1" != cpu ] && [ "$1" != cuda ] && [ "$1" != simulate ]; }; then
  echo "usage: $0 cpu|cuda|simulate RESULTS_DIR" >&2
  exit 2
fi
where="$1"
results="$2"
mkdir -p "$results"
mode="${MODE:-colocated}"
dataset="${DATASET:-chatbot}"
seed="${SEED:-0}"
if [ "$where" = cuda ]; then
  bundle="$(cd "${BUNDLE:-.gpu_bundle}" && pwd)"
  . "$bundle/env.sh"
  bin="$bundle/bin/troupe_gpu"
  model="${MODEL:-opt-13b}"
  max_total="${MAX_TOTAL:-2048}"
  rates="${RATES:-1,2,4,6,8}"
  num_requests="${NUM_REQUESTS:-200}"
  ttft_ms="${TTFT_MS:-250}"
  tpot_ms="${TPOT_MS:-100}"
  kv_blocks="${KV_BLOCKS:-4096}"
else
  bin="${TROUPE_BIN:-bazel-bin/tools/troupe}"
  model="${MODEL:-tiny}"
  max_total="${MAX_TOTAL:-512}"
  rates="${RATES:-1,2,3,4,6}"
  num_requests="${NUM_REQUESTS:-60}"
  ttft_ms="${TTFT_MS:-100}"
  tpot_ms="${TPOT_MS:-15}"
  kv_blocks="${KV_BLOCKS:-1024}"
fi
port="${PORT:-8231}"

simulate() {
  local troupe="${TROUPE_BIN:-bazel-bin/tools/troupe}"
  "$troupe" simulate --profile="$results/profile.json" --measured="$results/bench.json" \
    --mode="$mode" --prefill_kv_blocks="$kv_blocks" --decode_kv_blocks="$kv_blocks" \
    --slo_scales="${SLO_SCALES:-0.1,0.12,0.15,0.2,0.3,0.5,1}" \
    --json_out="$results/validation.json" | tee "$results/validation.txt"
}
if [ "$where" = simulate ]; then
  simulate
  exit $?
fi

echo "== profile: $model on $where" | tee "$results/summary.txt"
if [ "$where" = cuda ]; then
  "$bin" profile --model="$model" --kv_blocks=0 --profile_out="$results/profile.json" \
    --prefill_lengths=32,128,256,512,1024,1900 --decode_contexts=128,512,1024,1900 \
    > "$results/profile.log" 2>&1 || { echo "profile failed"; tail "$results/profile.log"; exit 1; }
else
  "$bin" profile --model="$model" --kv_blocks=4096 --profile_out="$results/profile.json" \
    --prefill_lengths=16,32,64,128,256,500 --max_prefill_tokens=2048 \
    --decode_contexts=32,128,256,500 --decode_batches=1,2,4,8,16,32,64 \
    > "$results/profile.log" 2>&1 || { echo "profile failed"; tail "$results/profile.log"; exit 1; }
fi
tail -1 "$results/profile.log" | tee -a "$results/summary.txt"

echo "== serve: $mode" | tee -a "$results/summary.txt"
if [ "$where" = cuda ]; then
  config="$results/serve.toml"
  {
    echo '[cluster]'
    echo 'name = "validation"'
    echo '[[node]]'
    echo 'name = "gpu"'
    echo 'host = "127.0.0.1"'
    echo 'port = 0'
    echo 'gpus = [0]'
    echo '[[actor]]'
    echo 'name = "server"'
    echo 'role = "server"'
    echo 'node = "gpu"'
    echo '[actor.params]'
    echo "model = \"$model\""
    if [ "$mode" = disaggregated ]; then
      echo 'prefill = "gpu/prefill0"'
      echo 'decode = "gpu/decode0"'
    else
      echo 'prefill = "gpu/engine0"'
    fi
    echo "port = $port"
    if [ "$mode" = disaggregated ]; then
      for role in prefill decode; do
        echo '[[actor]]'
        echo "name = \"${role}0\""
        echo "role = \"$role\""
        echo 'node = "gpu"'
        echo 'device = "cuda:0"'
        echo '[actor.params]'
        echo "model = \"$model\""
        echo "kv_blocks = $kv_blocks"
      done
    else
      echo '[[actor]]'
      echo 'name = "engine0"'
      echo 'role = "colocated"'
      echo 'node = "gpu"'
      echo 'device = "cuda:0"'
      echo '[actor.params]'
      echo "model = \"$model\""
      echo "kv_blocks = $kv_blocks"
      if [ "$mode" = chunked ]; then echo 'chunked_prefill = true'; fi
    fi
  } > "$config"
  "$bin" serve --config="$config" --node=gpu > "$results/serve.log" 2>&1 &
else
  extra=""
  if [ "$mode" != disaggregated ]; then extra="--colocated"; fi
  if [ "$mode" = chunked ]; then extra="$extra --chunked_prefill"; fi
  "$bin" serve --model="$model" --kv_blocks="$kv_blocks" --port="$port" $extra \
    > "$results/serve.log" 2>&1 &
fi
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT

echo "== bench: $dataset, rates $rates, $num_requests requests each, SLO ${ttft_ms}/${tpot_ms} ms" \
  | tee -a "$results/summary.txt"
# The first request waits for the server (model load); troupe bench checks it once, so wait here.
for _ in $(seq 1 600); do
  if "$bin" bench --base_url="http://127.0.0.1:$port" --dataset=code --max_total_tokens=64 \
       --num_requests=1 --rate=1 --seed="$seed" > /dev/null 2>&1; then break; fi
  sleep 1
done
# A discarded warm-up run at the highest rate: the engine's first steps of each batch size
# capture CUDA graphs, which the profile's steady state does not include.
top_rate="${rates##*,}"
"$bin" bench --base_url="http://127.0.0.1:$port" --dataset="$dataset" \
  --max_total_tokens="$max_total" --rate="$top_rate" --num_requests="${WARMUP_REQUESTS:-40}" \
  --seed=$((seed + 1)) > "$results/warmup.txt" 2>&1
"$bin" bench --base_url="http://127.0.0.1:$port" --dataset="$dataset" \
  --max_total_tokens="$max_total" --rates="$rates" --num_requests="$num_requests" \
  --seed="$seed" --goodput="ttft:$ttft_ms tpot:$tpot_ms" --json_out="$results/bench.json" \
  > "$results/bench.txt" 2>&1
tail -12 "$results/bench.txt" | tee -a "$results/summary.txt"
kill $server 2>/dev/null
wait $server 2>/dev/null
trap - EXIT

if [ "$where" = cpu ]; then simulate; fi
