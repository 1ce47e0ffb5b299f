#include "serving/engine/forward_backend.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gpu/sampling/host_sampling.h"

namespace troupe::serving::engine {

std::vector<std::vector<float>> LogitRows(const float* flat, int64_t rows, int64_t width) {
  std::vector<std::vector<float>> result(rows);
  for (int64_t r = 0; r < rows; ++r) result[r].assign(flat + r * width, flat + (r + 1) * width);
  return result;
}

absl::Status CheckSamplingParams(size_t batch, size_t params) {
  if (batch == params) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("ForwardAndSample: ", params,
                                                 " sampling parameters for ", batch,
                                                 " sequences; give one per sequence"));
}

absl::StatusOr<HostMemory> ForwardBackend::AllocateHostMemory(size_t bytes) const {
  auto memory = std::make_shared<std::vector<uint8_t>>(bytes);
  HostMemory host;
  host.data = memory->data();
  host.owner = std::move(memory);
  return host;
}

namespace {

// CheckSlots: one slot per block.
absl::Status CheckSlots(const char* function, size_t blocks, size_t slots) {
  if (blocks == slots) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(function, ": ", blocks, " blocks but ", slots,
                                                 " slots; give one slot per block"));
}

}  // namespace

absl::Status ForwardBackend::ExportKvToSlots(const std::vector<int32_t>& blocks,
                                             const std::vector<uint8_t*>& slots) {
  if (absl::Status s = CheckSlots("ExportKvToSlots", blocks.size(), slots.size()); !s.ok()) {
    return s;
  }
  absl::StatusOr<std::vector<uint8_t>> bytes = ExportKv(blocks, {});
  if (!bytes.ok()) return bytes.status();
  const int64_t n = static_cast<int64_t>(blocks.size());
  const int64_t planes = 2LL * config().num_layers;
  const int64_t part = n == 0 ? 0 : static_cast<int64_t>(bytes->size()) / (n * planes);
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(slots[i] + p * part, bytes->data() + (p * n + i) * part, part);
    }
  }
  return absl::OkStatus();
}

absl::Status ForwardBackend::ImportKvFromSlots(const std::vector<int32_t>& blocks,
                                               const std::vector<const uint8_t*>& slots) {
  if (absl::Status s = CheckSlots("ImportKvFromSlots", blocks.size(), slots.size()); !s.ok()) {
    return s;
  }
  absl::StatusOr<KvRange> all = KvRangeOf({}, config());
  if (!all.ok()) return all.status();
  const int64_t n = static_cast<int64_t>(blocks.size());
  const int64_t planes = 2LL * config().num_layers;
  const int64_t part = KvBytes(config(), kv_dtype(), 1, *all) / planes;
  std::vector<uint8_t> bytes(static_cast<size_t>(n * planes * part));
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(bytes.data() + (p * n + i) * part, slots[i] + p * part, part);
    }
  }
  return ImportKv(blocks, {}, bytes);
}

