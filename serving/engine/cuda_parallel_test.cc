// Tensor and pipeline parallelism of the CUDA backend on real GPUs, against the one-GPU backend
// and the plain C++ reference (cuda_backend_reference.h), over the test models in fp16 and bf16
// (made three layers deep, so that three-stage pipelines split them):
//   - tensor_parallel = 2 with both ranks on cuda:0 (the in-process collective) agrees with the
//     one-GPU backend and the reference to fp16/bf16 precision, over prefill, decode, mixed and
//     chunked steps; so does tp = 2 x pp = 2;
//   - pipelines of 2 and 3 stages on cuda:0 are bit-exact with the one-GPU backend without
//     micro-batches (eager, and with CUDA graphs), and agree to precision with them;
//   - greedy tokens through the ContinuousBatcher equal the one-GPU backend's;
//   - KV exported from a tp = 2 backend or a pipeline imports into a one-GPU backend, whole or in
//     head and layer pieces, and decoding goes on the same;
//   - bad configurations are errors naming the parameter;
//   - with two GPUs, tp = 2 across them through NCCL (skipped, saying why, with one).
// Every comparison prints its numbers.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "actors/test_runtime.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gpu/device.h"
#include "gpu/dtype.h"
#include "gtest/gtest.h"
#include "serving/engine/continuous_batcher.h"
#include "serving/engine/cuda_backend.h"
#include "serving/engine/cuda_backend_reference.h"
#include "serving/engine/cuda_test_util.h"
#include "serving/engine/cuda_parallel_plan.h"
#include "serving/engine/pipeline_backend.h"
#include "serving/kv/block_manager.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"

namespace troupe::serving::engine {
namespace {

using gpu::DType;

// As cuda_backend_test: ||a - b|| / ||b|| of logits and KV. A tensor-parallel step rounds each
// rank's partial projections to fp16/bf16 before the all-reduce, one rounding more per
// projection than the one-GPU backend: well inside this.
constexpr double kTolerance = 2e-2;
constexpr uint64_t kWeightSeed = 7;
constexpr int kLayers = 3;


// CountDifferent is how many floats of a and b differ in their bits (a.size() if sizes differ).
size_t CountDifferent(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return std::max(a.size(), b.size());
  size_t differ = 0;
  for (size_t i = 0; i < a.size(); ++i) differ += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return differ;
}

class CudaParallelTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (gpu::Device::Count() == 0) GTEST_SKIP() << "no CUDA device";
    runtime_ = actors::StartTestRuntime(2);
    config_ = GetParam().config;
    weights_ = model::RandomWeights(kWeightSeed);
    rounded_ = RoundedWeights(*weights_, GetParam().dtype);
  }

  // Small step limits, as cuda_backend_test: the script's larger steps grow the scratch memory.
  CudaBackendOptions Options() const {
    CudaBackendOptions options;
    options.dtype = GetParam().dtype;
    options.num_kv_blocks = kTestScriptBlocks;
    options.max_step_tokens = 64;
    options.max_step_sequences = 4;
    return options;
  }

  std::unique_ptr<ForwardBackend> Reference() {
    absl::StatusOr<std::unique_ptr<ForwardBackend>> backend =
        CreateReferenceBackend(config_, *rounded_, kTestScriptBlocks);
    EXPECT_TRUE(backend.ok()) << backend.status();
    return backend.ok() ? *std::move(backend) : nullptr;
  }

  std::unique_ptr<ForwardBackend> Whole() {
    absl::StatusOr<std::unique_ptr<ForwardBackend>> backend =
        CreateCudaBackend(config_, *weights_, Options());
    EXPECT_TRUE(backend.ok()) << backend.status();
    return backend.ok() ? *std::move(backend) : nullptr;
  }

