// The flags `troupe generate` and `troupe serve` share to pick a model, its weights and its
// tokenizer, and the loader that turns them into the serving layer's pieces.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "serving/engine/continuous_batcher.h"
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

// DefaultTokenizerPath is GPT-2's vocabulary as tools/setup.sh fetches it (under the workspace
// when run by `bazel run`, else relative to the working directory).
std::string DefaultTokenizerPath();

// TokenizerFlagOrDefault is --tokenizer, or DefaultTokenizerPath() when it is empty.
std::string TokenizerFlagOrDefault();

// KvBlocksFlag is --kv_blocks; ChunkedPrefillFlag is --chunked_prefill.
int KvBlocksFlag();
bool ChunkedPrefillFlag();

// SwapBlocksFlag is --swap_blocks: host-memory KV blocks for swapped-out requests.
int SwapBlocksFlag();

// PreemptionFromFlags reads --preemption and --swap_blocks for an instance that is a DistServe
// decode instance (`decode_role`) or a colocated one. Unset, --preemption is swap for the
// decode role when --swap_blocks > 0 (DistServe's decode instance swaps) and recompute
// otherwise (vLLM's choice for single-sequence requests). Errors name the flag and the fix.
absl::StatusOr<serving::engine::Preemption> PreemptionFromFlags(bool decode_role);

}  // namespace troupe
