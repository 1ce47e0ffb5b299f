#include "serving/engine/forward_backend.h"

#include "absl/strings/str_cat.h"

namespace troupe::serving::engine {

absl::Status ValidateStep(const SequenceStep& step, const model::ModelConfig& config,
                          int num_kv_blocks) {
  const auto fail = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("sequence ", step.seq_id, ": ", what));
  };
  if (step.tokens.empty()) return fail("a step needs at least one new token");
  if (step.cached_tokens < 0) {
    return fail(absl::StrCat("cached_tokens is ", step.cached_tokens, "; it must be >= 0"));
  }
  const int64_t total = static_cast<int64_t>(step.cached_tokens) + step.tokens.size();
  if (total > config.max_position_embeddings) {
    return fail(absl::StrCat(total, " tokens exceed the model's context of ",
                             config.max_position_embeddings));
  }
  for (int32_t token : step.tokens) {
    if (token < 0 || token >= config.vocab_size) {
      return fail(
          absl::StrCat("token ", token, " is outside the vocabulary [0, ", config.vocab_size, ")"));
    }
  }
  const int64_t blocks_needed = (total + kKvBlockTokens - 1) / kKvBlockTokens;
  if (static_cast<int64_t>(step.block_table.size()) < blocks_needed) {
    return fail(absl::StrCat("its block table has ", step.block_table.size(), " blocks but ", total,
                             " tokens need ", blocks_needed));
  }
  for (int32_t block : step.block_table) {
    if (block < 0 || block >= num_kv_blocks) {
      return fail(
          absl::StrCat("block ", block, " is outside the cache's ", num_kv_blocks, " blocks"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<KvRange> KvRangeOf(const KvRange& range, const model::ModelConfig& config) {
  KvRange r = range;
  if (r.layer_end == -1) r.layer_end = config.num_layers;
  if (r.head_end == -1) r.head_end = config.num_kv_heads;
  if (r.layer_begin < 0 || r.layer_begin >= r.layer_end || r.layer_end > config.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("KV range: layers [", r.layer_begin, ", ",
                                                   r.layer_end, ") are not a non-empty part of ",
                                                   config.num_layers));
  }
  if (r.head_begin < 0 || r.head_begin >= r.head_end || r.head_end > config.num_kv_heads) {
    return absl::InvalidArgumentError(absl::StrCat("KV range: kv heads [", r.head_begin, ", ",
                                                   r.head_end, ") are not a non-empty part of ",
                                                   config.num_kv_heads));
  }
  return r;
}

int64_t KvBytes(const model::ModelConfig& config, gpu::DType dtype, int64_t num_blocks,
                const KvRange& range) {
  return 2LL * (range.layer_end - range.layer_begin) * num_blocks *
         (range.head_end - range.head_begin) * kKvBlockTokens * config.head_dim() *
         static_cast<int64_t>(gpu::SizeOf(dtype));
}

}  // namespace troupe::serving::engine