  // TensorParallel puts rank r on devices[r].
  std::unique_ptr<ForwardBackend> TensorParallel(const std::vector<int>& devices) {
    CudaBackendOptions options = Options();
    options.tensor_parallel = static_cast<int>(devices.size());
    options.tensor_parallel_devices = devices;
    absl::StatusOr<std::unique_ptr<ForwardBackend>> backend =
        CreateCudaBackend(config_, *weights_, options);
    EXPECT_TRUE(backend.ok()) << backend.status();
    return backend.ok() ? *std::move(backend) : nullptr;
  }

  // Pipeline of `stages` stages of `tp` ranks each, all on cuda:0 (the plan for a one-GPU host).
  std::unique_ptr<ForwardBackend> Pipeline(int stages, int tp, int micro_batches,
                                           bool cuda_graphs = false) {
    absl::StatusOr<CudaParallelPlan> plan =
        PlanCudaParallelism(config_, stages, tp, /*first_device=*/0, /*device_count=*/1);
    EXPECT_TRUE(plan.ok()) << plan.status();
    if (!plan.ok()) return nullptr;
    CudaBackendOptions options = Options();
    options.cuda_graphs = cuda_graphs;
    absl::StatusOr<std::vector<std::unique_ptr<StageBackend>>> made =
        CreateCudaStages(config_, *weights_, options, *plan);
    EXPECT_TRUE(made.ok()) << made.status();
    if (!made.ok()) return nullptr;
    PipelineOptions pipeline;
    pipeline.micro_batches = micro_batches;
    absl::StatusOr<std::unique_ptr<ForwardBackend>> backend =
        CreatePipelineBackend(runtime_->system(), *std::move(made), pipeline);
    EXPECT_TRUE(backend.ok()) << backend.status();
    return backend.ok() ? *std::move(backend) : nullptr;
  }

  // RunScript runs TestScript on `candidate` and `baseline` in step and compares every
  // sequence's logits: bit for bit (exact) or within kTolerance.
  void RunScript(ForwardBackend& candidate, ForwardBackend& baseline, bool exact,
                 const std::string& what) {
    std::printf("%s %s, %s: step | seq | rel err | differing logits | argmax\n",
                config_.name.c_str(), gpu::DTypeName(GetParam().dtype), what.c_str());
    for (const ScriptStep& step : TestScript(config_.vocab_size)) {
      absl::StatusOr<std::vector<std::vector<float>>> expected = baseline.Forward(step.batch);
      absl::StatusOr<std::vector<std::vector<float>>> actual = candidate.Forward(step.batch);
      ASSERT_TRUE(expected.ok()) << step.what << ": " << expected.status();
      ASSERT_TRUE(actual.ok()) << what << ", " << step.what << ": " << actual.status();
      ASSERT_EQ(actual->size(), step.batch.size());
      for (size_t s = 0; s < step.batch.size(); ++s) {
        const double error = RelativeError((*actual)[s], (*expected)[s]);
        const size_t differ = CountDifferent((*actual)[s], (*expected)[s]);
        std::printf("  %-62s | %d | %.2e | %zu | %d/%d\n", step.what.c_str(),
                    static_cast<int>(step.batch[s].seq_id), error, differ,
                    Argmax((*expected)[s]), Argmax((*actual)[s]));
        if (exact) {
          EXPECT_EQ(differ, 0u) << what << ", step \"" << step.what << "\", sequence "
                                << step.batch[s].seq_id << ": relative error " << error;
        } else {
          EXPECT_LT(error, kTolerance) << what << ", step \"" << step.what << "\", sequence "
                                       << step.batch[s].seq_id;
        }
      }
    }
  }

  // CompareCaches compares every block of two backends' caches (both of this dtype).
  void CompareCaches(const ForwardBackend& candidate, const ForwardBackend& baseline, bool exact,
                     const std::string& what) {
    absl::StatusOr<std::vector<uint8_t>> a = candidate.ExportKv(AllBlocks(), {});
    absl::StatusOr<std::vector<uint8_t>> b = baseline.ExportKv(AllBlocks(), {});
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    ASSERT_EQ(a->size(), b->size());
    const double error =
        RelativeError(AsFloats(*a, candidate.kv_dtype()), AsFloats(*b, baseline.kv_dtype()));
    std::printf("%s: KV cache relative error %.2e\n", what.c_str(), error);
    if (exact) {
      EXPECT_TRUE(*a == *b) << what << ": the KV caches differ (relative error " << error << ")";
    } else {
      EXPECT_LT(error, kTolerance) << what << ": the KV caches differ";
    }
  }

