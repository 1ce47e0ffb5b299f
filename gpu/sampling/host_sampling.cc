#include "gpu/sampling/host_sampling.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gpu/sampling/internal/draw_math.h"
#include "gpu/sampling/internal/philox.h"

// Each step below mirrors sampling_kernel.cu; where the kernel splits a loop over threads, the
// host runs it in index order, which gives the same result because every reduction is exact
// (integer sums, max) or breaks ties by the lowest index.

namespace troupe::gpu::sampling {
namespace {

using internal::FixedPointMass;
using internal::GumbelScore;
using internal::kMaxGumbel;
using internal::OrderedKey;
using internal::Philox4x32;
using internal::Philox4x32_10;
using internal::PhiloxKey;
using internal::Reciprocal;

constexpr const char* kSampleOnHost = "SampleOnHost";
constexpr const char* kArgmaxOnHost = "ArgmaxOnHost";
// Sample's limits (a batch row per CUDA grid row, int32 token ids), so that both samplers accept
// the same arguments.
constexpr int64_t kMaxBatch = (int64_t{1} << 31) - 1;
constexpr int64_t kMaxVocab = std::numeric_limits<int32_t>::max();
// The kernel's radix select: 8 bits of the 32-bit key per pass, most significant first.
constexpr int kRadixBits = 8;
constexpr int kBins = 1 << kRadixBits;
constexpr int kRadixPasses = 32 / kRadixBits;
// One Philox call gives 4 words: tokens 4c .. 4c + 3 use counter c, word i % 4.
constexpr int64_t kTokensPerCounter = 4;
constexpr float kInfinity = std::numeric_limits<float>::infinity();
// The host skips most logarithms with a bound on the Gumbel noise per cell of the uniform: the
// top kNoiseCellBits bits of its Philox word fix u to within 2^-kNoiseCellBits.
constexpr int kNoiseCellBits = 8;
constexpr int kNoiseCells = 1 << kNoiseCellBits;
// Added to each cell's exact bound: far above the computed noise's error (a few 1e-6).
constexpr double kNoiseBoundSlack = 1e-4;

absl::Status RequireInRange(const char* function, const char* argument, int64_t value, int64_t low,
                            int64_t high) {
  if (value >= low && value <= high) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(function, ": ", argument, " = ", value, " is outside [", low, ", ", high, "]"));
}

absl::Status CheckShapes(const char* function, absl::Span<const float> logits, int64_t batch,
                         int64_t vocab) {
  absl::Status status = RequireInRange(function, "batch", batch, 1, kMaxBatch);
  if (status.ok()) status = RequireInRange(function, "vocab", vocab, 1, kMaxVocab);
  if (status.ok() && static_cast<int64_t>(logits.size()) != batch * vocab) {
    status = absl::InvalidArgumentError(absl::StrCat(
        function, ": logits has ", logits.size(), " values for batch = ", batch, " and vocab = ",
        vocab, "; pass batch * vocab = ", batch * vocab, " (row-major [batch, vocab])"));
  }
  return status;
}

// CheckParams is Sample's check, word for word.
absl::Status CheckParams(const SamplingParams& p, int64_t row) {
  if (!(std::isfinite(p.temperature) && p.temperature >= 0.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(kSampleOnHost, ": params[", row,
                                                   "].temperature = ", p.temperature,
                                                   " must be finite and >= 0 (0 for greedy)"));
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(kSampleOnHost, ": params[", row,
                                                   "].top_p = ", p.top_p,
                                                   " must be in (0, 1] (1 turns top-p off)"));
  }
  if (p.top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat(kSampleOnHost, ": params[", row, "].top_k = ",
                                                   p.top_k, " must be >= 0 (0 turns top-k off)"));
  }
  return absl::OkStatus();
}

// Row reads one row of logits as the kernel does: NaN reads as -inf.
class Row {
 public:
  Row(const float* values, int64_t vocab) : values_(values), vocab_(vocab) {}

  int64_t size() const { return vocab_; }
  const float* data() const { return values_; }
  float operator[](int64_t index) const {
    const float value = values_[index];
    return std::isnan(value) ? -kInfinity : value;
  }

 private:
  const float* values_;
  int64_t vocab_;
};

