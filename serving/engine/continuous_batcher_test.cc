#include "serving/engine/continuous_batcher.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "serving/engine/cpu_backend.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"

namespace troupe::serving::engine {
namespace {

using ::testing::HasSubstr;

constexpr int kCacheBlocks = 64;

std::vector<int32_t> Prompt(int n, int seed) {
  std::vector<int32_t> tokens(n);
  for (int i = 0; i < n; ++i) tokens[i] = (seed * 7919 + i * 104729) % 50257;
  return tokens;
}

class ContinuousBatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = *model::ModelPreset("tiny");
    weights_ = model::RandomWeights(/*seed=*/11);
    backend_ = *CreateCpuBackend(config_, *weights_, CpuBackendOptions{kCacheBlocks});
    reference_backend_ = *CreateCpuBackend(config_, *weights_, CpuBackendOptions{kCacheBlocks});
  }

  kv::BlockManager Blocks(int64_t num_blocks, double watermark = 0.01, int64_t cpu_blocks = 0) {
    kv::BlockManagerOptions options;
    options.num_gpu_blocks = num_blocks;
    options.num_cpu_blocks = cpu_blocks;
    options.watermark = watermark;
    return *kv::BlockManager::Create(options);
  }

  static BatcherOptions Swapping() {
    BatcherOptions options;
    options.preemption = Preemption::kSwap;
    return options;
  }

  // Five requests whose KV (3 blocks each at the end) overflows a 10-block cache.
  static std::vector<GenerationRequest> Crowd() {
    std::vector<GenerationRequest> requests;
    for (int i = 0; i < 5; ++i) requests.push_back({100 + i, Prompt(14 + i, 20 + i), 20, {}});
    return requests;
  }

  // Every block is back in its pool and the manager's counts agree.
  static void ExpectAllFree(const kv::BlockManager& blocks) {
    EXPECT_EQ(blocks.NumFreeGpuBlocks(), blocks.NumGpuBlocks());
    EXPECT_EQ(blocks.NumFreeCpuBlocks(), blocks.NumCpuBlocks());
    EXPECT_EQ(blocks.NumSequences(), 0);
    EXPECT_TRUE(blocks.CheckConsistency().ok()) << blocks.CheckConsistency();
  }

  // Greedy generation by recomputing the whole sequence every step: no cache reuse, no batching.
  std::vector<int32_t> Reference(const GenerationRequest& request) {
    std::vector<int32_t> tokens = request.prompt, generated;
    while (static_cast<int>(generated.size()) < request.max_new_tokens) {
      std::vector<int32_t> table((tokens.size() + 15) / 16);
      for (size_t b = 0; b < table.size(); ++b) table[b] = static_cast<int32_t>(b);
      const std::vector<float> logits =
          (*reference_backend_->Forward({{request.id, tokens, 0, table}}))[0];
      const int32_t next =
          static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      generated.push_back(next);
      tokens.push_back(next);
      if (request.stop_token && next == *request.stop_token) break;
    }
    return generated;
  }

  // Runs the batcher to the end; returns each request's tokens and checks the events' shape.
  std::map<int64_t, std::vector<int32_t>> RunToEnd(ContinuousBatcher& batcher) {
    std::map<int64_t, std::vector<int32_t>> out;
    for (int steps = 0; batcher.HasWork(); ++steps) {
      EXPECT_LT(steps, 10000) << "the batcher does not finish";
      if (steps >= 10000) break;
      absl::StatusOr<std::vector<TokenEvent>> events = batcher.Step();
      EXPECT_TRUE(events.ok()) << events.status();
      if (!events.ok()) break;
      for (const TokenEvent& e : *events) {
        EXPECT_FALSE(finished_.count(e.request_id)) << "token after the last one";
        out[e.request_id].push_back(e.token);
        if (e.finished) finished_.insert(e.request_id);
      }
    }
    return out;
  }

  std::vector<GenerationRequest> Requests() const {
    std::vector<GenerationRequest> requests;
    const int lengths[] = {1, 5, 16, 17, 40, 70};
    for (int i = 0; i < 6; ++i) {
      requests.push_back({i + 1, Prompt(lengths[i], i), 1 + 2 * i, std::nullopt});
    }
    return requests;
  }

