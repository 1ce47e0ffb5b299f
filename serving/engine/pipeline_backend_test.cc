#include "serving/engine/pipeline_backend.h"

#include <cmath>
#include <memory>
#include <vector>

#include "actors/test_runtime.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "serving/engine/continuous_batcher.h"
#include "serving/engine/cpu_backend.h"
#include "serving/kv/block_manager.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"

namespace troupe::serving::engine {
namespace {

using ::testing::HasSubstr;

constexpr int kBlocks = 32;

class PipelineBackendTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    runtime_ = actors::StartTestRuntime(2);
    config_ = *model::ModelPreset(GetParam());
    config_.num_layers = 4;  // four layers, so that two- and four-stage pipelines split them
    weights_ = model::RandomWeights(5);
  }

  std::unique_ptr<ForwardBackend> Whole() const {
    return *CreateCpuBackend(config_, *weights_, {kBlocks});
  }

  // Pipeline splits the layers at `cuts` (e.g. {2} for [0, 2) and [2, 4)).
  std::unique_ptr<ForwardBackend> Pipeline(const std::vector<int>& cuts,
                                           PipelineOptions options = {}) {
    std::vector<std::unique_ptr<StageBackend>> stages;
    int begin = 0;
    std::vector<int> ends = cuts;
    ends.push_back(config_.num_layers);
    for (int end : ends) {
      absl::StatusOr<std::unique_ptr<StageBackend>> stage =
          CreateCpuStage(config_, *weights_, {kBlocks, begin, end});
      EXPECT_TRUE(stage.ok()) << stage.status();
      stages.push_back(*std::move(stage));
      begin = end;
    }
    absl::StatusOr<std::unique_ptr<ForwardBackend>> pipeline =
        CreatePipelineBackend(runtime_->system(), std::move(stages), options);
    EXPECT_TRUE(pipeline.ok()) << pipeline.status();
    return *std::move(pipeline);
  }

  static std::vector<int32_t> Tokens(int n, int seed) {
    std::vector<int32_t> tokens(n);
    for (int i = 0; i < n; ++i) tokens[i] = (seed * 131 + i * 977) % 50000;
    return tokens;
  }

  std::unique_ptr<actors::Runtime> runtime_;
  model::ModelConfig config_;
  std::unique_ptr<model::WeightSource> weights_;
};

// The steps of the tests below: a prefill of two prompts, then a decode step of both and a
// chunk of a third, then that chunk's continuation.
std::vector<std::vector<SequenceStep>> Steps() {
  const auto tokens = [](int n, int seed) {
    std::vector<int32_t> t(n);
    for (int i = 0; i < n; ++i) t[i] = (seed * 131 + i * 977) % 50000;
    return t;
  };
  return {
      {{1, tokens(20, 1), 0, {0, 1}}, {2, tokens(7, 2), 0, {5}}},
      {{1, {11}, 20, {0, 1}}, {2, {12}, 7, {5}}, {3, tokens(18, 3), 0, {9, 10}}},
      {{3, tokens(5, 4), 18, {9, 10}}},
  };
}

// Without micro-batches the stages compute exactly what the whole model computes: the same
// operations on the same values, handed from stage to stage as messages.
TEST_P(PipelineBackendTest, StagesComputeTheWholeModelsLogitsExactly) {
  for (const std::vector<int>& cuts : std::vector<std::vector<int>>{{2}, {1, 2, 3}, {3}}) {
    std::unique_ptr<ForwardBackend> pipeline = Pipeline(cuts, {/*micro_batches=*/1});
    std::unique_ptr<ForwardBackend> reference = Whole();
    for (const std::vector<SequenceStep>& step : Steps()) {
      absl::StatusOr<std::vector<std::vector<float>>> a = reference->Forward(step);
      absl::StatusOr<std::vector<std::vector<float>>> b = pipeline->Forward(step);
      ASSERT_TRUE(a.ok()) << a.status();
      ASSERT_TRUE(b.ok()) << b.status();
      EXPECT_EQ(*a, *b) << cuts.size() + 1 << " stages";
    }
    EXPECT_EQ(*reference->ExportKv({0, 1, 5, 9, 10}, {}),
              *pipeline->ExportKv({0, 1, 5, 9, 10}, {}));
  }
}