  std::unique_ptr<actors::Runtime> runtime_;
  model::ModelConfig config_;
  std::unique_ptr<model::WeightSource> weights_;
  std::unique_ptr<model::WeightSource> rounded_;
};

TEST_P(CudaParallelTest, TensorParallelMatchesOneGpuAndTheReference) {
  std::unique_ptr<ForwardBackend> whole = Whole();
  std::unique_ptr<ForwardBackend> tp = TensorParallel({0, 0});
  ASSERT_TRUE(whole != nullptr && tp != nullptr);
  EXPECT_EQ(tp->kv_dtype(), GetParam().dtype);
  EXPECT_EQ(tp->num_kv_blocks(), kTestScriptBlocks);
  EXPECT_FALSE(GetCudaGraphStats(*tp).ok()) << "graphs are the one-GPU backend's";
  RunScript(*tp, *whole, /*exact=*/false, "tp 2 on cuda:0 vs one GPU");
  CompareCaches(*tp, *whole, /*exact=*/false, "tp 2 vs one GPU");

  std::unique_ptr<ForwardBackend> reference = Reference();
  std::unique_ptr<ForwardBackend> tp_again = TensorParallel({0, 0});
  ASSERT_TRUE(reference != nullptr && tp_again != nullptr);
  RunScript(*tp_again, *reference, /*exact=*/false, "tp 2 on cuda:0 vs the reference");

  // tp 2 in each of 2 stages: the two kinds of parallelism together.
  std::unique_ptr<ForwardBackend> both = Pipeline(2, 2, /*micro_batches=*/0);
  std::unique_ptr<ForwardBackend> whole_again = Whole();
  ASSERT_TRUE(both != nullptr && whole_again != nullptr);
  RunScript(*both, *whole_again, /*exact=*/false, "pp 2 x tp 2 vs one GPU");
  CompareCaches(*both, *whole_again, /*exact=*/false, "pp 2 x tp 2 vs one GPU");
}

TEST_P(CudaParallelTest, PipelinesAreBitExactWithOneGpu) {
  for (int stages : {2, 3}) {
    std::unique_ptr<ForwardBackend> whole = Whole();
    std::unique_ptr<ForwardBackend> pipeline = Pipeline(stages, 1, /*micro_batches=*/1);
    ASSERT_TRUE(whole != nullptr && pipeline != nullptr);
    const std::string what = absl::StrCat("pp ", stages, " (one micro-batch) vs one GPU");
    RunScript(*pipeline, *whole, /*exact=*/true, what);
    CompareCaches(*pipeline, *whole, /*exact=*/true, what);
  }
  // Stages replay CUDA graphs of their decode steps like the whole model: still bit-exact.
  {
    std::unique_ptr<ForwardBackend> whole = Whole();
    std::unique_ptr<ForwardBackend> pipeline =
        Pipeline(2, 1, /*micro_batches=*/1, /*cuda_graphs=*/true);
    ASSERT_TRUE(whole != nullptr && pipeline != nullptr);
    RunScript(*pipeline, *whole, /*exact=*/true, "pp 2 with CUDA graphs vs one GPU, eager");
    // The script's decode steps again, now that their graphs are captured.
    RunScript(*pipeline, *whole, /*exact=*/true, "pp 2 with CUDA graphs, replayed");
  }
  // Micro-batches split a step's GEMMs: equal to precision.
  std::unique_ptr<ForwardBackend> whole = Whole();
  std::unique_ptr<ForwardBackend> pipeline = Pipeline(3, 1, /*micro_batches=*/0);
  ASSERT_TRUE(whole != nullptr && pipeline != nullptr);
  RunScript(*pipeline, *whole, /*exact=*/false, "pp 3 (3 micro-batches) vs one GPU");
}