  model::ModelConfig config_;
  std::unique_ptr<model::WeightSource> weights_;
  std::unique_ptr<ForwardBackend> backend_, reference_backend_;
  std::set<int64_t> finished_;
};

TEST_F(ContinuousBatcherTest, GreedyOutputsMatchTheReferenceWithAndWithoutChunkedPrefill) {
  for (bool chunked : {false, true}) {
    finished_.clear();
    kv::BlockManager blocks = Blocks(kCacheBlocks);
    BatcherOptions options;
    options.chunked_prefill = chunked;
    options.max_batch_tokens = chunked ? 24 : 128;  // small enough to split the long prompts
    ContinuousBatcher batcher = *ContinuousBatcher::Create(backend_.get(), &blocks, options);
    for (const GenerationRequest& r : Requests()) ASSERT_TRUE(batcher.Add(r).ok());
    const std::map<int64_t, std::vector<int32_t>> out = RunToEnd(batcher);
    for (const GenerationRequest& r : Requests()) {
      EXPECT_EQ(out.at(r.id), Reference(r)) << "request " << r.id << " chunked " << chunked;
    }
    EXPECT_EQ(blocks.NumFreeGpuBlocks(), kCacheBlocks) << "chunked " << chunked;
    EXPECT_EQ(finished_.size(), Requests().size());
  }
}

// A cache too small for every request at once: the newest is preempted and recomputed, the
// outputs do not change, and every block comes back.
TEST_F(ContinuousBatcherTest, PreemptionByRecomputationKeepsTheOutputs) {
  kv::BlockManager blocks = Blocks(/*num_blocks=*/10, /*watermark=*/0.0);
  ContinuousBatcher batcher = *ContinuousBatcher::Create(backend_.get(), &blocks, {});
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 5; ++i) requests.push_back({100 + i, Prompt(14 + i, 20 + i), 20, {}});
  for (const GenerationRequest& r : requests) ASSERT_TRUE(batcher.Add(r).ok());
  const std::map<int64_t, std::vector<int32_t>> out = RunToEnd(batcher);
  EXPECT_GT(batcher.num_preemptions(), 0);
  for (const GenerationRequest& r : requests) EXPECT_EQ(out.at(r.id), Reference(r)) << r.id;
  EXPECT_EQ(blocks.NumFreeGpuBlocks(), 10);
}

// A cache too small for every request at once, with swapping: the newest request's KV goes to
// host memory and comes back byte for byte into other GPU blocks (ones that other requests
// wrote in between, so a swap that lost the KV would change the tokens), the outputs do not
// change, and no preemption recomputes.
TEST_F(ContinuousBatcherTest, PreemptionBySwappingKeepsTheOutputs) {
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 5; ++i) {
    requests.push_back({100 + i, Prompt(12 + 9 * i, 20 + i), 14 + (i % 3) * 4, {}});
  }
  kv::BlockManager blocks = Blocks(/*num_blocks=*/9, /*watermark=*/0.0, /*cpu_blocks=*/32);
  ContinuousBatcher batcher = *ContinuousBatcher::Create(backend_.get(), &blocks, Swapping());
  for (const GenerationRequest& r : requests) ASSERT_TRUE(batcher.Add(r).ok());
  const std::map<int64_t, std::vector<int32_t>> out = RunToEnd(batcher);
  EXPECT_GT(batcher.num_swaps(), 0);
  EXPECT_EQ(batcher.num_preemptions(), batcher.num_swaps());
  EXPECT_EQ(batcher.num_swapped(), 0);
  for (const GenerationRequest& r : requests) EXPECT_EQ(out.at(r.id), Reference(r)) << r.id;
  ExpectAllFree(blocks);
}