// With micro-batches (one per stage by default) the stages work on different sequences at once;
// a GEMM over fewer rows rounds differently, so the logits agree to float precision, not bit for
// bit, and the KV the same way.
TEST_P(PipelineBackendTest, MicroBatchesComputeTheSameLogits) {
  for (const std::vector<int>& cuts : std::vector<std::vector<int>>{{2}, {1, 2, 3}}) {
    std::unique_ptr<ForwardBackend> pipeline = Pipeline(cuts);
    std::unique_ptr<ForwardBackend> reference = Whole();
    for (const std::vector<SequenceStep>& step : Steps()) {
      absl::StatusOr<std::vector<std::vector<float>>> a = reference->Forward(step);
      absl::StatusOr<std::vector<std::vector<float>>> b = pipeline->Forward(step);
      ASSERT_TRUE(a.ok()) << a.status();
      ASSERT_TRUE(b.ok()) << b.status();
      ASSERT_EQ(a->size(), b->size());
      for (size_t s = 0; s < a->size(); ++s) {
        double diff = 0, norm = 0;
        for (size_t v = 0; v < (*a)[s].size(); ++v) {
          diff += std::pow((*a)[s][v] - (*b)[s][v], 2);
          norm += std::pow((*a)[s][v], 2);
        }
        EXPECT_LT(std::sqrt(diff / norm), 1e-5) << "sequence " << step[s].seq_id;
      }
    }
  }
}

// KV moves between instances of different pipeline depths: a two-stage prefill side exports a
// prompt's KV stage by stage (or any layer and head range across the stage boundary), and a
// whole-model decode side imports it and decodes as if it had prefilled itself.
TEST_P(PipelineBackendTest, KvMovesBetweenDifferentPipelineDepths) {
  std::unique_ptr<ForwardBackend> prefill = Pipeline({2}, {/*micro_batches=*/1});
  std::unique_ptr<ForwardBackend> decode = Whole();
  std::unique_ptr<ForwardBackend> alone = Whole();
  const std::vector<int32_t> prompt = Tokens(27, 6);
  ASSERT_TRUE(prefill->Forward({{1, prompt, 0, {3, 4}}}).ok());
  ASSERT_TRUE(alone->Forward({{1, prompt, 0, {3, 4}}}).ok());
  // Whole, and as two pieces that each straddle the stage boundary.
  absl::StatusOr<std::vector<uint8_t>> all = prefill->ExportKv({3, 4}, {});
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_TRUE(decode->ImportKv({7, 8}, {}, *all).ok());
  const KvRange low{0, 3, 0, -1}, high{3, 4, 0, -1};
  EXPECT_EQ(*decode->ExportKv({7, 8}, low), *prefill->ExportKv({3, 4}, low));
  EXPECT_EQ(*decode->ExportKv({7, 8}, high), *prefill->ExportKv({3, 4}, high));
  // And back the other way, into the pipeline.
  ASSERT_TRUE(prefill->ImportKv({12, 13}, low, *decode->ExportKv({7, 8}, low)).ok());
  ASSERT_TRUE(prefill->ImportKv({12, 13}, high, *decode->ExportKv({7, 8}, high)).ok());
  const auto next = [](int32_t token, std::vector<int32_t> table) {
    return std::vector<SequenceStep>{{1, {token}, 27, std::move(table)}};
  };
  const std::vector<std::vector<float>> expected = *alone->Forward(next(42, {3, 4}));
  EXPECT_EQ(*decode->Forward(next(42, {7, 8})), expected);
  EXPECT_EQ(*prefill->Forward(next(42, {12, 13})), expected);
}

