#include "tools/generate_command.h"

#include <chrono>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "serving/engine/continuous_batcher.h"
#include "serving/engine/cpu_backend.h"
#include "serving/kv/block_manager.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"
#include "serving/tokenizer/tokenizer.h"
#include "tools/model_flags.h"

ABSL_FLAG(std::string, prompt, "", "`generate`: the prompt text.");
ABSL_FLAG(int, max_tokens, 16, "`generate`: how many tokens to generate at most.");
ABSL_FLAG(float, temperature, 0.0f, "`generate`: sampling temperature; 0 is greedy.");
ABSL_FLAG(int, top_k, 0, "`generate`: keep the k most likely tokens; 0 keeps all.");
ABSL_FLAG(float, top_p, 1.0f, "`generate`: nucleus sampling mass in (0, 1]; 1 keeps all.");
ABSL_FLAG(uint64_t, sampling_seed, 0, "`generate`: the seed of the sampler's draws.");

namespace troupe {
namespace {

absl::Status Generate() {
  const std::string prompt = absl::GetFlag(FLAGS_prompt);
  if (prompt.empty()) return absl::InvalidArgumentError("--prompt is empty; give some text");
  absl::StatusOr<LoadedModel> model = LoadModelFromFlags();
  if (!model.ok()) return model.status();
  const serving::model::ModelConfig* config = &model->config;
  const serving::tokenizer::Tokenizer* tokenizer = model->tokenizer.get();
  const std::unique_ptr<serving::model::WeightSource>& weights = model->weights;
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<serving::engine::ForwardBackend>> backend =
      serving::engine::CreateCpuBackend(*config, *weights, {/*num_kv_blocks=*/KvBlocksFlag()});
  if (!backend.ok()) return backend.status();
  serving::kv::BlockManagerOptions block_options;
  block_options.num_gpu_blocks = KvBlocksFlag();
  absl::StatusOr<serving::kv::BlockManager> blocks =
      serving::kv::BlockManager::Create(block_options);
  if (!blocks.ok()) return blocks.status();
  serving::engine::BatcherOptions batcher_options;
  batcher_options.chunked_prefill = ChunkedPrefillFlag();
  absl::StatusOr<serving::engine::ContinuousBatcher> batcher =
      serving::engine::ContinuousBatcher::Create(backend->get(), &*blocks, batcher_options);
  if (!batcher.ok()) return batcher.status();
  const auto loaded = std::chrono::steady_clock::now();

  serving::engine::GenerationRequest request;
  request.id = 1;
  request.prompt = tokenizer->EncodeOrdinary(prompt);
  request.max_new_tokens = absl::GetFlag(FLAGS_max_tokens);
  request.stop_token = tokenizer->TokenId("<|endoftext|>");
  request.sampling.temperature = absl::GetFlag(FLAGS_temperature);
  request.sampling.top_k = absl::GetFlag(FLAGS_top_k);
  request.sampling.top_p = absl::GetFlag(FLAGS_top_p);
  request.sampling.seed = absl::GetFlag(FLAGS_sampling_seed);
  if (absl::Status added = batcher->Add(request); !added.ok()) return added;
  std::vector<int32_t> generated;
  double first_token_ms = 0;
  while (batcher->HasWork()) {
    absl::StatusOr<std::vector<serving::engine::TokenEvent>> events = batcher->Step();
    if (!events.ok()) return events.status();
    for (const serving::engine::TokenEvent& event : *events) {
      if (generated.empty()) {
        first_token_ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - loaded)
                .count();
      }
      generated.push_back(event.token);
    }
  }
  const double total_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - loaded).count();
  absl::StatusOr<std::string> text = tokenizer->Decode(generated);
  if (!text.ok()) return text.status();
  std::printf("%s%s\n", prompt.c_str(), text->c_str());
  std::fflush(stdout);  // the completion before the timing line, even through a pipe
  std::fprintf(
      stderr,
      "troupe: %s (%s): %zu prompt tokens, %zu generated; load %.0f ms, first token "
      "%.1f ms, %.1f tokens/s after it\n",
      config->name.c_str(), weights->Describe().c_str(), request.prompt.size(), generated.size(),
      std::chrono::duration<double, std::milli>(loaded - start).count(), first_token_ms,
      generated.size() > 1 ? (generated.size() - 1) / ((total_ms - first_token_ms) / 1e3) : 0.0);
  return absl::OkStatus();
}

}  // namespace

int RunGenerate() {
  if (absl::Status status = Generate(); !status.ok()) {
    std::fprintf(stderr, "troupe: error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace troupe