// Argmax: the lowest index among the largest logits (0 if every logit is -inf or NaN). Two
// passes over the raw values: the maximum, in independent lanes the compiler can vectorize (a
// NaN never compares greater, so it reads as -inf), then the first index holding it. It is the
// host's hot loop in greedy decoding (a vocabulary per request per step).
int32_t Argmax(const Row& row) {
  constexpr int kLanes = 16;
  const float* values = row.data();
  const int64_t n = row.size();
  float lanes[kLanes];
  for (float& lane : lanes) lane = -kInfinity;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float v = values[i + j];
      lanes[j] = v > lanes[j] ? v : lanes[j];
    }
  }
  float best = -kInfinity;
  for (; i < n; ++i) best = values[i] > best ? values[i] : best;
  for (float lane : lanes) best = lane > best ? lane : best;
  if (best == -kInfinity) return 0;
  for (int64_t k = 0; k < n; ++k) {
    if (values[k] == best) return static_cast<int32_t>(k);
  }
  return 0;  // not reached: `best` is one of the values
}

// RadixSelect returns the largest key K such that the tokens with key >= K (among those with
// key >= floor_key) weigh at least the target: `target` tokens (top-k, weight 1 each), or with
// `fraction` > 0 that fraction of the total weight, rounded up (top-p, weight = fixed-point
// mass). One 8-bit digit of K per pass, with the kernel's histograms, including its corner case:
// a target of 0 (top-p where every mass is 0, i.e. a row of only -inf/NaN or with +inf) picks
// digit 0.
template <typename Weight>
uint32_t RadixSelect(const Row& row, uint32_t floor_key, uint64_t target, float fraction,
                     Weight weight) {
  uint32_t prefix = 0;
  uint32_t prefix_mask = 0;
  for (int pass = 0; pass < kRadixPasses; ++pass) {
    const int shift = 32 - kRadixBits * (pass + 1);
    uint64_t histogram[kBins] = {};
    for (int64_t i = 0; i < row.size(); ++i) {
      const float value = row[i];
      const uint32_t key = OrderedKey(value);
      if (key < floor_key || (key & prefix_mask) != prefix) continue;
      histogram[(key >> shift) & (kBins - 1)] += weight(value);
    }
    if (pass == 0 && fraction > 0.0f) {
      uint64_t total = 0;
      for (uint64_t bin_weight : histogram) total += bin_weight;
      target = static_cast<uint64_t>(
          std::ceil(static_cast<double>(fraction) * static_cast<double>(total)));
      if (target < 1) target = 1;
      if (target > total) target = total;
    }
    uint32_t selected = 0;
    uint64_t remaining = target;
    uint64_t above = 0;  // the weight of the bins above `bin`
    for (int bin = kBins - 1; bin >= 0; --bin) {
      if (above < target && above + histogram[bin] >= target) {
        selected = static_cast<uint32_t>(bin);
        remaining = target - above;
        break;
      }
      above += histogram[bin];
    }
    prefix |= selected << shift;
    prefix_mask |= static_cast<uint32_t>(kBins - 1) << shift;
    target = remaining;
  }
  return prefix;
}

// NoiseBounds()[c] bounds from above the Gumbel noise GumbelScore computes from a Philox word
// whose top kNoiseCellBits bits are c: u lies below (c + 1) / kNoiseCells (and at most
// 1 - 2^-24), where the increasing g(u) = -log(-log(u)) is largest.
const std::array<float, kNoiseCells>& NoiseBounds() {
  static const std::array<float, kNoiseCells> bounds = [] {
    std::array<float, kNoiseCells> cells;
    for (int c = 0; c < kNoiseCells; ++c) {
      const double u = std::min(static_cast<double>(c + 1) / kNoiseCells, 1.0 - 0x1p-24);
      cells[c] = static_cast<float>(-std::log(-std::log(u)) + kNoiseBoundSlack);
    }
    return cells;
  }();
  return bounds;
}