// Seeded sampling and chunked prefill (a request swapped out halfway through its prompt) give
// the tokens of a cache big enough for everything.
TEST_F(ContinuousBatcherTest, SwappingKeepsSeededSamplingWithAndWithoutChunkedPrefill) {
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 5; ++i) {
    GenerationRequest r{300 + i, Prompt(12 + 9 * i, 60 + i), 14, {}};
    r.sampling.temperature = 0.8f;
    r.sampling.top_k = 50;
    r.sampling.seed = 77 + i;
    requests.push_back(r);
  }
  std::map<int64_t, std::vector<int32_t>> expected;
  {
    kv::BlockManager blocks = Blocks(kCacheBlocks);
    ContinuousBatcher batcher = *ContinuousBatcher::Create(backend_.get(), &blocks, {});
    for (const GenerationRequest& r : requests) ASSERT_TRUE(batcher.Add(r).ok());
    expected = RunToEnd(batcher);
    ASSERT_EQ(batcher.num_preemptions(), 0);
  }
  for (bool chunked : {false, true}) {
    finished_.clear();
    kv::BlockManager blocks = Blocks(/*num_blocks=*/9, /*watermark=*/0.0, /*cpu_blocks=*/32);
    BatcherOptions options = Swapping();
    options.chunked_prefill = chunked;
    options.max_batch_tokens = chunked ? 12 : 2048;  // 12: one request is swapped mid-prompt
    ContinuousBatcher batcher = *ContinuousBatcher::Create(backend_.get(), &blocks, options);
    for (const GenerationRequest& r : requests) ASSERT_TRUE(batcher.Add(r).ok());
    EXPECT_EQ(RunToEnd(batcher), expected) << "chunked " << chunked;
    EXPECT_GT(batcher.num_swaps(), 0) << "chunked " << chunked;
    ExpectAllFree(blocks);
  }
}

// A CPU pool too small for some victims: those are recomputed instead, the rest swapped, and
// the outputs do not change. Without CPU blocks swapping is recomputation.
TEST_F(ContinuousBatcherTest, SwappingFallsBackToRecomputationWhenTheCpuPoolIsFull) {
  for (int64_t cpu_blocks : {0, 3}) {
    finished_.clear();
    kv::BlockManager blocks = Blocks(/*num_blocks=*/10, /*watermark=*/0.0, cpu_blocks);
    ContinuousBatcher batcher = *ContinuousBatcher::Create(backend_.get(), &blocks, Swapping());
    for (const GenerationRequest& r : Crowd()) ASSERT_TRUE(batcher.Add(r).ok());
    const std::map<int64_t, std::vector<int32_t>> out = RunToEnd(batcher);
    if (cpu_blocks == 0) {
      EXPECT_EQ(batcher.num_swaps(), 0);
    } else {
      EXPECT_GT(batcher.num_swaps(), 0);
    }
    EXPECT_GT(batcher.num_preemptions(), batcher.num_swaps()) << "cpu blocks " << cpu_blocks;
    for (const GenerationRequest& r : Crowd()) {
      EXPECT_EQ(out.at(r.id), Reference(r)) << r.id << " cpu blocks " << cpu_blocks;
    }
    ExpectAllFree(blocks);
  }
}

// Cancelling a swapped request frees its CPU blocks; cancelling the rest frees everything.
TEST_F(ContinuousBatcherTest, CancelFreesSwappedBlocks) {
  kv::BlockManager blocks = Blocks(/*num_blocks=*/10, /*watermark=*/0.0, /*cpu_blocks=*/16);
  ContinuousBatcher batcher = *ContinuousBatcher::Create(backend_.get(), &blocks, Swapping());
  for (const GenerationRequest& r : Crowd()) ASSERT_TRUE(batcher.Add(r).ok());
  for (int steps = 0; batcher.num_swapped() == 0; ++steps) {
    ASSERT_LT(steps, 100) << "nothing was swapped out";
    ASSERT_TRUE(batcher.Step().ok());
  }
  EXPECT_LT(blocks.NumFreeCpuBlocks(), 16);
  std::vector<int64_t> ids;
  for (const GenerationRequest& r : Crowd()) ids.push_back(r.id);
  // The swapped requests are those whose blocks are in the CPU pool.
  for (int64_t id : ids) {
    if (blocks.Contains(id) && *blocks.Where(id) == kv::Location::kCpu) {
      EXPECT_TRUE(batcher.Cancel(id).ok()) << id;
    }
  }
  EXPECT_EQ(batcher.num_swapped(), 0);
  EXPECT_EQ(blocks.NumFreeCpuBlocks(), 16);
  for (int64_t id : ids) (void)batcher.Cancel(id);  // the others, wherever they are
  EXPECT_FALSE(batcher.HasWork());
  ExpectAllFree(blocks);
}

