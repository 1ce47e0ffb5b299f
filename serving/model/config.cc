#include "serving/model/config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace troupe::serving::model {
namespace {

// OPT: Zhang et al. 2022, Table 1, as in the facebook/opt-* config.json files. Every OPT model
// has the GPT-2 vocabulary padded to 50272 and 2048 positions.
constexpr int kOptVocab = 50272;
constexpr int kOptPositions = 2048;

ModelConfig Opt(std::string name, int hidden, int layers, int heads) {
  return ModelConfig{std::move(name), ModelFamily::kOpt, kOptVocab,     hidden, layers, heads,
                     heads,           4 * hidden,        kOptPositions, 1e-5f,  0.0f};
}

// LLaMA-2 (Touvron et al. 2023) and LLaMA-3 from the meta-llama/* config.json files.
ModelConfig Llama(std::string name, int vocab, int hidden, int layers, int heads, int kv_heads,
                  int ffn, int positions, float rope_theta) {
  return ModelConfig{
      std::move(name), ModelFamily::kLlama, vocab, hidden, layers, heads, kv_heads, ffn, positions,
      1e-5f,           rope_theta};
}

const std::vector<ModelConfig>& Presets() {
  static const auto* presets = new std::vector<ModelConfig>{
      Opt("opt-125m", 768, 12, 12),
      Opt("opt-1.3b", 2048, 24, 32),
      Opt("opt-6.7b", 4096, 32, 32),
      Opt("opt-13b", 5120, 40, 40),
      Opt("opt-66b", 9216, 64, 72),
      Opt("opt-175b", 12288, 96, 96),
      Llama("llama-2-7b", 32000, 4096, 32, 32, 32, 11008, 4096, 10000.0f),
      Llama("llama-2-13b", 32000, 5120, 40, 40, 40, 13824, 4096, 10000.0f),
      Llama("llama-2-70b", 32000, 8192, 80, 64, 8, 28672, 4096, 10000.0f),
      Llama("llama-3-8b", 128256, 4096, 32, 32, 8, 14336, 8192, 500000.0f),
      // Test models: the GPT-2 vocabulary (so the GPT-2 tokenizer serves them), a few layers.
      ModelConfig{"tiny", ModelFamily::kOpt, kOptVocab, 64, 2, 4, 4, 256, 512, 1e-5f, 0.0f},
      ModelConfig{"tiny-llama", ModelFamily::kLlama, kOptVocab, 64, 2, 4, 2, 172, 512, 1e-5f,
                  10000.0f},
  };
  return *presets;
}

}  // namespace

absl::StatusOr<ModelConfig> ModelPreset(std::string_view name) {
  for (const ModelConfig& preset : Presets()) {
    if (preset.name == name) return preset;
  }
  return absl::NotFoundError(absl::StrCat("unknown model preset \"", std::string(name),
                                          "\"; known: ", absl::StrJoin(ModelPresetNames(), ", ")));
}

std::vector<std::string> ModelPresetNames() {
  std::vector<std::string> names;
  for (const ModelConfig& preset : Presets()) names.push_back(preset.name);
  return names;
}

