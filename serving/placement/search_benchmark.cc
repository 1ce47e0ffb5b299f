// Micro-benchmarks of the placement planner (Google Benchmark): one simulation, and the whole
// search of docs/results/placement.md (OPT-175B, chatbot, 4 nodes x 8 A100-80GB by the roofline,
// Algorithm 2), whose target is under 10 s on 2 cores. Run by hand:
//
//   bazel run -c opt //serving/placement:search_benchmark
//
// Not a test: nothing here asserts.
#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gpu/dtype.h"
#include "serving/model/config.h"
#include "serving/placement/latency_model.h"
#include "serving/placement/search.h"
#include "serving/placement/simulator.h"
#include "serving/workload/slo.h"
#include "serving/workload/workload.h"

namespace troupe::serving::placement {
namespace {

// One disaggregated simulation of 1000 chatbot requests on OPT-13B (prefill TP2, decode TP1 on
// A100s) at `state.range(0)` requests/s.
void BM_SimulateOpt13bChatbot(benchmark::State& state) {
  const model::ModelConfig model = *model::ModelPreset("opt-13b");
  const GpuSpec gpu = *GpuPreset("a100-80gb");
  RooflineModel times(model, gpu);
  std::unique_ptr<StepTimeModel> prefill = *times.For(2, 1);
  std::unique_ptr<StepTimeModel> decode = *times.For(1, 1);
  SearchOptions options;
  SimulatedCluster cluster;
  cluster.prefill = {1, {2, 1}, prefill.get(), KvCapacityBlocks(model, {2, 1}, gpu, options)};
  cluster.decode = {1, {1, 1}, decode.get(), KvCapacityBlocks(model, {1, 1}, gpu, options)};
  cluster.kv_bytes_per_token = 819200;
  cluster.kv_transfer_bytes_per_s = gpu.nvlink_bytes_per_s;
  Simulator simulator = *Simulator::Create(cluster);
  const std::vector<workload::Request> requests =
      *workload::Generate({.dataset = workload::Dataset::kChatbot, .num_requests = 1000});
  const double rate = static_cast<double>(state.range(0));
  int64_t tokens = 0;
  for (auto _ : state) {
    const std::vector<workload::RequestTiming>* timings = *simulator.Run(requests, 1.0 / rate);
    benchmark::DoNotOptimize(timings);
    tokens += simulator.stats().decode_tokens;
  }
  state.counters["decode_tokens/s"] = benchmark::Counter(tokens, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SimulateOpt13bChatbot)->Arg(2)->Arg(8)->Unit(benchmark::kMillisecond);

// One Algorithm 2 pair of OPT-175B (prefill TP3·PP3, decode TP4·PP3 over NVLink) at
// `state.range(0)` / 10 requests/s.
void BM_SimulateOpt175bPair(benchmark::State& state) {
  const model::ModelConfig model = *model::ModelPreset("opt-175b");
  const GpuSpec gpu = *GpuPreset("a100-80gb");
  RooflineModel times(model, gpu);
  std::unique_ptr<StepTimeModel> prefill = *times.For(3, 3);
  std::unique_ptr<StepTimeModel> decode = *times.For(4, 3);
  SearchOptions options;
  SimulatedCluster cluster;
  cluster.prefill = {1, {3, 3}, prefill.get(), KvCapacityBlocks(model, {3, 3}, gpu, options)};
  cluster.decode = {1, {4, 3}, decode.get(), KvCapacityBlocks(model, {4, 3}, gpu, options)};
  cluster.kv_bytes_per_token =
      static_cast<double>(model::KvBytesPerToken(model, gpu::DType::kFloat16));
  cluster.kv_transfer_bytes_per_s = gpu.nvlink_bytes_per_s * 9;
  Simulator simulator = *Simulator::Create(cluster);
  const std::vector<workload::Request> requests =
      *workload::Generate({.dataset = workload::Dataset::kChatbot, .num_requests = 1000});
  const double rate = static_cast<double>(state.range(0)) / 10;
  for (auto _ : state) {
    const std::vector<workload::RequestTiming>* timings = *simulator.Run(requests, 1.0 / rate);
    benchmark::DoNotOptimize(timings);
  }
  const SimulationStats& s = simulator.stats();
  state.counters["steps"] = s.decode_steps;
  state.counters["tokens"] = s.decode_tokens;
  state.counters["batches"] = s.prefill_batches;
  state.counters["preempt"] = s.preemptions;
}
BENCHMARK(BM_SimulateOpt175bPair)
    ->Arg(20)
    ->Arg(80)
    ->Arg(160)
    ->Arg(640)
    ->Unit(benchmark::kMillisecond);

// The whole search of `troupe plan --model=opt-175b --gpu=a100-80gb --nodes=4 --gpus_per_node=8
// --affinity=low` (chatbot SLO: TTFT 4 s, TPOT 0.2 s), on every core.
void BM_PlanOpt175bChatbot(benchmark::State& state) {
  const model::ModelConfig model = *model::ModelPreset("opt-175b");
  ClusterSpec cluster;
  cluster.gpu = *GpuPreset("a100-80gb");
  RooflineModel times(model, cluster.gpu);
  SearchOptions options;
  options.slo = {4.0, 0.2};
  for (auto _ : state) {
    absl::StatusOr<Plan> plan = PlanPlacement(model, times, cluster, Affinity::kLow, 0, options);
    benchmark::DoNotOptimize(plan);
    if (plan.ok()) {
      state.SetLabel(absl::StrFormat("prefill %s, decode %s, %.3f req/s per GPU, %d simulations",
                                     plan->prefill.config.Name(), plan->decode.config.Name(),
                                     plan->goodput_per_gpu, plan->simulations));
    } else {
      state.SkipWithError(std::string(plan.status().message()).c_str());
    }
  }
}
BENCHMARK(BM_PlanOpt175bChatbot)->Unit(benchmark::kSecond)->Iterations(1);

}  // namespace
}  // namespace troupe::serving::placement
