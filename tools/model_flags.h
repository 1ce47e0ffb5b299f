// The flags `troupe generate` and `troupe serve` share to pick a model, its weights and its
// tokenizer, and the loader that turns them into the serving layer's pieces.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"
#include "serving/tokenizer/tokenizer.h"

namespace troupe {

struct LoadedModel {
  serving::model::ModelConfig config;
  std::unique_ptr<serving::model::WeightSource> weights;
  std::unique_ptr<serving::tokenizer::Tokenizer> tokenizer;
};

// LoadModelFromFlags reads --model, --weights, --seed and --tokenizer. Errors name the flag.
absl::StatusOr<LoadedModel> LoadModelFromFlags();

// KvBlocksFlag is --kv_blocks; ChunkedPrefillFlag is --chunked_prefill.
int KvBlocksFlag();
bool ChunkedPrefillFlag();

}  // namespace troupe