// Seeded sampling draws the k-th token at offset k of the request's seed: the same tokens
// whether prompts are chunked and whether requests are preempted and recomputed.
TEST_F(ContinuousBatcherTest, SeededSamplingIsTheSameUnderChunkingAndPreemption) {
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 4; ++i) {
    GenerationRequest r{200 + i, Prompt(10 + 7 * i, 40 + i), 12, {}};
    r.sampling.temperature = 0.9f;
    r.sampling.top_p = 0.95f;
    r.sampling.top_k = 40;
    r.sampling.seed = 1000 + i;
    requests.push_back(r);
  }
  std::vector<std::map<int64_t, std::vector<int32_t>>> outputs;
  struct Setup {
    int64_t blocks;
    bool chunked;
  };
  for (const Setup& setup :
       {Setup{kCacheBlocks, false}, Setup{kCacheBlocks, true}, Setup{8, false}}) {
    finished_.clear();
    kv::BlockManager blocks = Blocks(setup.blocks, 0.0);
    BatcherOptions options;
    options.chunked_prefill = setup.chunked;
    options.max_batch_tokens = setup.chunked ? 16 : 2048;
    ContinuousBatcher batcher = *ContinuousBatcher::Create(backend_.get(), &blocks, options);
    for (const GenerationRequest& r : requests) ASSERT_TRUE(batcher.Add(r).ok());
    outputs.push_back(RunToEnd(batcher));
    if (setup.blocks == 8) {
      EXPECT_GT(batcher.num_preemptions(), 0);
    }
    EXPECT_EQ(blocks.NumFreeGpuBlocks(), setup.blocks);
  }
  EXPECT_EQ(outputs[0], outputs[1]);
  EXPECT_EQ(outputs[0], outputs[2]);
  GenerationRequest greedy = requests[0];
  greedy.sampling = {};
  greedy.sampling.temperature = 0.0f;
  EXPECT_NE(outputs[0].at(requests[0].id), Reference(greedy));  // sampling did sample
}

TEST_F(ContinuousBatcherTest, StopTokenEndsARequest) {
  kv::BlockManager blocks = Blocks(kCacheBlocks);
  ContinuousBatcher batcher = *ContinuousBatcher::Create(backend_.get(), &blocks, {});
  GenerationRequest request{7, Prompt(9, 3), 10, std::nullopt};
  const std::vector<int32_t> full = Reference(request);
  request.stop_token = full[3];
  const int64_t stop_at = std::find(full.begin(), full.end(), full[3]) - full.begin();
  ASSERT_TRUE(batcher.Add(request).ok());
  std::vector<TokenEvent> events;
  while (batcher.HasWork()) {
    absl::StatusOr<std::vector<TokenEvent>> step = batcher.Step();
    ASSERT_TRUE(step.ok()) << step.status();
    events.insert(events.end(), step->begin(), step->end());
  }
  ASSERT_EQ(static_cast<int64_t>(events.size()), stop_at + 1);
  EXPECT_TRUE(events.back().finished);
  EXPECT_EQ(events.back().reason, FinishReason::kStop);
  EXPECT_EQ(events.back().token, full[3]);
}

TEST_F(ContinuousBatcherTest, CancelFreesEveryBlock) {
  kv::BlockManager blocks = Blocks(kCacheBlocks);
  BatcherOptions options;
  options.max_batch_requests = 2;  // the third request waits
  ContinuousBatcher batcher = *ContinuousBatcher::Create(backend_.get(), &blocks, options);
  for (int64_t id : {1, 2, 3}) ASSERT_TRUE(batcher.Add({id, Prompt(30, id), 50, {}}).ok());
  ASSERT_TRUE(batcher.Step().ok());
  ASSERT_TRUE(batcher.Step().ok());
  EXPECT_EQ(batcher.num_running(), 2);
  EXPECT_LT(blocks.NumFreeGpuBlocks(), kCacheBlocks);
  EXPECT_TRUE(batcher.Cancel(1).ok());  // running
  EXPECT_TRUE(batcher.Cancel(3).ok());  // waiting (or just admitted)
  EXPECT_TRUE(absl::IsNotFound(batcher.Cancel(3)));
  EXPECT_TRUE(batcher.Cancel(2).ok());
  EXPECT_FALSE(batcher.HasWork());
  EXPECT_EQ(blocks.NumFreeGpuBlocks(), kCacheBlocks);
  EXPECT_EQ(blocks.NumSequences(), 0);
}

