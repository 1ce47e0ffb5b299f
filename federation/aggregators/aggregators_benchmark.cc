// Aggregation time of mean, Multi-Krum, Bulyan and the Flag Aggregator (m = 8, lambda = 0,
// 1 iteration: the reference configuration) against the model size d (n = 15 workers) and the
// worker count n (d = 1e6). Single-threaded (Eigen without OpenMP).
//
//   bazel run --jobs=1 //federation/aggregators:aggregators_benchmark -- --benchmark_min_time=0.1
#include <cstdint>

#include "benchmark/benchmark.h"
#include "eigen3/Eigen/Core"
#include "federation/aggregators/aggregators.h"
#include "federation/aggregators/flag_aggregator.h"

namespace troupe::federation::aggregators {
namespace {

// f for n workers: the largest Bulyan allows (n >= 4f + 3), so every rule runs on one input.
int ByzantineCount(int n) { return (n - 3) / 4; }

// Gradients are random (Eigen's rand); their values do not change these rules' work.
Eigen::MatrixXf RandomGradients(int64_t d, int64_t n) { return Eigen::MatrixXf::Random(d, n); }

template <typename Rule>
void RunRule(benchmark::State& state, Rule rule) {
  const int64_t d = state.range(0);
  const int64_t n = state.range(1);
  const Eigen::MatrixXf gradients = RandomGradients(d, n);
  const int f = ByzantineCount(static_cast<int>(n));
  for (auto _ : state) {
    auto result = rule(gradients, f);
    if (!result.ok()) {
      state.SkipWithError("aggregation failed");
      break;
    }
    benchmark::DoNotOptimize(result->data());
  }
  state.counters["f"] = f;
  state.SetBytesProcessed(state.iterations() * d * n * static_cast<int64_t>(sizeof(float)));
}

void BM_Mean(benchmark::State& state) {
  RunRule(state, [](const Eigen::MatrixXf& g, int) { return Mean(g); });
}

void BM_MultiKrum(benchmark::State& state) {
  RunRule(state, [](const Eigen::MatrixXf& g, int f) { return MultiKrum(g, f); });
}

void BM_Bulyan(benchmark::State& state) {
  RunRule(state, [](const Eigen::MatrixXf& g, int f) { return Bulyan(g, f); });
}

void BM_Flag(benchmark::State& state) {
  RunRule(state, [](const Eigen::MatrixXf& g, int) {
    FlagOptions options = FlagOptions::CodeExact();
    options.subspace_dim = 8;
    absl::StatusOr<FlagResult> result = FlagAggregate(g, options);
    if (!result.ok()) return absl::StatusOr<Eigen::VectorXf>(result.status());
    return absl::StatusOr<Eigen::VectorXf>(std::move(result->aggregate));
  });
}

// {d, n}: d in {1e4, 1e5, 1e6, 1e7} at n = 15, then n in {7, 30} at d = 1e6.
void Sizes(benchmark::internal::Benchmark* benchmark) {
  for (int64_t d : {10'000, 100'000, 1'000'000, 10'000'000}) benchmark->Args({d, 15});
  for (int64_t n : {7, 30}) benchmark->Args({1'000'000, n});
  benchmark->ArgNames({"d", "n"})->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_Mean)->Apply(Sizes);
BENCHMARK(BM_MultiKrum)->Apply(Sizes);
BENCHMARK(BM_Bulyan)->Apply(Sizes);
BENCHMARK(BM_Flag)->Apply(Sizes);

}  // namespace
}  // namespace troupe::federation::aggregators
