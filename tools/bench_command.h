// `troupe bench`: an open-loop benchmark of an OpenAI-compatible server (`troupe serve`, vLLM),
// measured and printed as vLLM's benchmark_serving does, with DistServe's SLO attainment
// (docs/bench.md).
//
//   troupe serve --colocated &
//   troupe bench --dataset=code --max_total_tokens=512 --rate=2 --num_requests=50
//   troupe bench --dataset=chatbot --max_total_tokens=512 --num_requests=100 --rates=0.5,1,2
//       --goodput="ttft:2000 tpot:200" --slo_scales=0.5,1,2,4 --plot_out=sweep.png
//   troupe bench --trace=requests.jsonl --base_url=http://gpu-host:8000
#pragma once

namespace troupe {

// RunBench reads the workload flags (tools/workload_flags.h) and its own (--base_url, --rates,
// --max_concurrency, --goodput, --slo_scales, --attainment_target, --json_out, --plot_out,
// --api_key, timeouts, progress), checks the server with one request, runs the workload once
// per rate, prints each run's summary (and the sweep's table), writes the JSON and the plot, and
// returns the process exit code: 1 for bad flags, a server that cannot be reached, or a run in
// which every request failed.
int RunBench();

}  // namespace troupe
