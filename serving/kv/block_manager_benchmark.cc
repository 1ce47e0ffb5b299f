// Micro-benchmarks of the KV block manager's scheduler-side hot paths (Google Benchmark). Run by
// hand:
//
//   bazel run -c opt //serving/kv:block_manager_benchmark
//
// Not a test: nothing here asserts.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "serving/kv/block_manager.h"

namespace troupe::serving::kv {
namespace {

// DistServe's evaluation sizes: 2048-token requests (128 blocks of 16).
constexpr int64_t kGpuBlocks = 16384;
constexpr int64_t kCpuBlocks = 16384;

BlockManager MakeManager() {
  BlockManagerOptions options;
  options.num_gpu_blocks = kGpuBlocks;
  options.num_cpu_blocks = kCpuBlocks;
  return *BlockManager::Create(options);
}

// One request's life: allocate the prompt, decode state.range(1) tokens one at a time, free.
void BM_AllocateAppendFree(benchmark::State& state) {
  BlockManager blocks = MakeManager();
  const int64_t prompt = state.range(0);
  const int64_t output = state.range(1);
  int64_t seq = 0;
  for (auto _ : state) {
    (void)blocks.Allocate(seq, prompt);
    for (int64_t t = 0; t < output; ++t) {
      absl::StatusOr<AppendResult> appended = blocks.AppendSlots(seq, 1);
      benchmark::DoNotOptimize(appended);
    }
    (void)blocks.Free(seq);
    ++seq;
  }
  state.SetItemsProcessed(state.iterations() * (output + 1));
}
BENCHMARK(BM_AllocateAppendFree)->Args({512, 128})->Args({1920, 128});

// One decode step of a batch: an append per running sequence, then its slot mapping.
void BM_DecodeStepAppend(benchmark::State& state) {
  BlockManager blocks = MakeManager();
  const int64_t batch = state.range(0);
  for (int64_t seq = 0; seq < batch; ++seq) (void)blocks.Allocate(seq, 16);
  int64_t step = 0;
  for (auto _ : state) {
    for (int64_t seq = 0; seq < batch; ++seq) {
      absl::StatusOr<AppendResult> appended = blocks.AppendSlots(seq, 1);
      benchmark::DoNotOptimize(appended);
    }
    // Keep the sequences short so the pool never runs out.
    if (++step % 256 == 0) {
      for (int64_t seq = 0; seq < batch; ++seq) {
        (void)blocks.Free(seq);
        (void)blocks.Allocate(seq, 16);
      }
    }
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_DecodeStepAppend)->Arg(64)->Arg(1024);

// Preempting and resuming a 2048-token request.
void BM_SwapOutIn(benchmark::State& state) {
  BlockManager blocks = MakeManager();
  (void)blocks.Allocate(0, 2048);
  for (auto _ : state) {
    benchmark::DoNotOptimize(blocks.SwapOut(0));
    benchmark::DoNotOptimize(blocks.SwapIn(0));
  }
}
BENCHMARK(BM_SwapOutIn);

}  // namespace
}  // namespace troupe::serving::kv
