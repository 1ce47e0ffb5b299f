#!/usr/bin/env bash
# Regenerates docs/results/placement/: the planner's runs quoted in docs/results/placement.md
# (DistServe's testbed by the A100 roofline, Algorithms 2 and 1, the sensitivity runs, a plan
# from the measured H200 profile) and the search benchmark. Run from the workspace root:
#
#   tools/placement_results.sh
set -euo pipefail

bazel build -c opt --jobs=2 //tools:troupe //serving/placement:search_benchmark
out=docs/results/placement
mkdir -p "$out"
troupe=bazel-bin/tools/troupe

# run NAME FLAGS...: one `troupe plan`, its output and wall time in NAME.txt, its JSON in NAME.json.
run() {
  local name=$1
  shift
  echo "== $name"
  {
    echo "\$ troupe plan $*"
    /usr/bin/time -f "wall %e s, user %U s, sys %S s" "$troupe" plan "$@" \
      --json_out="$out/$name.json" 2>&1
  } >"$out/$name.txt" 2>&1 || true
  grep -E "^  1\. |goodput per GPU|colocated baseline|^wall" "$out/$name.txt" || true
}

# DistServe's testbed: 4 nodes x 8 A100-80GB, 25 Gbps between nodes, Algorithm 2 (the paper's
# choice for it), chatbot SLOs of the OSDI table.
for model in opt-13b opt-66b opt-175b; do
  run "${model}_chatbot" --model="$model" --dataset=chatbot
done
# Algorithm 1 on the same nodes as if their links were fast (200 Gbps).
for model in opt-13b opt-66b opt-175b; do
  run "${model}_chatbot_high" --model="$model" --dataset=chatbot --affinity=high \
    --cross_node_gbps=200
done
# Sensitivity: the paper's L_m prefill budget for OPT-13B, and the SLOs halved.
run opt-13b_chatbot_lm512 --model=opt-13b --dataset=chatbot --prefill_batch_tokens=512
run opt-13b_chatbot_slo_half --model=opt-13b --dataset=chatbot --ttft_s=0.125 --tpot_s=0.05
# OPT-66B's other workloads (the paper's Appendix B: the same TP4 / TP2·PP2 for all three).
run opt-66b_code --model=opt-66b --dataset=code
run opt-66b_summarization --model=opt-66b --dataset=summarization
# A plan from the OPT-13B profile measured on an H200 (TP1 only; other degrees scaled), beside
# the H200 roofline, on one node of 8.
run opt-13b_chatbot_h200_profile --model=opt-13b --dataset=chatbot --gpu=h200 --nodes=1 \
  --profile=docs/results/profile_opt-13b_h200.json
run opt-13b_chatbot_h200_roofline --model=opt-13b --dataset=chatbot --gpu=h200 --nodes=1
# A plan that starts as is: instances within a node, for 20 requests/s.
"$troupe" plan --model=opt-13b --dataset=chatbot --rate=20 --nodes_per_instance=1 \
  --compare_colocated=false --out="$out/opt-13b_chatbot_rate20.toml" >/dev/null
"$troupe" check --config="$out/opt-13b_chatbot_rate20.toml"

bazel-bin/serving/placement/search_benchmark 2>&1 | sed -n '/^Run on/,$p' \
  | tee "$out/search_benchmark.txt"

# The simulated prediction of issue 5's GPU evaluation (docs/results/distserve_eval.md): OPT-13B
# on one node of 2 and of 4 H200s, step times from the measured profile, disaggregated against
# colocated and chunked prefill; summarization with DistServe's summarization SLO (OPT-66B's).
eval_out=docs/results/distserve_eval
mkdir -p "$eval_out"
for gpus in 2 4; do
  for chunked in false true; do
    for dataset in chatbot summarization; do
      slo=""
      if [ "$dataset" = summarization ]; then slo="--ttft_s=15 --tpot_s=0.15"; fi
      name="opt-13b_${dataset}_h200x${gpus}_chunked-${chunked}"
      # shellcheck disable=SC2086
      "$troupe" plan --model=opt-13b --dataset="$dataset" $slo --gpu=h200 --nodes=1 \
        --gpus_per_node="$gpus" --profile=docs/results/profile_opt-13b_h200.json \
        --chunked_prefill="$chunked" --json_out="$eval_out/$name.json" >"$eval_out/$name.txt" 2>&1
      if [ "$chunked" = true ]; then rm -f "$eval_out/$name.json"; fi
      grep -E "goodput per GPU|colocated baseline" "$eval_out/$name.txt" | sed "s/^/$name: /"
    done
  done
done