// Greedy decoding of `prompt` alone (blocks 0, 1, ...): its tokens and smallest margin.
// Greedy tokens of tp 2, pp 2 and pp 2 x tp 2 through the ContinuousBatcher (whole prompts and
// chunked prefill) equal the one-GPU backend's. The prompts keep a margin (cuda_backend_test's
// reasoning: 0.02 for fp16, 0.05 for bf16) on the one-GPU backend, so that the parallel
// backends' different roundings cannot flip a near tie.
TEST_P(CudaParallelTest, GreedyTokensThroughTheBatcherMatchOneGpu) {
  constexpr int kRequests = 4;
  constexpr int kNewTokens = 16;
  constexpr int kCandidates = 1000;
  const double min_margin = GetParam().dtype == DType::kFloat16 ? 0.02 : 0.05;
  std::unique_ptr<ForwardBackend> chooser = Whole();
  ASSERT_NE(chooser, nullptr);
  std::vector<GenerationRequest> requests;
  uint64_t state = 0xabcdef;
  for (int candidate = 0; candidate < kCandidates && requests.size() < kRequests; ++candidate) {
    std::vector<int32_t> prompt;
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const int length = 3 + static_cast<int>((state >> 33) % 40);
    for (int i = 0; i < length; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      prompt.push_back(static_cast<int32_t>((state >> 33) % config_.vocab_size));
    }
    if (GreedyAlone(*chooser, prompt, kNewTokens, min_margin).min_margin < min_margin) continue;
    requests.push_back({100 + candidate, prompt, kNewTokens, {}});
  }
  ASSERT_EQ(requests.size(), static_cast<size_t>(kRequests))
      << "fewer than " << kRequests << " of " << kCandidates
      << " seeded prompts keep a greedy margin of " << min_margin << " on one GPU";
  chooser.reset();

  BatcherOptions whole_prompts;
  BatcherOptions chunked;
  chunked.chunked_prefill = true;
  chunked.max_batch_tokens = 20;
  for (const auto& [mode, options] : std::vector<std::pair<std::string, BatcherOptions>>{
           {"whole prompts", whole_prompts}, {"chunked prefill", chunked}}) {
    std::unique_ptr<ForwardBackend> whole = Whole();
    ASSERT_NE(whole, nullptr);
    const std::map<int64_t, std::vector<int32_t>> want = Generate(*whole, requests, options);
    whole.reset();
    for (int kind = 0; kind < 3; ++kind) {
      const std::string name = kind == 0 ? "tp 2" : kind == 1 ? "pp 2" : "pp 2 x tp 2";
      std::unique_ptr<ForwardBackend> parallel =
          kind == 0 ? TensorParallel({0, 0}) : Pipeline(2, kind == 1 ? 1 : 2, 0);
      ASSERT_NE(parallel, nullptr);
      std::map<int64_t, std::vector<int32_t>> got = Generate(*parallel, requests, options);
      for (const GenerationRequest& request : requests) {
        std::printf("%s, %s, request %d: %s\n", name.c_str(), mode.c_str(),
                    static_cast<int>(request.id), absl::StrJoin(got[request.id], " ").c_str());
        EXPECT_EQ(got[request.id], want.at(request.id))
            << name << ", " << mode << ", request " << request.id
            << "\n  one GPU: " << absl::StrJoin(want.at(request.id), " ")
            << "\n  " << name << ": " << absl::StrJoin(got[request.id], " ");
      }
    }
  }
}