TEST_P(PipelineBackendTest, TheBatcherGeneratesTheSameTokens) {
  const auto generate = [&](ForwardBackend& backend) {
    kv::BlockManagerOptions options;
    options.num_gpu_blocks = kBlocks;
    kv::BlockManager blocks = *kv::BlockManager::Create(options);
    ContinuousBatcher batcher = *ContinuousBatcher::Create(&backend, &blocks, {});
    for (int i = 0; i < 4; ++i) EXPECT_TRUE(batcher.Add({i, Tokens(5 + 9 * i, i), 6, {}}).ok());
    std::vector<std::vector<int32_t>> out(4);
    while (batcher.HasWork()) {
      absl::StatusOr<std::vector<TokenEvent>> events = batcher.Step();
      EXPECT_TRUE(events.ok()) << events.status();
      if (!events.ok()) break;
      for (const TokenEvent& e : *events) out[e.request_id].push_back(e.token);
    }
    return out;
  };
  std::unique_ptr<ForwardBackend> whole = Whole();
  std::unique_ptr<ForwardBackend> pipeline = Pipeline({1, 3});
  EXPECT_EQ(generate(*pipeline), generate(*whole));
}

TEST_P(PipelineBackendTest, BadStagesAndRangesAreErrors) {
  const auto stage = [&](int begin, int end) {
    return *CreateCpuStage(config_, *weights_, {kBlocks, begin, end});
  };
  const auto error = [&](std::vector<std::unique_ptr<StageBackend>> stages) {
    return std::string(
        CreatePipelineBackend(runtime_->system(), std::move(stages)).status().message());
  };
  std::vector<std::unique_ptr<StageBackend>> gap;
  gap.push_back(stage(0, 1));
  gap.push_back(stage(2, 4));
  EXPECT_THAT(error(std::move(gap)), HasSubstr("stage 1 (layers [2, 4)): should begin at layer 1"));
  std::vector<std::unique_ptr<StageBackend>> short_of;
  short_of.push_back(stage(0, 3));
  EXPECT_THAT(error(std::move(short_of)), HasSubstr("end at layer 3 of 4; add a stage"));
  EXPECT_THAT(error({}), HasSubstr("at least one stage"));
  std::vector<std::unique_ptr<StageBackend>> whole;
  whole.push_back(stage(0, 4));
  EXPECT_THAT(CreatePipelineBackend(runtime_->system(), std::move(whole), {-1}).status().message(),
              HasSubstr("micro_batches is -1; it must be >= 0"));
  EXPECT_THAT(CreateCpuStage(config_, *weights_, {kBlocks, 3, 2}).status().message(),
              HasSubstr("layers [3, 2) are not a non-empty range of the model's 4 layers"));
  std::unique_ptr<StageBackend> second = stage(2, 4);
  EXPECT_THAT(second->ExportKv({0}, {0, 3, 0, -1}).status().message(),
              HasSubstr("KV layers [0, 3) are not all in this stage's [2, 4)"));
  std::unique_ptr<ForwardBackend> pipeline = Pipeline({2});
  EXPECT_THAT(pipeline->ImportKv({kBlocks}, {}, std::vector<uint8_t>(
                                                    KvBytes(config_, pipeline->kv_dtype(), 1, *KvRangeOf({}, config_))))
                  .message(),
              HasSubstr("KV block 32 is outside the cache's 32 blocks"));
  EXPECT_THAT(pipeline->Forward({{1, {1}, 0, {kBlocks}}}).status().message(),
              HasSubstr("sequence 1"));
}

INSTANTIATE_TEST_SUITE_P(Models, PipelineBackendTest, ::testing::Values("tiny", "tiny-llama"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) c = c == '-' ? '_' : c;
                           return name;
                         });

}  // namespace
}  // namespace troupe::serving::engine