absl::Status Validate(const ModelConfig& c) {
  const std::pair<const char*, int> positive[] = {
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"num_layers", c.num_layers},
      {"num_heads", c.num_heads},
      {"num_kv_heads", c.num_kv_heads},
      {"ffn_size", c.ffn_size},
      {"max_position_embeddings", c.max_position_embeddings}};
  for (const auto& [field, value] : positive) {
    if (value <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("model ", c.name, ": ", field, " is ", value, "; it must be positive"));
    }
  }
  if (c.hidden_size % c.num_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", c.name, ": hidden_size ", c.hidden_size,
                     " is not a multiple of num_heads ", c.num_heads));
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("model ", c.name, ": num_heads ", c.num_heads,
                                                   " is not a multiple of num_kv_heads ",
                                                   c.num_kv_heads));
  }
  if (c.family == ModelFamily::kOpt && c.num_kv_heads != c.num_heads) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", c.name, ": OPT has no grouped-query attention; num_kv_heads ",
                     c.num_kv_heads, " must equal num_heads ", c.num_heads));
  }
  if (!(c.norm_epsilon > 0.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", c.name, ": norm_epsilon ", c.norm_epsilon, " must be positive"));
  }
  if (c.family == ModelFamily::kLlama && !(c.rope_theta > 0.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model ", c.name, ": rope_theta ", c.rope_theta, " must be positive"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ModelConfigFromHuggingFace(const std::string& path) {
  std::ifstream file(path);
  if (!file) {
    return absl::NotFoundError(
        absl::StrCat("cannot read model config ", path, "; pass the checkpoint's config.json"));
  }
  const nlohmann::json json = nlohmann::json::parse(file, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("model config ", path, " is not a JSON object"));
  }
  auto field = [&](const char* name) -> absl::StatusOr<int> {
    if (!json.contains(name) || !json[name].is_number_integer()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model config ", path, ": \"", name, "\" is missing or not an integer"));
    }
    return json[name].get<int>();
  };
  const std::string type = json.value("model_type", "");
  ModelConfig config;
  config.name = json.value("_name_or_path", path);
  absl::StatusOr<int> vocab = field("vocab_size");
  absl::StatusOr<int> hidden = field("hidden_size");
  absl::StatusOr<int> layers = field("num_hidden_layers");
  absl::StatusOr<int> heads = field("num_attention_heads");
  absl::StatusOr<int> positions = field("max_position_embeddings");
  for (const auto* value : {&vocab, &hidden, &layers, &heads, &positions}) {
    if (!value->ok()) return value->status();
  }
  config.vocab_size = *vocab;
  config.hidden_size = *hidden;
  config.num_layers = *layers;
  config.num_heads = *heads;
  config.num_kv_heads = *heads;
  config.max_position_embeddings = *positions;
  if (type == "opt") {
    config.family = ModelFamily::kOpt;
    absl::StatusOr<int> ffn = field("ffn_dim");
    if (!ffn.ok()) return ffn.status();
    config.ffn_size = *ffn;
    if (json.value("activation_function", "relu") != "relu" ||
        !json.value("do_layer_norm_before", true) ||
        json.value("word_embed_proj_dim", config.hidden_size) != config.hidden_size) {
      return absl::UnimplementedError(
          absl::StrCat("model config ", path,
                       ": only OPT models with pre-LayerNorm, ReLU and no embedding "
                       "projection are supported (every OPT but opt-350m)"));
    }
  } else if (type == "llama") {
    config.family = ModelFamily::kLlama;
    absl::StatusOr<int> ffn = field("intermediate_size");
    if (!ffn.ok()) return ffn.status();
    config.ffn_size = *ffn;
    if (json.contains("num_key_value_heads")) {
      absl::StatusOr<int> kv_heads = field("num_key_value_heads");
      if (!kv_heads.ok()) return kv_heads.status();
      config.num_kv_heads = *kv_heads;
    }
    config.norm_epsilon = json.value("rms_norm_eps", 1e-5f);
    config.rope_theta = json.value("rope_theta", 10000.0f);
  } else {
    return absl::UnimplementedError(absl::StrCat("model config ", path, ": model_type \"", type,
                                                 "\" is not supported; use opt or llama"));
  }
  if (absl::Status valid = Validate(config); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", valid.message()));
  }
  return config;
}

int64_t ParameterCount(const ModelConfig& c) {
  const int64_t h = c.hidden_size;
  const int64_t kv = static_cast<int64_t>(c.num_kv_heads) * c.head_dim();
  const int64_t f = c.ffn_size;
  int64_t per_layer = 0;
  int64_t outside = static_cast<int64_t>(c.vocab_size) * h;  // token embedding
  if (c.family == ModelFamily::kOpt) {
    per_layer = (h * h + h) * 2 + (h * kv + kv) * 2  // q, out; k, v
                + (h * f + f) + (f * h + h)          // fc1, fc2
                + 4 * h;                             // two LayerNorms
    outside +=
        static_cast<int64_t>(c.max_position_embeddings + 2) * h + 2 * h;  // positions, final norm
  } else {
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * f + 2 * h;
    outside += static_cast<int64_t>(c.vocab_size) * h + h;  // head, final norm
  }
  return outside + per_layer * c.num_layers;
}

int64_t KvBytesPerToken(const ModelConfig& c, gpu::DType dtype) {
  return 2LL * c.num_layers * c.num_kv_heads * c.head_dim() *
         static_cast<int64_t>(gpu::SizeOf(dtype));
}

}  // namespace troupe::serving::model
