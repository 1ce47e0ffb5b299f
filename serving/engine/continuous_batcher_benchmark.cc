// The batcher's own cost per step, without a model: a backend that returns logits at once, so
// what is timed is scheduling, block bookkeeping, the logits' hand-over and host sampling. On a
// GPU this is the host time between two forward passes (a decode step of OPT-1.3B on an H200
// takes about 3 ms: docs/results/serving_gpu.md).
//
//   bazel run -c opt //serving/engine:continuous_batcher_benchmark
#include <cstdint>
#include <vector>

#include <benchmark/benchmark.h>
#include "serving/engine/continuous_batcher.h"
#include "serving/engine/forward_backend.h"
#include "serving/kv/block_manager.h"
#include "serving/model/config.h"

namespace troupe::serving::engine {
namespace {

// InstantBackend validates each step as a real backend does and returns fixed logits.
class InstantBackend : public ForwardBackend {
 public:
  InstantBackend(model::ModelConfig config, int blocks) : config_(config), blocks_(blocks) {
    logits_.resize(config_.vocab_size);
    for (int64_t i = 0; i < config_.vocab_size; ++i) logits_[i] = static_cast<float>(i % 977);
  }
  const model::ModelConfig& config() const override { return config_; }
  int num_kv_blocks() const override { return blocks_; }
  absl::StatusOr<std::vector<std::vector<float>>> Forward(
      const std::vector<SequenceStep>& batch) override {
    for (const SequenceStep& step : batch) {
      if (absl::Status s = ValidateStep(step, config_, blocks_); !s.ok()) return s;
    }
    return std::vector<std::vector<float>>(batch.size(), logits_);
  }
  gpu::DType kv_dtype() const override { return gpu::DType::kFloat16; }
  absl::StatusOr<std::vector<uint8_t>> ExportKv(const std::vector<int32_t>&,
                                                const KvRange&) const override {
    return absl::UnimplementedError("no cache");
  }
  absl::Status ImportKv(const std::vector<int32_t>&, const KvRange&,
                        const std::vector<uint8_t>&) override {
    return absl::UnimplementedError("no cache");
  }

 private:
  model::ModelConfig config_;
  int blocks_;
  std::vector<float> logits_;
};

// BM_DecodeStep: one decode step of `batch` requests (128-token prompts) on opt-1.3b's shapes
// with a 41936-block cache (what opt-1.3b leaves free on an H200).
void BM_DecodeStep(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  InstantBackend backend(*model::ModelPreset("opt-1.3b"), 41936);
  kv::BlockManagerOptions options;
  options.num_gpu_blocks = backend.num_kv_blocks();
  kv::BlockManager blocks = *kv::BlockManager::Create(options);
  ContinuousBatcher batcher = *ContinuousBatcher::Create(&backend, &blocks, {});
  int64_t next_id = 0;
  const auto refill = [&] {
    while (batcher.num_running() + batcher.num_waiting() < batch) {
      (void)batcher.Add({next_id++, std::vector<int32_t>(128, 7), 1000, {}});
    }
  };
  refill();
  (void)batcher.Step();  // the prefill
  for (auto _ : state) {
    refill();
    benchmark::DoNotOptimize(batcher.Step());
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_DecodeStep)->Arg(1)->Arg(8)->Arg(32)->Arg(64)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace troupe::serving::engine

BENCHMARK_MAIN();
