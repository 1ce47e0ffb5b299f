#include "serving/placement/profiler.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gpu/sampling/sampling_params.h"
#include "serving/engine/forward_backend.h"

namespace troupe::serving::placement {
namespace {

using engine::ForwardBackend;
using engine::SequenceStep;

absl::Status CheckList(const char* field, const std::vector<int>& values) {
  if (values.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ProfileGrid: ", field, " is empty; give at least one value"));
  }
  for (int v : values) {
    if (v < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("ProfileGrid: ", field, " holds ", v, "; every value must be >= 1"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckGrid(const ProfileGrid& grid) {
  absl::Status status = CheckList("prefill_batches", grid.prefill_batches);
  if (status.ok()) status = CheckList("prefill_lengths", grid.prefill_lengths);
  if (status.ok()) status = CheckList("decode_batches", grid.decode_batches);
  if (status.ok()) status = CheckList("decode_contexts", grid.decode_contexts);
  if (!status.ok()) return status;
  if (grid.max_prefill_tokens < 1 || grid.repeats < 1 || grid.warmup < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ProfileGrid: max_prefill_tokens (", grid.max_prefill_tokens, ") and repeats (",
        grid.repeats, ") must be >= 1 and warmup (", grid.warmup, ") >= 0"));
  }
  return absl::OkStatus();
}

// Point is one step shape of the grid: `batch` sequences of `new_tokens` new tokens after
// `cached` tokens each.
struct Point {
  Phase phase;
  int batch;
  int new_tokens;
  int cached;
};

std::vector<Point> GridPoints(const ProfileGrid& grid) {
  std::vector<Point> points;
  for (int batch : grid.prefill_batches) {
    for (int length : grid.prefill_lengths) {
      if (static_cast<int64_t>(batch) * length <= grid.max_prefill_tokens) {
        points.push_back({Phase::kPrefill, batch, length, 0});
      }
    }
  }
  for (int batch : grid.decode_batches) {
    for (int context : grid.decode_contexts) points.push_back({Phase::kDecode, batch, 1, context});
  }
  return points;
}

// SkipReason is why a point cannot run on this model and cache, or empty.
std::string SkipReason(const Point& p, const model::ModelConfig& config, int num_kv_blocks) {
  const int64_t tokens = static_cast<int64_t>(p.cached) + p.new_tokens;
  if (tokens > config.max_position_embeddings) {
    return absl::StrCat(tokens, " tokens per sequence pass ", config.name, "'s context of ",
                        config.max_position_embeddings);
  }
  const int64_t blocks = p.batch * ((tokens + engine::kKvBlockTokens - 1) / engine::kKvBlockTokens);
  if (blocks > num_kv_blocks) {
    return absl::StrCat("needs ", blocks, " KV blocks; the cache has ", num_kv_blocks);
  }
  return "";
}

// Steps builds the point's batch: distinct blocks per sequence, random tokens.
std::vector<SequenceStep> Steps(const Point& p, int vocab, std::mt19937_64& random) {
  std::uniform_int_distribution<int32_t> token(0, vocab - 1);
  const int blocks_per_seq =
      (p.cached + p.new_tokens + engine::kKvBlockTokens - 1) / engine::kKvBlockTokens;
  std::vector<SequenceStep> batch(p.batch);
  for (int s = 0; s < p.batch; ++s) {
    batch[s].seq_id = s;
    batch[s].cached_tokens = p.cached;
    for (int i = 0; i < p.new_tokens; ++i) batch[s].tokens.push_back(token(random));
    for (int b = 0; b < blocks_per_seq; ++b) batch[s].block_table.push_back(s * blocks_per_seq + b);
  }
  return batch;
}

}  // namespace

ProfileProgress PrintProgressTo(std::FILE* stream) {
  return [stream](int index, int total, const ProfileSample& sample, const std::string& skipped) {
    const int length = sample.batch > 0 ? static_cast<int>(sample.tokens / sample.batch) : 0;
    if (!skipped.empty()) {
      std::fprintf(stream, "[%d/%d] %s batch %d x %d: skipped (%s)\n", index + 1, total,
                   PhaseName(sample.phase), sample.batch, length, skipped.c_str());
    } else {
      std::fprintf(stream, "[%d/%d] %s batch %d x %d: %.3f ms\n", index + 1, total,
                   PhaseName(sample.phase), sample.batch, length, sample.seconds * 1e3);
    }
    std::fflush(stream);
  };
}

absl::StatusOr<Profile> MeasureProfile(ForwardBackend& backend, const model::ModelConfig& config,
                                       const ProfileGrid& grid, int tensor_parallel,
                                       const ProfileProgress& progress) {
  if (absl::Status valid = CheckGrid(grid); !valid.ok()) return valid;
  const std::vector<Point> points = GridPoints(grid);
  Profile profile;
  std::mt19937_64 random(grid.seed);
  for (size_t i = 0; i < points.size(); ++i) {
    const Point& p = points[i];
    ProfileSample sample;
    sample.phase = p.phase;
    sample.tensor_parallel = tensor_parallel;
    sample.batch = p.batch;
    // Prefill counts the prompts; decode the contexts its new tokens attend to.
    const int64_t length = p.phase == Phase::kPrefill ? p.new_tokens : p.cached;
    sample.tokens = static_cast<int64_t>(p.batch) * length;
    sample.tokens_squared = p.phase == Phase::kPrefill ? sample.tokens * length : 0;
    const std::string skipped = SkipReason(p, config, backend.num_kv_blocks());
    if (skipped.empty()) {
      const std::vector<gpu::sampling::SamplingParams> greedy(
          p.batch, gpu::sampling::SamplingParams{.temperature = 0.0f});
      std::vector<double> seconds;
      for (int r = 0; r < grid.warmup + grid.repeats; ++r) {
        const std::vector<SequenceStep> batch = Steps(p, config.vocab_size, random);
        const auto start = std::chrono::steady_clock::now();
        absl::StatusOr<std::vector<int32_t>> tokens = backend.ForwardAndSample(batch, greedy);
        const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
        if (!tokens.ok()) return tokens.status();
        if (r >= grid.warmup) seconds.push_back(took.count());
      }
      std::nth_element(seconds.begin(), seconds.begin() + seconds.size() / 2, seconds.end());
      sample.seconds = seconds[seconds.size() / 2];
      profile.samples.push_back(sample);
    }
    if (progress) progress(static_cast<int>(i), static_cast<int>(points.size()), sample, skipped);
  }
  if (profile.samples.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ProfileGrid: no point of the grid fits ", config.name, " (context ",
                     config.max_position_embeddings, ") and the cache of ", backend.num_kv_blocks(),
                     " KV blocks; choose shorter lengths, smaller batches or more KV blocks"));
  }
  return profile;
}

}  // namespace troupe::serving::placement
