// `troupe plan`: DistServe's placement search (serving/placement/search.h). For a model, a
// workload shaped like one of DistServe's datasets, TTFT/TPOT SLOs and a cluster, it finds the
// prefill and decode parallelism and instance counts with the highest goodput per GPU, prints the
// search's progress and a summary, and writes the plan as a cluster TOML that
// `troupe_gpu serve --config` starts on each node.
//
//   troupe plan --model=opt-13b --dataset=chatbot --nodes=4 --gpus_per_node=8 --rate=10
//               --nodes_per_instance=1 --out=plan.toml --json_out=plan.json
//   troupe plan --model=opt-13b --profile=profile_opt-13b.json --gpu=h200 --nodes=1
//
// Step times come from the roofline of --gpu (datasheet rates) or, with --profile, from DistServe's
// latency model fitted to a `troupe profile` measurement (--gpu then gives the memory and NVLink).
// The SLO defaults to the paper's for the model and dataset; --rate 0 plans as many instances as
// the cluster holds. The flags it shares with other commands: --model and --seed (the workload's
// seed here), --dataset, --rate, --cv, --num_requests and --max_total_tokens (the workload),
// --attainment_target and --json_out (as `troupe bench`), --chunked_prefill (the colocated
// baseline). `troupe plan --helpon=plan_command` lists its own flags.
#pragma once

namespace troupe {

// RunPlan reads the flags above, plans, prints, writes --out and --json_out, and returns the
// process's exit code; an error names the flag and the fix.
int RunPlan();

}  // namespace troupe