TEST_F(ContinuousBatcherTest, BadRequestsAreRefusedByName) {
  kv::BlockManager blocks = Blocks(kCacheBlocks);
  ContinuousBatcher batcher = *ContinuousBatcher::Create(backend_.get(), &blocks, {});
  ASSERT_TRUE(batcher.Add({1, Prompt(4, 1), 4, {}}).ok());
  EXPECT_THAT(batcher.Add({1, Prompt(4, 1), 4, {}}).message(), HasSubstr("already queued"));
  EXPECT_THAT(batcher.Add({2, {}, 4, {}}).message(), HasSubstr("request 2: the prompt is empty"));
  EXPECT_THAT(batcher.Add({3, {config_.vocab_size}, 4, {}}).message(),
              HasSubstr("outside the vocabulary"));
  EXPECT_THAT(batcher.Add({4, Prompt(4, 1), 0, {}}).message(), HasSubstr("max_new_tokens is 0"));
  EXPECT_THAT(batcher.Add({5, Prompt(500, 1), 20, {}}).message(),
              HasSubstr("exceeds the model's context of 512"));
  GenerationRequest hot{8, Prompt(4, 1), 4, {}};
  hot.sampling.temperature = -1.0f;
  EXPECT_THAT(batcher.Add(hot).message(), HasSubstr("request 8: "));
  EXPECT_THAT(batcher.Add(hot).message(), HasSubstr("temperature"));
  hot.sampling.temperature = 1.0f;
  hot.sampling.top_p = 0.0f;
  EXPECT_THAT(batcher.Add(hot).message(), HasSubstr("top_p"));
  kv::BlockManager small = Blocks(4, 0.0);
  ContinuousBatcher tight = *ContinuousBatcher::Create(backend_.get(), &small, {});
  EXPECT_THAT(tight.Add({6, Prompt(60, 1), 10, {}}).message(),
              HasSubstr("more than the cache can give one request"));
  EXPECT_EQ(batcher.num_waiting(), 1);  // the refused requests left nothing behind
}

TEST_F(ContinuousBatcherTest, CreateChecksTheCacheAndOptions) {
  kv::BlockManager big = Blocks(kCacheBlocks + 1);
  EXPECT_THAT(ContinuousBatcher::Create(backend_.get(), &big, {}).status().message(),
              HasSubstr("size them alike"));
  kv::BlockManager blocks = Blocks(kCacheBlocks);
  BatcherOptions bad;
  bad.max_batch_tokens = 0;
  EXPECT_THAT(ContinuousBatcher::Create(backend_.get(), &blocks, bad).status().message(),
              HasSubstr("must be positive"));
  // Swapping needs no CPU blocks to be accepted: it then always recomputes.
  EXPECT_TRUE(ContinuousBatcher::Create(backend_.get(), &blocks, Swapping()).ok());
}

}  // namespace
}  // namespace troupe::serving::engine

namespace troupe::serving::engine {
namespace {

TEST(ResolvePreemptionTest, DefaultsAndErrors) {
  EXPECT_EQ(*ResolvePreemption("", 0, true), Preemption::kRecompute);
  EXPECT_EQ(*ResolvePreemption("", 8, true), Preemption::kSwap);
  EXPECT_EQ(*ResolvePreemption("", 8, false), Preemption::kRecompute);
  EXPECT_EQ(*ResolvePreemption("swap", 8, false), Preemption::kSwap);
  EXPECT_EQ(*ResolvePreemption("recompute", 8, true), Preemption::kRecompute);
  EXPECT_THAT(ResolvePreemption("swap", 0, true).status().message(),
              ::testing::HasSubstr("give it swap blocks"));
  EXPECT_THAT(ResolvePreemption("evict", 4, true).status().message(),
              ::testing::HasSubstr("use swap or recompute"));
  EXPECT_THAT(ResolvePreemption("", -1, true).status().message(),
              ::testing::HasSubstr("must be >= 0"));
}

}  // namespace
}  // namespace troupe::serving::engine
