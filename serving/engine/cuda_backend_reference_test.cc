// The CUDA backend's reference against CpuBackend (LibTorch), on the CPU: the GPU test trusts
// the reference because this test holds.
#include "serving/engine/cuda_backend_reference.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "serving/engine/cpu_backend.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"

namespace troupe::serving::engine {
namespace {

// Both sides are fp32 with different summation orders (MKL against double loops).
constexpr double kTolerance = 1e-4;

std::vector<model::ModelConfig> AllModels() {
  std::vector<model::ModelConfig> models = {*model::ModelPreset("tiny"),
                                            *model::ModelPreset("tiny-llama")};
  for (const model::ModelConfig& config : CudaTestModels()) models.push_back(config);
  return models;
}

std::vector<float> AsFloats(const std::vector<uint8_t>& bytes) {
  std::vector<float> values(bytes.size() / sizeof(float));
  std::memcpy(values.data(), bytes.data(), bytes.size());
  return values;
}

class ReferenceTest : public ::testing::TestWithParam<model::ModelConfig> {};

TEST_P(ReferenceTest, ComputesWhatCpuBackendComputes) {
  const model::ModelConfig& config = GetParam();
  std::unique_ptr<model::WeightSource> weights = model::RandomWeights(/*seed=*/7);
  absl::StatusOr<std::unique_ptr<ForwardBackend>> cpu =
      CreateCpuBackend(config, *weights, CpuBackendOptions{kTestScriptBlocks});
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  absl::StatusOr<std::unique_ptr<ForwardBackend>> reference =
      CreateReferenceBackend(config, *weights, kTestScriptBlocks);
  ASSERT_TRUE(reference.ok()) << reference.status();
  for (const ScriptStep& step : TestScript(config.vocab_size)) {
    absl::StatusOr<std::vector<std::vector<float>>> expected = (*cpu)->Forward(step.batch);
    absl::StatusOr<std::vector<std::vector<float>>> actual = (*reference)->Forward(step.batch);
    ASSERT_TRUE(expected.ok()) << expected.status();
    ASSERT_TRUE(actual.ok()) << actual.status();
    ASSERT_EQ(actual->size(), step.batch.size());
    for (size_t s = 0; s < step.batch.size(); ++s) {
      EXPECT_LT(RelativeError((*actual)[s], (*expected)[s]), kTolerance)
          << config.name << ", " << step.what << ", sequence " << step.batch[s].seq_id;
    }
  }
  std::vector<int32_t> all_blocks;
  for (int b = 0; b < kTestScriptBlocks; ++b) all_blocks.push_back(b);
  absl::StatusOr<std::vector<uint8_t>> cpu_kv = (*cpu)->ExportKv(all_blocks, {});
  absl::StatusOr<std::vector<uint8_t>> reference_kv = (*reference)->ExportKv(all_blocks, {});
  ASSERT_TRUE(cpu_kv.ok()) << cpu_kv.status();
  ASSERT_TRUE(reference_kv.ok()) << reference_kv.status();
  ASSERT_EQ(cpu_kv->size(), reference_kv->size());
  EXPECT_LT(RelativeError(AsFloats(*reference_kv), AsFloats(*cpu_kv)), kTolerance) << config.name;

  // A head and layer range moves the same bytes as CpuBackend's, and ImportKv places them alike.
  const KvRange range{config.num_layers - 1, config.num_layers, config.num_kv_heads - 1, -1};
  const std::vector<int32_t> some = {30, 2, 45};
  absl::StatusOr<std::vector<uint8_t>> cpu_part = (*cpu)->ExportKv(some, range);
  absl::StatusOr<std::vector<uint8_t>> reference_part = (*reference)->ExportKv(some, range);
  ASSERT_TRUE(cpu_part.ok() && reference_part.ok());
  EXPECT_LT(RelativeError(AsFloats(*reference_part), AsFloats(*cpu_part)), kTolerance);
  absl::StatusOr<std::unique_ptr<ForwardBackend>> fresh =
      CreateReferenceBackend(config, *weights, kTestScriptBlocks);
  ASSERT_TRUE(fresh.ok());
  ASSERT_TRUE((*fresh)->ImportKv(some, range, *cpu_part).ok());
  absl::StatusOr<std::vector<uint8_t>> back = (*fresh)->ExportKv(some, range);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, *cpu_part);
  EXPECT_FALSE((*fresh)->ImportKv({kTestScriptBlocks}, range, *cpu_part).ok());
  EXPECT_FALSE((*fresh)->ExportKv({-1}, {}).ok());
}

INSTANTIATE_TEST_SUITE_P(Models, ReferenceTest, ::testing::ValuesIn(AllModels()),
                         [](const ::testing::TestParamInfo<model::ModelConfig>& info) {
                           std::string name = info.param.name;
                           for (char& c : name) {
                             if (c == '-') c = '_';
                           }
                           return name;
                         });

TEST(RoundedWeightsTest, GivesTheDTypesValuesAsFloats) {
  std::unique_ptr<model::WeightSource> weights = model::RandomWeights(/*seed=*/3);
  const model::ModelConfig config = *model::ModelPreset("tiny");
  const model::TensorSpec spec = model::ExpectedTensors(config)[0];
  for (gpu::DType dtype : {gpu::DType::kFloat16, gpu::DType::kBFloat16}) {
    std::unique_ptr<model::WeightSource> rounded = RoundedWeights(*weights, dtype);
    absl::StatusOr<std::vector<uint8_t>> narrow = weights->Load(spec, dtype, 0, 1);
    absl::StatusOr<std::vector<uint8_t>> wide = rounded->Load(spec, gpu::DType::kFloat32, 0, 1);
    ASSERT_TRUE(narrow.ok() && wide.ok());
    const std::vector<float> values = AsFloats(*wide);
    ASSERT_EQ(values.size() * 2, narrow->size());
    for (size_t i = 0; i < values.size(); i += 97) {
      EXPECT_EQ(values[i], gpu::ToFloat(dtype, narrow->data() + 2 * i)) << i;
    }
  }
}

}  // namespace
}  // namespace troupe::serving::engine