// KV written by a tp 2 backend (or a pipeline) moves into a one-GPU backend: all of it at once,
// or piece by piece (one layer and one kv head at a time, as transfers between instances of
// other degrees ask), with the same bytes; decoding goes on from it as on the tp 2 backend.
TEST_P(CudaParallelTest, KvMovesBetweenTensorParallelPipelineAndOneGpu) {
  std::unique_ptr<ForwardBackend> tp = TensorParallel({0, 0});
  std::unique_ptr<ForwardBackend> pipeline = Pipeline(3, 1, /*micro_batches=*/1);
  std::unique_ptr<ForwardBackend> whole = Whole();
  ASSERT_TRUE(tp != nullptr && pipeline != nullptr && whole != nullptr);
  for (const ScriptStep& step : TestScript(config_.vocab_size)) {
    for (ForwardBackend* backend : {tp.get(), pipeline.get(), whole.get()}) {
      absl::StatusOr<std::vector<std::vector<float>>> done = backend->Forward(step.batch);
      ASSERT_TRUE(done.ok()) << step.what << ": " << done.status();
    }
  }
  // Sequence 4's blocks (306 tokens), and a decode step on them.
  std::vector<int32_t> blocks;
  for (int b = 59; b >= 40; --b) blocks.push_back(b);
  const std::vector<SequenceStep> decode = {{4, {123}, 306, blocks}};
  const DType dtype = GetParam().dtype;

  // tp 2 -> one GPU, at once.
  absl::StatusOr<std::vector<uint8_t>> from_tp = tp->ExportKv(blocks, {});
  ASSERT_TRUE(from_tp.ok()) << from_tp.status();
  ASSERT_EQ(from_tp->size(), KvBytes(config_, dtype, blocks.size(), *KvRangeOf({}, config_)));
  std::unique_ptr<ForwardBackend> at_once = Whole();
  ASSERT_NE(at_once, nullptr);
  ASSERT_TRUE(at_once->ImportKv(blocks, {}, *from_tp).ok());
  absl::StatusOr<std::vector<uint8_t>> round_trip = at_once->ExportKv(blocks, {});
  ASSERT_TRUE(round_trip.ok());
  EXPECT_TRUE(*round_trip == *from_tp) << "the one-GPU cache does not hold what tp 2 exported";

  // tp 2 -> one GPU, one layer and one kv head at a time.
  std::unique_ptr<ForwardBackend> in_pieces = Whole();
  ASSERT_NE(in_pieces, nullptr);
  for (int layer = 0; layer < config_.num_layers; ++layer) {
    for (int head = 0; head < config_.num_kv_heads; ++head) {
      const KvRange piece{layer, layer + 1, head, head + 1};
      absl::StatusOr<std::vector<uint8_t>> bytes = tp->ExportKv(blocks, piece);
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      absl::Status imported = in_pieces->ImportKv(blocks, piece, *bytes);
      ASSERT_TRUE(imported.ok()) << imported;
    }
  }
  // A range across both ranks' heads in a layer range, too.
  const KvRange across{1, config_.num_layers, 0, config_.num_kv_heads};
  absl::StatusOr<std::vector<uint8_t>> across_bytes = tp->ExportKv(blocks, across);
  absl::StatusOr<std::vector<uint8_t>> across_whole = at_once->ExportKv(blocks, across);
  ASSERT_TRUE(across_bytes.ok() && across_whole.ok());
  EXPECT_TRUE(*across_bytes == *across_whole);
  absl::StatusOr<std::vector<uint8_t>> pieces_back = in_pieces->ExportKv(blocks, {});
  ASSERT_TRUE(pieces_back.ok());
  EXPECT_TRUE(*pieces_back == *from_tp) << "piece by piece differs from all at once";

  // Decoding goes on: bit for bit on the two one-GPU receivers, to precision against tp 2.
  absl::StatusOr<std::vector<std::vector<float>>> on_tp = tp->Forward(decode);
  absl::StatusOr<std::vector<std::vector<float>>> on_at_once = at_once->Forward(decode);
  absl::StatusOr<std::vector<std::vector<float>>> on_pieces = in_pieces->Forward(decode);
  ASSERT_TRUE(on_tp.ok() && on_at_once.ok() && on_pieces.ok());
  EXPECT_EQ(CountDifferent((*on_at_once)[0], (*on_pieces)[0]), 0u);
  const double error = RelativeError((*on_at_once)[0], (*on_tp)[0]);
  std::printf("decode after tp 2 -> one GPU KV transfer: relative error %.2e\n", error);
  EXPECT_LT(error, kTolerance);

  // One GPU -> tp 2: the whole model's KV, piece by piece into a fresh tp 2 backend.
  absl::StatusOr<std::vector<uint8_t>> from_whole = whole->ExportKv(blocks, {});
  ASSERT_TRUE(from_whole.ok());
  std::unique_ptr<ForwardBackend> tp_receiver = TensorParallel({0, 0});
  ASSERT_NE(tp_receiver, nullptr);
  ASSERT_TRUE(tp_receiver->ImportKv(blocks, {}, *from_whole).ok());
  absl::StatusOr<std::vector<uint8_t>> tp_back = tp_receiver->ExportKv(blocks, {});
  ASSERT_TRUE(tp_back.ok());
  EXPECT_TRUE(*tp_back == *from_whole);

  // Pipeline -> one GPU: a pipeline computes the whole model's bits, so its KV is the same.
  absl::StatusOr<std::vector<uint8_t>> from_pipeline = pipeline->ExportKv(blocks, {});
  ASSERT_TRUE(from_pipeline.ok()) << from_pipeline.status();
  EXPECT_TRUE(*from_pipeline == *from_whole);
  std::unique_ptr<ForwardBackend> pipeline_receiver = Pipeline(2, 2, /*micro_batches=*/1);
  ASSERT_NE(pipeline_receiver, nullptr);
  ASSERT_TRUE(pipeline_receiver->ImportKv(blocks, {}, *from_pipeline).ok());
  absl::StatusOr<std::vector<uint8_t>> pipeline_back = pipeline_receiver->ExportKv(blocks, {});
  ASSERT_TRUE(pipeline_back.ok());
  EXPECT_TRUE(*pipeline_back == *from_pipeline) << "pp 3 -> pp 2 x tp 2 changed the bytes";

  // Device shards: tp 2 has one per rank (its kv heads), pp 3 one per stage (its layers).
  std::printf("device shards: tp 2 %zu, pp 3 %zu, pp 2 x tp 2 %zu\n",
              tp->DeviceKvShards().size(), pipeline->DeviceKvShards().size(),
              pipeline_receiver->DeviceKvShards().size());
  EXPECT_EQ(tp->DeviceKvShards().size(), 2u);
  EXPECT_EQ(pipeline->DeviceKvShards().size(), 3u);
  EXPECT_EQ(pipeline_receiver->DeviceKvShards().size(), 4u);

  // Device copies (what the in-process and CUDA IPC transports do): each receiver copies from
  // the source's shards only the layers and heads its own shards share, into other blocks.
  std::vector<int32_t> other_blocks;
  for (int b = 0; b < static_cast<int>(blocks.size()); ++b) other_blocks.push_back(b);
  const auto device_copy = [&](ForwardBackend& from, ForwardBackend& to, const std::string& what) {
    absl::StatusOr<std::unique_ptr<PendingKvCopy>> copy =
        to.CopyKvFromDevice(from.DeviceKvShards(), blocks, other_blocks);
    ASSERT_TRUE(copy.ok()) << what << ": " << copy.status();
    ASSERT_TRUE((*copy)->Wait().ok()) << what;
    absl::StatusOr<std::vector<uint8_t>> sent = from.ExportKv(blocks, {});
    absl::StatusOr<std::vector<uint8_t>> arrived = to.ExportKv(other_blocks, {});
    ASSERT_TRUE(sent.ok() && arrived.ok()) << what;
    EXPECT_TRUE(*sent == *arrived) << what << ": the device copy changed the bytes";
  };
  std::unique_ptr<ForwardBackend> whole_by_device = Whole();
  ASSERT_NE(whole_by_device, nullptr);
  device_copy(*tp, *whole_by_device, "tp 2 -> one GPU");
  std::unique_ptr<ForwardBackend> tp_by_device = TensorParallel({0, 0});
  ASSERT_NE(tp_by_device, nullptr);
  device_copy(*whole, *tp_by_device, "one GPU -> tp 2");
  std::unique_ptr<ForwardBackend> pipeline_by_device = Pipeline(2, 2, /*micro_batches=*/1);
  ASSERT_NE(pipeline_by_device, nullptr);
  device_copy(*pipeline, *pipeline_by_device, "pp 3 -> pp 2 x tp 2");
  // A source without some of the receiver's heads is refused, and nothing is copied.
  std::vector<DeviceKvShard> one_rank = tp->DeviceKvShards();
  one_rank.pop_back();
  EXPECT_FALSE(whole_by_device->CopyKvFromDevice(one_rank, blocks, other_blocks).ok());

  // Refused without writing: a bad block, a byte count that does not match.
  absl::StatusOr<std::vector<uint8_t>> before = tp->ExportKv(AllBlocks(), {});
  ASSERT_TRUE(before.ok());
  EXPECT_FALSE(tp->ImportKv({kTestScriptBlocks}, {}, *from_tp).ok());
  EXPECT_FALSE(tp->ImportKv(blocks, {}, std::vector<uint8_t>(from_tp->size() - 2, 0xff)).ok());
  EXPECT_FALSE(tp->ExportKv({-1}, {}).ok());
  absl::StatusOr<std::vector<uint8_t>> after = tp->ExportKv(AllBlocks(), {});
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(*after == *before) << "a refused call changed the tp 2 cache";
}

