#include "serving/model/weights.h"

#include <sys/stat.h>

#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "serving/model/safetensors.h"

namespace troupe::serving::model {
namespace {

using ::testing::HasSubstr;

std::string TempDir(const std::string& name) {
  const std::string path = std::string(::testing::TempDir()) + "/" + name;
  mkdir(path.c_str(), 0755);
  return path;
}

std::vector<float> ToFloats(const std::vector<uint8_t>& bytes, gpu::DType dtype) {
  std::vector<float> values(bytes.size() / gpu::SizeOf(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    values[i] = gpu::ToFloat(dtype, bytes.data() + i * gpu::SizeOf(dtype));
  }
  return values;
}

// A checkpoint holding every tensor of the tiny model with element i of each tensor = i (as
// bf16, exact for small integers), split over two files as Hugging Face shards them.
std::string WriteTinyCheckpoint(const ModelConfig& config, const std::string& dir,
                                const std::string& skip = "", const std::string& reshape = "") {
  std::vector<TensorToWrite> first, second;
  const std::vector<TensorSpec> specs = ExpectedTensors(config);
  for (size_t t = 0; t < specs.size(); ++t) {
    TensorSpec spec = specs[t];
    if (spec.name == skip) continue;
    if (spec.name == reshape) spec.shape.back() += 1;
    int64_t n = 1;
    for (int64_t d : spec.shape) n *= d;
    std::vector<uint8_t> bytes(n * 2);
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t bits = gpu::FloatToBFloat16(static_cast<float>(i % 256));
      std::memcpy(bytes.data() + 2 * i, &bits, 2);
    }
    (t < specs.size() / 2 ? first : second)
        .push_back({spec.name, TensorDType::kBF16, spec.shape, std::move(bytes)});
  }
  EXPECT_TRUE(WriteSafetensors(dir + "/model-00001-of-00002.safetensors", first).ok());
  EXPECT_TRUE(WriteSafetensors(dir + "/model-00002-of-00002.safetensors", second).ok());
  return dir;
}

const TensorSpec& Find(const std::vector<TensorSpec>& specs, const std::string& name) {
  for (const TensorSpec& spec : specs) {
    if (spec.name == name) return spec;
  }
  ADD_FAILURE() << "no tensor " << name;
  return specs.front();
}

TEST(ExpectedTensorsTest, OptAndLlamaNamesShapesAndSplits) {
  const ModelConfig opt = *ModelPreset("opt-125m");
  const std::vector<TensorSpec> specs = ExpectedTensors(opt);
  EXPECT_EQ(specs.size(), 2 + 12 * 16 + 2u);
  EXPECT_EQ(Find(specs, "model.decoder.embed_positions.weight").shape,
            (std::vector<int64_t>{2050, 768}));
  const TensorSpec& fc1 = Find(specs, "model.decoder.layers.11.fc1.weight");
  EXPECT_EQ(fc1.shape, (std::vector<int64_t>{3072, 768}));
  EXPECT_EQ(fc1.split, Split::kDim0);
  EXPECT_EQ(Find(specs, "model.decoder.layers.0.fc2.weight").split, Split::kDim1);
  EXPECT_EQ(Find(specs, "model.decoder.layers.0.fc2.bias").split, Split::kReplicated);
  EXPECT_EQ(Find(specs, "model.decoder.layers.0.self_attn.q_proj.bias").split, Split::kDim0);
  // Every parameter is listed once: the sum of the shapes is the parameter count.
  int64_t total = 0;
  for (const TensorSpec& spec : specs) {
    int64_t n = 1;
    for (int64_t d : spec.shape) n *= d;
    total += n;
  }
  EXPECT_EQ(total, ParameterCount(opt));

  const ModelConfig llama = *ModelPreset("llama-2-70b");
  const std::vector<TensorSpec> llama_specs = ExpectedTensors(llama);
  EXPECT_EQ(Find(llama_specs, "model.layers.79.self_attn.k_proj.weight").shape,
            (std::vector<int64_t>{1024, 8192}));  // 8 kv heads x 128
  EXPECT_EQ(Find(llama_specs, "lm_head.weight").shape, (std::vector<int64_t>{32000, 8192}));
  total = 0;
  for (const TensorSpec& spec : llama_specs) {
    int64_t n = 1;
    for (int64_t d : spec.shape) n *= d;
    total += n;
  }
  EXPECT_EQ(total, ParameterCount(llama));
}

TEST(ShardShapeTest, SplitsOrSaysWhy) {
  const TensorSpec column{"q", {512, 64}, Split::kDim0};
  EXPECT_EQ(*ShardShape(column, 4), (std::vector<int64_t>{128, 64}));
  const TensorSpec row{"o", {64, 512}, Split::kDim1};
  EXPECT_EQ(*ShardShape(row, 8), (std::vector<int64_t>{64, 64}));
  EXPECT_THAT(ShardShape(column, 3).status().message(),
              HasSubstr("dimension 0 does not split into 3 tensor-parallel shards"));
}

TEST(CheckpointTest, LoadsConvertsAndShards) {
  const ModelConfig tiny = *ModelPreset("tiny");
  const std::string dir = WriteTinyCheckpoint(tiny, TempDir("tiny_ok"));
  absl::StatusOr<std::unique_ptr<WeightSource>> source = OpenCheckpoint(dir);
  ASSERT_TRUE(source.ok()) << source.status();
  EXPECT_THAT((*source)->Describe(), HasSubstr("2 files"));
  const std::vector<TensorSpec> specs = ExpectedTensors(tiny);

  // Whole tensor, bf16 -> fp32: element i is i % 256.
  const TensorSpec& fc1 = Find(specs, "model.decoder.layers.1.fc1.weight");  // [256, 64]
  std::vector<float> full =
      ToFloats(*(*source)->Load(fc1, gpu::DType::kFloat32, 0, 1), gpu::DType::kFloat32);
  ASSERT_EQ(full.size(), 256u * 64u);
  EXPECT_EQ(full[300], 300 % 256);

  // Column-parallel shards are row blocks; row-parallel shards are column blocks; in fp16.
  std::vector<float> rank1 =
      ToFloats(*(*source)->Load(fc1, gpu::DType::kFloat16, 1, 2), gpu::DType::kFloat16);
  ASSERT_EQ(rank1.size(), 128u * 64u);
  EXPECT_EQ(rank1[0], full[128 * 64]);
  const TensorSpec& fc2 = Find(specs, "model.decoder.layers.1.fc2.weight");  // [64, 256]
  std::vector<float> fc2_full =
      ToFloats(*(*source)->Load(fc2, gpu::DType::kFloat32, 0, 1), gpu::DType::kFloat32);
  std::vector<float> fc2_rank3 =
      ToFloats(*(*source)->Load(fc2, gpu::DType::kBFloat16, 3, 4), gpu::DType::kBFloat16);
  ASSERT_EQ(fc2_rank3.size(), 64u * 64u);
  for (int r = 0; r < 64; ++r) {
    for (int c = 0; c < 64; ++c) ASSERT_EQ(fc2_rank3[r * 64 + c], fc2_full[r * 256 + 192 + c]);
  }
}

TEST(CheckpointTest, MissingOrMisshapenTensorsAreNamed) {
  const ModelConfig tiny = *ModelPreset("tiny");
  const std::vector<TensorSpec> specs = ExpectedTensors(tiny);
  const std::string missing_dir =
      WriteTinyCheckpoint(tiny, TempDir("tiny_missing"), "model.decoder.layers.0.fc1.bias");
  std::unique_ptr<WeightSource> missing = *OpenCheckpoint(missing_dir);
  absl::Status status =
      missing->Load(Find(specs, "model.decoder.layers.0.fc1.bias"), gpu::DType::kFloat16, 0, 1)
          .status();
  EXPECT_TRUE(absl::IsNotFound(status));
  EXPECT_THAT(status.message(), HasSubstr("model.decoder.layers.0.fc1.bias (shape [256])"));
  EXPECT_THAT(status.message(), HasSubstr("model-00001-of-00002.safetensors"));

  const std::string bad_dir =
      WriteTinyCheckpoint(tiny, TempDir("tiny_shape"), "", "model.decoder.layers.0.fc1.weight");
  std::unique_ptr<WeightSource> bad = *OpenCheckpoint(bad_dir);
  status = bad->Load(Find(specs, "model.decoder.layers.0.fc1.weight"), gpu::DType::kFloat16, 0, 1)
               .status();
  EXPECT_THAT(status.message(), HasSubstr("has shape [256, 65] but the model config expects "
                                          "[256, 64]"));
  EXPECT_THAT(status.message(), HasSubstr(".safetensors"));

  EXPECT_THAT(OpenCheckpoint("/nonexistent/model").status().message(), HasSubstr("does not exist"));
  EXPECT_THAT(OpenCheckpoint(TempDir("empty_dir")).status().message(),
              HasSubstr("holds no .safetensors file"));
  std::unique_ptr<WeightSource> ok = *OpenCheckpoint(missing_dir);
  EXPECT_THAT(ok->Load(Find(specs, "model.decoder.layers.0.fc1.weight"), gpu::DType::kFloat16, 2, 2)
                  .status()
                  .message(),
              HasSubstr("rank 2 of world 2 is out of range"));
  EXPECT_THAT(ok->Load(Find(specs, "model.decoder.layers.0.fc1.weight"), gpu::DType::kFloat16, 0, 3)
                  .status()
                  .message(),
              HasSubstr("does not split into 3"));
}

TEST(RandomWeightsTest, SeededShardsAreSlicesOfTheFullTensor) {
  const ModelConfig tiny = *ModelPreset("tiny-llama");
  const std::vector<TensorSpec> specs = ExpectedTensors(tiny);
  std::unique_ptr<WeightSource> a = RandomWeights(7);
  std::unique_ptr<WeightSource> b = RandomWeights(7);
  std::unique_ptr<WeightSource> c = RandomWeights(8);
  const TensorSpec& down = Find(specs, "model.layers.0.mlp.down_proj.weight");  // [64, 172]
  const std::vector<uint8_t> full = *a->Load(down, gpu::DType::kFloat32, 0, 1);
  EXPECT_EQ(full, *b->Load(down, gpu::DType::kFloat32, 0, 1));
  EXPECT_NE(full, *c->Load(down, gpu::DType::kFloat32, 0, 1));
  const std::vector<float> values = ToFloats(full, gpu::DType::kFloat32);
  double sum = 0, squares = 0;
  for (float v : values) {
    sum += v;
    squares += v * v;
    ASSERT_NE(v, 0.0f);
  }
  const double mean = sum / values.size();
  EXPECT_NEAR(mean, 0.0, 0.002);
  EXPECT_NEAR(std::sqrt(squares / values.size() - mean * mean), 0.02, 0.002);
  // down_proj is row-parallel: rank 1 of 2 holds columns [86, 172).
  const std::vector<float> shard =
      ToFloats(*a->Load(down, gpu::DType::kFloat32, 1, 2), gpu::DType::kFloat32);
  ASSERT_EQ(shard.size(), 64u * 86u);
  for (int r = 0; r < 64; ++r) {
    for (int col = 0; col < 86; ++col) ASSERT_EQ(shard[r * 86 + col], values[r * 172 + 86 + col]);
  }
  // Norm weights sit near 1.
  const std::vector<float> norm = ToFloats(
      *a->Load(Find(specs, "model.norm.weight"), gpu::DType::kFloat32, 0, 1), gpu::DType::kFloat32);
  for (float v : norm) EXPECT_NEAR(v, 1.0f, 0.02f);
}

}  // namespace
}  // namespace troupe::serving::model