// GumbelArgmax draws a token among those with key >= floor_key: the highest GumbelScore, the
// lowest index among equal scores, 0 if no score beats -inf. It skips the noise of tokens that
// cannot win, which changes nothing: a computed score is at most logit + T * bound for any bound
// on the noise (rounding is monotonic), so when that is <= the best score so far the token
// neither wins nor ties at a lower index. Like the kernel it bounds the noise twice: by
// kMaxGumbel, before the Philox call of 4 tokens, then per token (the kernel computes a bound,
// the host looks up its cell's), which leaves logarithms for a few tokens per thousand.
int32_t GumbelArgmax(const Row& row, uint32_t floor_key, const SamplingParams& params) {
  const PhiloxKey key{static_cast<uint32_t>(params.seed), static_cast<uint32_t>(params.seed >> 32)};
  const uint32_t offset_low = static_cast<uint32_t>(params.offset);
  const uint32_t offset_high = static_cast<uint32_t>(params.offset >> 32);
  const float temperature = params.temperature;
  const float noise_bound = temperature * kMaxGumbel;
  float best = -kInfinity;
  int32_t best_token = 0;
  auto can_win = [&](float value) {
    return OrderedKey(value) >= floor_key && value + noise_bound > best;
  };
  for (int64_t first = 0; first < row.size(); first += kTokensPerCounter) {
    const int64_t count = std::min(kTokensPerCounter, row.size() - first);
    bool any = false;
    for (int64_t j = 0; j < count; ++j) any |= can_win(row[first + j]);
    if (!any) continue;
    const uint64_t counter = static_cast<uint64_t>(first / kTokensPerCounter);
    const Philox4x32 bits =
        Philox4x32_10({static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32),
                       offset_low, offset_high},
                      key);
    const uint32_t words[kTokensPerCounter] = {bits.x, bits.y, bits.z, bits.w};
    for (int64_t j = 0; j < count; ++j) {
      const float value = row[first + j];
      if (!can_win(value)) continue;
      const float noise_bound_here = NoiseBounds()[words[j] >> (32 - kNoiseCellBits)];
      if (!(value + temperature * noise_bound_here > best)) continue;
      const float score = GumbelScore(value, temperature, words[j]);
      if (score > best) {
        best = score;
        best_token = static_cast<int32_t>(first + j);
      }
    }
  }
  return best_token;
}

int32_t SampleRow(const Row& row, const SamplingParams& params) {
  if (params.temperature == 0.0f || params.top_k == 1) return Argmax(row);
  uint32_t floor_key = 0;
  if (params.top_k > 0 && params.top_k < row.size()) {
    floor_key = RadixSelect(row, 0, static_cast<uint64_t>(params.top_k), 0.0f,
                            [](float) { return uint64_t{1}; });
  }
  if (params.top_p < 1.0f) {
    float max_logit = -kInfinity;
    for (int64_t i = 0; i < row.size(); ++i) max_logit = std::fmax(max_logit, row[i]);
    const float inverse_temperature = Reciprocal(params.temperature);
    floor_key = RadixSelect(row, floor_key, 0, params.top_p, [&](float value) {
      return FixedPointMass(value, max_logit, inverse_temperature);
    });
  }
  return GumbelArgmax(row, floor_key, params);
}

}  // namespace

absl::StatusOr<std::vector<int32_t>> SampleOnHost(absl::Span<const float> logits, int64_t batch,
                                                  int64_t vocab,
                                                  absl::Span<const SamplingParams> params) {
  if (absl::Status s = CheckShapes(kSampleOnHost, logits, batch, vocab); !s.ok()) return s;
  if (static_cast<int64_t>(params.size()) != batch) {
    return absl::InvalidArgumentError(absl::StrCat(kSampleOnHost, ": params has ", params.size(),
                                                   " entries for batch = ", batch,
                                                   "; pass one SamplingParams per row"));
  }
  for (int64_t r = 0; r < batch; ++r) {
    if (absl::Status s = CheckParams(params[r], r); !s.ok()) return s;
  }
  std::vector<int32_t> tokens(batch);
  for (int64_t r = 0; r < batch; ++r) {
    tokens[r] = SampleRow(Row(logits.data() + r * vocab, vocab), params[r]);
  }
  return tokens;
}

absl::StatusOr<std::vector<int32_t>> ArgmaxOnHost(absl::Span<const float> logits, int64_t batch,
                                                  int64_t vocab) {
  if (absl::Status s = CheckShapes(kArgmaxOnHost, logits, batch, vocab); !s.ok()) return s;
  std::vector<int32_t> tokens(batch);
  for (int64_t r = 0; r < batch; ++r) tokens[r] = Argmax(Row(logits.data() + r * vocab, vocab));
  return tokens;
}

}  // namespace troupe::gpu::sampling