INSTANTIATE_TEST_SUITE_P(Models, CudaParallelTest, ::testing::ValuesIn(AllCases(kLayers)),
                         CaseName);

TEST(CudaParallelOptionsTest, BadConfigurationsNameTheParameter) {
  if (gpu::Device::Count() == 0) GTEST_SKIP() << "no CUDA device";
  std::unique_ptr<model::WeightSource> weights = model::RandomWeights(kWeightSeed);
  const model::ModelConfig config = CudaTestModels()[0];  // 2 heads, 2 kv heads, 2 layers
  const auto error = [&](const CudaBackendOptions& options) {
    absl::StatusOr<std::unique_ptr<ForwardBackend>> backend =
        CreateCudaBackend(config, *weights, options);
    EXPECT_FALSE(backend.ok());
    return backend.ok() ? std::string() : std::string(backend.status().message());
  };
  CudaBackendOptions options;
  options.num_kv_blocks = 16;

  CudaBackendOptions three = options;
  three.tensor_parallel = 3;
  EXPECT_TRUE(absl::StrContains(error(three), "tensor_parallel is 3")) << error(three);
  EXPECT_TRUE(absl::StrContains(error(three), "use one of 1, 2")) << error(three);

  CudaBackendOptions listed = options;
  listed.tensor_parallel = 2;
  listed.tensor_parallel_devices = {0};
  EXPECT_TRUE(absl::StrContains(error(listed), "tensor_parallel_devices names 1 devices"));

  CudaBackendOptions graphs = options;
  graphs.tensor_parallel = 2;
  graphs.cuda_graphs = true;
  EXPECT_TRUE(absl::StrContains(error(graphs), "cuda_graphs with tensor_parallel 2"));

  CudaBackendOptions far = options;
  far.device = gpu::Device::Count();
  EXPECT_TRUE(absl::StrContains(error(far), absl::StrCat("device is cuda:", far.device)))
      << error(far);
  CudaBackendOptions far_rank = options;
  far_rank.tensor_parallel = 2;
  far_rank.tensor_parallel_devices = {0, gpu::Device::Count()};
  EXPECT_TRUE(absl::StrContains(error(far_rank), "tensor_parallel_devices[1]"))
      << error(far_rank);

  // Stages: a layer range outside the model; more stages than layers.
  CudaBackendOptions stage = options;
  stage.layer_begin = 1;
  stage.layer_end = config.num_layers + 1;
  absl::StatusOr<std::unique_ptr<StageBackend>> outside =
      CreateCudaStage(config, *weights, stage);
  ASSERT_FALSE(outside.ok());
  EXPECT_TRUE(absl::StrContains(outside.status().message(), "layers [1, 3)"))
      << outside.status();
  absl::StatusOr<CudaParallelPlan> deep = PlanCudaParallelism(config, 3, 1, 0, 1);
  ASSERT_FALSE(deep.ok());
  EXPECT_TRUE(absl::StrContains(deep.status().message(), "pipeline_stages is 3")) << deep.status();

  // A good stage by itself: layers [1, 2) of 2, the last, on cuda:0.
  stage.layer_end = 2;
  absl::StatusOr<std::unique_ptr<StageBackend>> good = CreateCudaStage(config, *weights, stage);
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ((*good)->layer_begin(), 1);
  EXPECT_TRUE((*good)->last());
  EXPECT_EQ((*good)->num_kv_blocks(), 16);
  // It wants the previous stage's hidden states.
  absl::StatusOr<std::vector<float>> no_hidden = (*good)->Run({{1, {5, 6}, 0, {0}}}, {});
  EXPECT_FALSE(no_hidden.ok());
  EXPECT_TRUE(absl::StrContains(no_hidden.status().message(), "hidden values"))
      << no_hidden.status();
}

