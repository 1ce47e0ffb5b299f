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

// FakeCopy is a PendingKvCopy that finishes when the test says so and counts its waits.
struct CopyLog {
  int made = 0;
  int destroyed = 0;
  bool done = false;
};

class FakeCopy : public PendingKvCopy {
 public:
  explicit FakeCopy(CopyLog* log) : log_(log) { ++log_->made; }
  ~FakeCopy() override { ++log_->destroyed; }
  absl::StatusOr<bool> Done() override { return log_->done; }
  absl::Status Wait() override {
    log_->done = true;
    return absl::OkStatus();
  }

 private:
  CopyLog* log_;
};

// DeviceStage is a CPU stage that reports a device shard of its layers and answers device
// copies with FakeCopy (or refuses them), as a CUDA stage would.
class DeviceStage : public StageBackend {
 public:
  DeviceStage(std::unique_ptr<StageBackend> stage, CopyLog* log, bool refuse)
      : stage_(std::move(stage)), log_(log), refuse_(refuse) {}
  const model::ModelConfig& config() const override { return stage_->config(); }
  int layer_begin() const override { return stage_->layer_begin(); }
  int layer_end() const override { return stage_->layer_end(); }
  int num_kv_blocks() const override { return stage_->num_kv_blocks(); }
  gpu::DType kv_dtype() const override { return stage_->kv_dtype(); }
  absl::StatusOr<std::vector<float>> Run(const std::vector<SequenceStep>& batch,
                                         const std::vector<float>& hidden) override {
    return stage_->Run(batch, hidden);
  }
  absl::StatusOr<std::vector<uint8_t>> ExportKv(const std::vector<int32_t>& blocks,
                                                const KvRange& range) const override {
    return stage_->ExportKv(blocks, range);
  }
  absl::Status ImportKv(const std::vector<int32_t>& blocks, const KvRange& range,
                        const std::vector<uint8_t>& bytes) override {
    return stage_->ImportKv(blocks, range, bytes);
  }
  std::vector<DeviceKvShard> DeviceKvShards() const override {
    return {{0, nullptr, num_kv_blocks(), layer_begin(), layer_end(), 0, config().num_kv_heads}};
  }
  absl::StatusOr<std::unique_ptr<PendingKvCopy>> CopyKvFromDevice(
      const std::vector<DeviceKvShard>& sources, const std::vector<int32_t>& src_blocks,
      const std::vector<int32_t>& dst_blocks) override {
    if (refuse_) return absl::InvalidArgumentError("the sources miss my layers");
    EXPECT_EQ(sources.size(), 1u);
    EXPECT_EQ(src_blocks, (std::vector<int32_t>{3, 4}));
    EXPECT_EQ(dst_blocks, (std::vector<int32_t>{7, 8}));
    return std::unique_ptr<PendingKvCopy>(std::make_unique<FakeCopy>(log_));
  }

 private:
  std::unique_ptr<StageBackend> stage_;
  CopyLog* log_;
  bool refuse_;
};

// A pipeline lists its stages' device shards in order and hands a device copy to every stage,
// combining their pending copies; a pipeline of CPU stages has no device shards.
TEST(PipelineDeviceKvTest, ShardsAndCopiesAreTheStages) {
  std::unique_ptr<actors::Runtime> runtime = actors::StartTestRuntime(2);
  model::ModelConfig config = *model::ModelPreset("tiny");
  config.num_layers = 4;
  std::unique_ptr<model::WeightSource> weights = model::RandomWeights(5);
  const std::vector<DeviceKvShard> sources = {{1, nullptr, kBlocks, 0, 4, 0, config.num_kv_heads}};
  const auto pipeline = [&](std::vector<CopyLog>* logs, int refusing) {
    std::vector<std::unique_ptr<StageBackend>> stages;
    for (int i = 0; i < 2; ++i) {
      std::unique_ptr<StageBackend> cpu = *CreateCpuStage(config, *weights, {kBlocks, 2 * i, 2 * i + 2});
      stages.push_back(std::make_unique<DeviceStage>(std::move(cpu), &(*logs)[i], i == refusing));
    }
    return *CreatePipelineBackend(runtime->system(), std::move(stages));
  };

  std::vector<CopyLog> logs(2);
  std::unique_ptr<ForwardBackend> backend = pipeline(&logs, /*refusing=*/-1);
  const std::vector<DeviceKvShard> shards = backend->DeviceKvShards();
  ASSERT_EQ(shards.size(), 2u);
  EXPECT_EQ(shards[0].layer_begin, 0);
  EXPECT_EQ(shards[0].layer_end, 2);
  EXPECT_EQ(shards[1].layer_begin, 2);
  EXPECT_EQ(shards[1].layer_end, 4);
  absl::StatusOr<std::unique_ptr<PendingKvCopy>> copy =
      backend->CopyKvFromDevice(sources, {3, 4}, {7, 8});
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ(logs[0].made, 1);
  EXPECT_EQ(logs[1].made, 1);
  logs[0].done = true;
  EXPECT_FALSE(*(*copy)->Done()) << "stage 1's part is still running";
  EXPECT_TRUE((*copy)->Wait().ok());
  EXPECT_TRUE(*(*copy)->Done());
  copy->reset();
  EXPECT_EQ(logs[0].destroyed + logs[1].destroyed, 2);
  EXPECT_THAT(backend->CopyKvFromDevice(sources, {3}, {7, 8}).status().message(),
              HasSubstr("1 source blocks but 2 destination blocks"));

  // Stage 1 refuses: the copy fails naming it, and stage 0's part is already waited for.
  std::vector<CopyLog> refused(2);
  std::unique_ptr<ForwardBackend> refusing = pipeline(&refused, /*refusing=*/1);
  absl::StatusOr<std::unique_ptr<PendingKvCopy>> failed =
      refusing->CopyKvFromDevice(sources, {3, 4}, {7, 8});
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(failed.status().message(), HasSubstr("pipeline stage [2, 4): the sources miss"));
  EXPECT_EQ(refused[0].made, 1);
  EXPECT_EQ(refused[0].destroyed, 1);

  // CPU stages keep their caches on the host: no shards, and device copies are refused.
  std::vector<std::unique_ptr<StageBackend>> cpu_stages;
  cpu_stages.push_back(*CreateCpuStage(config, *weights, {kBlocks, 0, 2}));
  cpu_stages.push_back(*CreateCpuStage(config, *weights, {kBlocks, 2, 4}));
  std::unique_ptr<ForwardBackend> cpu =
      *CreatePipelineBackend(runtime->system(), std::move(cpu_stages));
  EXPECT_TRUE(cpu->DeviceKvShards().empty());
  EXPECT_EQ(cpu->CopyKvFromDevice(sources, {3, 4}, {7, 8}).status().code(),
            absl::StatusCode::kUnimplemented);
}

INSTANTIATE_TEST_SUITE_P(Models, PipelineBackendTest, ::testing::Values("tiny", "tiny-llama"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) c = c == '-' ? '_' : c;
                           return name;
                         });

}  // namespace
}  // namespace troupe::serving::engine
