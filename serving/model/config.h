// Model configurations of the decoder-only transformers Troupe serves: the OPT and LLaMA
// families, as presets with the shapes of the published checkpoints, or read from a Hugging Face
// config.json. A config says everything the forward pass and the weight loader need: the
// shapes, the normalization, the activation, and how positions are encoded.
//
//   absl::StatusOr<ModelConfig> config = ModelPreset("opt-13b");
//   int64_t kv_bytes = KvBytesPerToken(*config, gpu::DType::kFloat16);
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "gpu/dtype.h"

namespace troupe::serving::model {

// ModelFamily decides the layer structure:
//   kOpt    learned positions (offset 2), pre-LayerNorm with biases, ReLU MLP (fc1, fc2), biases
//           on every projection, output head tied to the token embedding;
//   kLlama  rotary positions, RMSNorm without biases, SiLU-gated MLP (gate, up, down), no
//           biases, a separate output head, grouped-query attention (num_kv_heads <= num_heads).
enum class ModelFamily { kOpt, kLlama };

struct ModelConfig {
  std::string name;
  ModelFamily family = ModelFamily::kOpt;
  int vocab_size = 0;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;  // Equal to num_heads unless grouped-query attention.
  int ffn_size = 0;      // The MLP's inner width.
  int max_position_embeddings = 0;
  float norm_epsilon = 1e-5f;   // LayerNorm (OPT) or RMSNorm (LLaMA).
  float rope_theta = 10000.0f;  // LLaMA only.

  int head_dim() const { return hidden_size / num_heads; }
};

// ModelPreset returns a named configuration: opt-125m, opt-1.3b, opt-6.7b, opt-13b, opt-66b,
// opt-175b, llama-2-7b, llama-2-13b, llama-2-70b, llama-3-8b, and the test models tiny (OPT) and
// tiny-llama (grouped-query). An unknown name is an error that lists the known ones.
absl::StatusOr<ModelConfig> ModelPreset(std::string_view name);

// ModelPresetNames lists the names ModelPreset knows, in the order above.
std::vector<std::string> ModelPresetNames();

// ModelConfigFromHuggingFace reads a Hugging Face config.json ("model_type" opt or llama).
// A missing or inconsistent field is an error naming the file, the field and the fix.
absl::StatusOr<ModelConfig> ModelConfigFromHuggingFace(const std::string& path);

// Validate checks that the shapes are positive and consistent (heads divide the hidden size,
// kv heads divide the heads); the error names the field.
absl::Status Validate(const ModelConfig& config);

// ParameterCount is the number of weights of the model (embeddings included, a tied head once).
int64_t ParameterCount(const ModelConfig& config);

// KvBytesPerToken is the size of one token's keys and values over all layers.
int64_t KvBytesPerToken(const ModelConfig& config, gpu::DType dtype);

}  // namespace troupe::serving::model
