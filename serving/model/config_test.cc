#include "serving/model/config.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::serving::model {
namespace {

using ::testing::HasSubstr;

TEST(ModelPresetTest, EveryPresetIsValid) {
  for (const std::string& name : ModelPresetNames()) {
    absl::StatusOr<ModelConfig> config = ModelPreset(name);
    ASSERT_TRUE(config.ok()) << name;
    EXPECT_EQ(config->name, name);
    EXPECT_TRUE(Validate(*config).ok()) << name << ": " << Validate(*config).message();
  }
}

// Parameter counts against the published sizes (OPT: Zhang et al. 2022; LLaMA model cards).
TEST(ModelPresetTest, ParameterCountsMatchThePublishedSizes) {
  const std::pair<const char*, double> published[] = {
      {"opt-125m", 125e6},   {"opt-1.3b", 1.3e9},   {"opt-6.7b", 6.7e9},    {"opt-13b", 13e9},
      {"opt-66b", 66e9},     {"opt-175b", 175e9},   {"llama-2-7b", 6.74e9}, {"llama-2-13b", 13.0e9},
      {"llama-2-70b", 69e9}, {"llama-3-8b", 8.03e9}};
  for (const auto& [name, size] : published) {
    const ModelConfig config = *ModelPreset(name);
    const double count = static_cast<double>(ParameterCount(config));
    EXPECT_NEAR(count / size, 1.0, 0.04) << name << ": " << count;
  }
}

TEST(ModelPresetTest, ShapesOfKnownModels) {
  const ModelConfig opt = *ModelPreset("opt-13b");
  EXPECT_EQ(opt.family, ModelFamily::kOpt);
  EXPECT_EQ(opt.head_dim(), 128);
  EXPECT_EQ(opt.num_heads, 40);
  EXPECT_EQ(opt.ffn_size, 20480);
  // OPT-13B fp16: 2 (K, V) x 40 layers x 40 heads x 128 x 2 bytes = 800 KiB per token.
  EXPECT_EQ(KvBytesPerToken(opt, gpu::DType::kFloat16), 819200);
  const ModelConfig llama = *ModelPreset("llama-2-70b");
  EXPECT_EQ(llama.family, ModelFamily::kLlama);
  EXPECT_EQ(llama.num_kv_heads, 8);
  EXPECT_EQ(KvBytesPerToken(llama, gpu::DType::kFloat16), 2 * 80 * 8 * 128 * 2);
}

TEST(ModelPresetTest, UnknownNameListsTheKnownOnes) {
  absl::StatusOr<ModelConfig> config = ModelPreset("opt-14b");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), HasSubstr("opt-14b"));
  EXPECT_THAT(config.status().message(), HasSubstr("opt-13b"));
  EXPECT_THAT(config.status().message(), HasSubstr("tiny"));
}

TEST(ValidateTest, NamesTheBadField) {
  ModelConfig config = *ModelPreset("tiny");
  config.num_heads = 3;  // 64 is not a multiple of 3
  EXPECT_THAT(Validate(config).message(), HasSubstr("not a multiple of num_heads"));
  config = *ModelPreset("tiny-llama");
  config.num_kv_heads = 3;
  EXPECT_THAT(Validate(config).message(), HasSubstr("num_kv_heads"));
  config = *ModelPreset("tiny");
  config.num_kv_heads = 2;
  EXPECT_THAT(Validate(config).message(), HasSubstr("OPT has no grouped-query attention"));
  config = *ModelPreset("tiny");
  config.vocab_size = 0;
  EXPECT_THAT(Validate(config).message(), HasSubstr("vocab_size is 0"));
  config = *ModelPreset("tiny");
  config.norm_epsilon = 0;
  EXPECT_THAT(Validate(config).message(), HasSubstr("norm_epsilon"));
}

std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::string path = std::string(::testing::TempDir()) + "/" + name;
  std::ofstream(path) << text;
  return path;
}

// The fields of facebook/opt-125m's and meta-llama/Meta-Llama-3-8B's config.json.
TEST(HuggingFaceConfigTest, ReadsOptAndLlama) {
  const std::string opt = WriteTemp("opt.json", R"({
    "_name_or_path": "facebook/opt-125m", "model_type": "opt", "activation_function": "relu",
    "do_layer_norm_before": true, "ffn_dim": 3072, "hidden_size": 768,
    "max_position_embeddings": 2048, "num_attention_heads": 12, "num_hidden_layers": 12,
    "vocab_size": 50272, "word_embed_proj_dim": 768, "torch_dtype": "float16"})");
  absl::StatusOr<ModelConfig> config = ModelConfigFromHuggingFace(opt);
  ASSERT_TRUE(config.ok()) << config.status();
  const ModelConfig preset = *ModelPreset("opt-125m");
  EXPECT_EQ(config->hidden_size, preset.hidden_size);
  EXPECT_EQ(config->ffn_size, preset.ffn_size);
  EXPECT_EQ(ParameterCount(*config), ParameterCount(preset));

  const std::string llama = WriteTemp("llama.json", R"({
    "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
    "max_position_embeddings": 8192, "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
    "vocab_size": 128256})");
  config = ModelConfigFromHuggingFace(llama);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->num_kv_heads, 8);
  EXPECT_EQ(config->rope_theta, 500000.0f);
  EXPECT_EQ(ParameterCount(*config), ParameterCount(*ModelPreset("llama-3-8b")));
}

TEST(HuggingFaceConfigTest, BadFilesSayWhatIsWrong) {
  EXPECT_THAT(ModelConfigFromHuggingFace("/nonexistent/config.json").status().message(),
              HasSubstr("cannot read model config /nonexistent/config.json"));
  EXPECT_THAT(ModelConfigFromHuggingFace(WriteTemp("bad.json", "{not json")).status().message(),
              HasSubstr("is not a JSON object"));
  EXPECT_THAT(ModelConfigFromHuggingFace(WriteTemp("gpt2.json", R"({"model_type": "gpt2",
                  "vocab_size": 1, "hidden_size": 1, "num_hidden_layers": 1,
                  "num_attention_heads": 1, "max_position_embeddings": 1})"))
                  .status()
                  .message(),
              HasSubstr("model_type \"gpt2\" is not supported"));
  EXPECT_THAT(ModelConfigFromHuggingFace(WriteTemp("nolayers.json", R"({"model_type": "opt",
                  "vocab_size": 10, "hidden_size": 8, "num_attention_heads": 2,
                  "max_position_embeddings": 16, "ffn_dim": 32})"))
                  .status()
                  .message(),
              HasSubstr("\"num_hidden_layers\" is missing"));
  EXPECT_THAT(ModelConfigFromHuggingFace(WriteTemp("opt350.json", R"({"model_type": "opt",
                  "vocab_size": 10, "hidden_size": 8, "num_attention_heads": 2,
                  "num_hidden_layers": 1, "max_position_embeddings": 16, "ffn_dim": 32,
                  "do_layer_norm_before": false})"))
                  .status()
                  .message(),
              HasSubstr("opt-350m"));
  EXPECT_THAT(ModelConfigFromHuggingFace(WriteTemp("heads.json", R"({"model_type": "llama",
                  "vocab_size": 10, "hidden_size": 8, "num_attention_heads": 3,
                  "num_hidden_layers": 1, "max_position_embeddings": 16,
                  "intermediate_size": 32})"))
                  .status()
                  .message(),
              HasSubstr("not a multiple of num_heads"));
}

}  // namespace
}  // namespace troupe::serving::model