absl::StatusOr<std::vector<int32_t>> ForwardBackend::ForwardAndSample(
    const std::vector<SequenceStep>& batch,
    const std::vector<gpu::sampling::SamplingParams>& params) {
  if (absl::Status s = CheckSamplingParams(batch.size(), params.size()); !s.ok()) return s;
  absl::StatusOr<std::vector<std::vector<float>>> logits = Forward(batch);
  if (!logits.ok()) return logits.status();
  const int64_t vocab = config().vocab_size;
  std::vector<int32_t> tokens;
  tokens.reserve(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {  // each row where Forward left it
    absl::StatusOr<std::vector<int32_t>> token =
        gpu::sampling::SampleOnHost((*logits)[i], 1, vocab, {params[i]});
    if (!token.ok()) return token.status();
    tokens.push_back(token->front());
  }
  return tokens;
}

absl::StatusOr<std::unique_ptr<PendingKvCopy>> ForwardBackend::CopyKvFromDevice(
    const std::vector<DeviceKvShard>& /*sources*/, const std::vector<int32_t>& /*src_blocks*/,
    const std::vector<int32_t>& /*dst_blocks*/) {
  return absl::UnimplementedError(
      "this backend's KV cache is not in device memory: it moves as bytes (kv_transport = "
      "\"bytes\")");
}

namespace {

std::string Describe(const DeviceKvShard& s) {
  return absl::StrCat("cuda:", s.device, " layers [", s.layer_begin, ", ", s.layer_end, ") heads [",
                      s.head_begin, ", ", s.head_end, ") of ", s.num_blocks, " blocks");
}

absl::Status CheckShard(const DeviceKvShard& s, const model::ModelConfig& config,
                        const std::vector<int32_t>& blocks, const char* which) {
  if (s.base == nullptr || s.num_blocks < 1 || s.layer_begin < 0 || s.layer_begin >= s.layer_end ||
      s.layer_end > config.num_layers || s.head_begin < 0 || s.head_begin >= s.head_end ||
      s.head_end > config.num_kv_heads) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV copy: the ", which, " shard (", Describe(s),
                     (s.base == nullptr ? ", no memory" : ""), ") does not fit ", config.name,
                     "'s ", config.num_layers, " layers and ", config.num_kv_heads, " kv heads"));
  }
  for (int32_t block : blocks) {
    if (block < 0 || block >= s.num_blocks) {
      return absl::InvalidArgumentError(absl::StrCat("KV copy: ", which, " block ", block,
                                                     " is outside the ", which, " shard's ",
                                                     s.num_blocks, " blocks"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<KvShardCopy>> PlanKvShardCopies(
    const model::ModelConfig& config, const std::vector<DeviceKvShard>& sources,
    const std::vector<DeviceKvShard>& destinations, const std::vector<int32_t>& src_blocks,
    const std::vector<int32_t>& dst_blocks) {
  if (src_blocks.size() != dst_blocks.size()) {
    return absl::InvalidArgumentError(absl::StrCat("KV copy: ", src_blocks.size(),
                                                   " source blocks for ", dst_blocks.size(),
                                                   " destination blocks; give one per block"));
  }
  if (sources.empty()) return absl::InvalidArgumentError("KV copy: no source shards");
  for (const DeviceKvShard& s : sources) {
    if (absl::Status ok = CheckShard(s, config, src_blocks, "source"); !ok.ok()) return ok;
  }
  std::vector<KvShardCopy> copies;
  for (size_t d = 0; d < destinations.size(); ++d) {
    const DeviceKvShard& dst = destinations[d];
    if (absl::Status ok = CheckShard(dst, config, dst_blocks, "destination"); !ok.ok()) return ok;
    // Every (layer, head) of the destination must come from some source.
    for (int l = dst.layer_begin; l < dst.layer_end; ++l) {
      for (int h = dst.head_begin; h < dst.head_end; ++h) {
        const bool covered = std::any_of(sources.begin(), sources.end(), [&](const auto& s) {
          return l >= s.layer_begin && l < s.layer_end && h >= s.head_begin && h < s.head_end;
        });
        if (!covered) {
          return absl::InvalidArgumentError(
              absl::StrCat("KV copy: no source shard holds layer ", l, " kv head ", h,
                           ", which the destination shard (", Describe(dst),
                           ") needs; pass every shard of the source backend (DeviceKvShards)"));
        }
      }
    }
    for (size_t i = 0; i < sources.size(); ++i) {
      const DeviceKvShard& src = sources[i];
      KvShardCopy copy;
      copy.source = static_cast<int>(i);
      copy.destination = static_cast<int>(d);
      copy.range.layer_begin = std::max(src.layer_begin, dst.layer_begin);
      copy.range.layer_end = std::min(src.layer_end, dst.layer_end);
      copy.range.head_begin = std::max(src.head_begin, dst.head_begin);
      copy.range.head_end = std::min(src.head_end, dst.head_end);
      if (copy.range.layer_begin >= copy.range.layer_end ||
          copy.range.head_begin >= copy.range.head_end) {
        continue;
      }
      copies.push_back(copy);
    }
  }
  return copies;
}

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