// With two GPUs the ranks get one each, and the all-reduce is NCCL's.
TEST_P(CudaParallelTest, TensorParallelAcrossTwoGpusThroughNccl) {
  if (gpu::Device::Count() < 2) {
    GTEST_SKIP() << "this host has " << gpu::Device::Count()
                 << " GPU; tensor parallelism through NCCL needs two (one rank per GPU)";
  }
  std::unique_ptr<ForwardBackend> whole = Whole();
  std::unique_ptr<ForwardBackend> across = TensorParallel({0, 1});
  ASSERT_TRUE(whole != nullptr && across != nullptr);
  RunScript(*across, *whole, /*exact=*/false, "tp 2 on cuda:0 and cuda:1 (NCCL) vs one GPU");
  CompareCaches(*across, *whole, /*exact=*/false, "tp 2 over NCCL vs one GPU");
  // NCCL's all-reduce and the in-process one add the same two partials per element.
  std::unique_ptr<ForwardBackend> shared = TensorParallel({0, 0});
  std::unique_ptr<ForwardBackend> across_again = TensorParallel({0, 1});
  ASSERT_TRUE(shared != nullptr && across_again != nullptr);
  RunScript(*across_again, *shared, /*exact=*/false, "tp 2 over NCCL vs tp 2 in-process");
  // A pipeline whose two stages sit on two GPUs.
  absl::StatusOr<CudaParallelPlan> plan = PlanCudaParallelism(config_, 2, 1, 0, 2);
  ASSERT_TRUE(plan.ok()) << plan.status();
  absl::StatusOr<std::vector<std::unique_ptr<StageBackend>>> stages =
      CreateCudaStages(config_, *weights_, Options(), *plan);
  ASSERT_TRUE(stages.ok()) << stages.status();
  PipelineOptions one_batch;
  one_batch.micro_batches = 1;
  absl::StatusOr<std::unique_ptr<ForwardBackend>> two_gpus =
      CreatePipelineBackend(runtime_->system(), *std::move(stages), one_batch);
  ASSERT_TRUE(two_gpus.ok()) << two_gpus.status();
  std::unique_ptr<ForwardBackend> whole_again = Whole();
  ASSERT_NE(whole_again, nullptr);
  RunScript(**two_gpus, *whole_again, /*exact=*/true, "pp 2 on cuda:0 and cuda:1 vs one GPU");
}

}  // namespace
}  // namespace troupe::serving::engine
