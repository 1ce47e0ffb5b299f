// CPU tests of SampleOnHost and ArgmaxOnHost, and of the draw arithmetic they share with the
// sampling kernel (internal/draw_math.h). That the GPU draws the same tokens is
// sampling_test's HostSamplerAgreesTokenForToken (it needs a GPU).
#include "gpu/sampling/host_sampling.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gpu/sampling/internal/draw_math.h"
#include "gpu/sampling/internal/kept_probabilities.h"
#include "gpu/sampling/internal/philox.h"
#include "gpu/sampling/sampling_params.h"
#include "gtest/gtest.h"

namespace troupe::gpu::sampling {
namespace {

using internal::KeptProbabilities;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr double kPi = 3.14159265358979323846;

// RandomLogits draws n values from N(0, stddev^2). mt19937_64's sequence is fixed by the C++
// standard (the library's normal_distribution is not), so the logits are the same everywhere.
std::vector<float> RandomLogits(int64_t n, uint64_t seed, float stddev) {
  std::mt19937_64 bits(seed);
  auto uniform = [&bits] { return (static_cast<double>(bits() >> 11) + 0.5) * 0x1p-53; };
  std::vector<float> logits(n);
  for (float& value : logits) {
    value = static_cast<float>(stddev * std::sqrt(-2.0 * std::log(uniform())) *
                               std::cos(2.0 * kPi * uniform()));
  }
  return logits;
}

std::vector<int32_t> Draw(const std::vector<float>& logits, int64_t batch, int64_t vocab,
                          const std::vector<SamplingParams>& params) {
  absl::StatusOr<std::vector<int32_t>> tokens = SampleOnHost(logits, batch, vocab, params);
  EXPECT_TRUE(tokens.ok()) << tokens.status();
  return tokens.ok() ? *tokens : std::vector<int32_t>(batch, -1);
}

// FirstArgmax: the lowest index among the largest values of each row (NaN never is one).
std::vector<int32_t> FirstArgmax(const std::vector<float>& logits, int64_t batch, int64_t vocab) {
  std::vector<int32_t> tokens(batch, 0);
  for (int64_t r = 0; r < batch; ++r) {
    float best = -kInf;
    for (int64_t i = 0; i < vocab; ++i) {
      if (logits[r * vocab + i] > best) {
        best = logits[r * vocab + i];
        tokens[r] = static_cast<int32_t>(i);
      }
    }
  }
  return tokens;
}

SamplingParams Params(float temperature, int32_t top_k = 0, float top_p = 1.0f, uint64_t seed = 0,
                      uint64_t offset = 0) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.seed = seed;
  p.offset = offset;
  return p;
}

// DrawsOverOffsets: `draws` tokens from one row, one per offset 0, 1, ... (a request's
// successive steps), all with `params.seed`.
std::vector<int32_t> DrawsOverOffsets(const std::vector<float>& row, SamplingParams params,
                                      int64_t draws) {
  const int64_t vocab = row.size();
  std::vector<float> logits;
  logits.reserve(draws * vocab);
  std::vector<SamplingParams> all(draws, params);
  for (int64_t d = 0; d < draws; ++d) {
    logits.insert(logits.end(), row.begin(), row.end());
    all[d].offset = d;
  }
  return Draw(logits, draws, vocab, all);
}

std::vector<int64_t> Counts(const std::vector<int32_t>& tokens, int64_t vocab) {
  std::vector<int64_t> counts(vocab, 0);
  for (int32_t token : tokens) {
    EXPECT_GE(token, 0);
    EXPECT_LT(token, vocab);
    if (token >= 0 && token < vocab) ++counts[token];
  }
  return counts;
}

TEST(HostSamplingTest, GreedyIsTheArgmaxWithTiesToTheLowestIndex) {
  constexpr int64_t kBatch = 6;
  for (int64_t vocab : {int64_t{1}, int64_t{5}, int64_t{8}, int64_t{1000}, int64_t{50257}}) {
    std::vector<float> logits = RandomLogits(kBatch * vocab, vocab, 3.0f);
    if (vocab > 1) {
      // Row 1: the maximum twice; row 2: all equal.
      logits[1 * vocab + vocab - 1] = 20.0f;
      logits[1 * vocab + vocab / 2] = 20.0f;
      std::fill(logits.begin() + 2 * vocab, logits.begin() + 3 * vocab, 1.25f);
    }
    const std::vector<int32_t> expected = FirstArgmax(logits, kBatch, vocab);
    if (vocab > 1) {
      EXPECT_EQ(expected[1], vocab / 2);
      EXPECT_EQ(expected[2], 0);
    }
    absl::StatusOr<std::vector<int32_t>> argmax = ArgmaxOnHost(logits, kBatch, vocab);
    ASSERT_TRUE(argmax.ok()) << argmax.status();
    EXPECT_EQ(*argmax, expected) << "vocab " << vocab;
    std::vector<SamplingParams> greedy(kBatch, Params(0.0f, 0, 1.0f, 7));
    EXPECT_EQ(Draw(logits, kBatch, vocab, greedy), expected) << "vocab " << vocab;
    // Greedy ignores top-k and top-p.
    std::vector<SamplingParams> greedy_filtered(kBatch, Params(0.0f, 3, 0.5f, 7));
    EXPECT_EQ(Draw(logits, kBatch, vocab, greedy_filtered), expected) << "vocab " << vocab;
  }
}

TEST(HostSamplingTest, NanIsIgnoredAndRowsOfOnlyMinusInfOrNanGiveZero) {
  constexpr int64_t kVocab = 64;
  const float nan = std::nanf("");
  std::vector<float> logits(4 * kVocab, -kInf);
  logits[0 * kVocab + 0] = nan;  // row 0: NaN first, one finite logit
  logits[0 * kVocab + 17] = 1.0f;
  std::fill(logits.begin() + 1 * kVocab, logits.begin() + 2 * kVocab, nan);  // row 1: all NaN
  for (int64_t i = 0; i < kVocab; i += 2) logits[2 * kVocab + i] = nan;      // row 2: NaN and -inf
  // Row 3 stays all -inf.
  for (const SamplingParams& p :
       {Params(0.0f), Params(1.0f, 0, 1.0f, 3, 9), Params(0.5f, 4, 1.0f, 3, 9),
        Params(2.0f, 0, 0.3f, 3, 9), Params(1.0f, 5, 0.9f, 3, 9), Params(1.0f, 1)}) {
    EXPECT_EQ(Draw(logits, 4, kVocab, std::vector<SamplingParams>(4, p)),
              (std::vector<int32_t>{17, 0, 0, 0}))
        << "temperature " << p.temperature << " top_k " << p.top_k << " top_p " << p.top_p;
  }
  // NaN among finite logits is never drawn, however flat the distribution.
  std::vector<float> row(16, 0.0f);
  for (int64_t i = 0; i < 16; i += 3) row[i] = nan;
  for (const SamplingParams& p : {Params(5.0f), Params(5.0f, 8), Params(5.0f, 0, 0.99f)}) {
    const std::vector<int64_t> counts = Counts(DrawsOverOffsets(row, p, 2000), 16);
    for (int64_t i = 0; i < 16; ++i) {
      if (std::isnan(row[i])) {
        EXPECT_EQ(counts[i], 0) << "NaN token " << i << " drawn";
      } else if (p.top_k == 0) {
        EXPECT_GT(counts[i], 0) << "token " << i << " never drawn";
      }
    }
  }
}

TEST(HostSamplingTest, SeededDrawsAreReproducibleAndDependOnSeedAndOffset) {
  constexpr int64_t kBatch = 64, kVocab = 50272;
  // Near-uniform rows (high entropy): different seeds or offsets should give different tokens.
  const std::vector<float> row = RandomLogits(kVocab, 3, 0.5f);
  std::vector<float> logits;
  for (int64_t r = 0; r < kBatch; ++r) logits.insert(logits.end(), row.begin(), row.end());
  std::vector<SamplingParams> params(kBatch);
  for (int64_t r = 0; r < kBatch; ++r) params[r] = Params(1.0f, 0, 1.0f, 77 + r, 5);
  const std::vector<int32_t> first = Draw(logits, kBatch, kVocab, params);
  EXPECT_EQ(Draw(logits, kBatch, kVocab, params), first);
  EXPECT_GT(std::set<int32_t>(first.begin(), first.end()).size(), kBatch * 9 / 10)
      << "different seeds should mostly give different tokens";
  // The draw depends on (seed, offset) only, not on the row's place in the batch.
  std::vector<SamplingParams> reversed(params.rbegin(), params.rend());
  const std::vector<int32_t> second = Draw(logits, kBatch, kVocab, reversed);
  EXPECT_EQ(std::vector<int32_t>(second.rbegin(), second.rend()), first);
  // One seed over successive offsets: fresh draws each step. So do the high 32 bits of the seed
  // and of the offset (the Philox key's and counter's high words).
  const std::vector<int32_t> steps = DrawsOverOffsets(row, Params(1.0f, 0, 1.0f, 77), kBatch);
  EXPECT_GT(std::set<int32_t>(steps.begin(), steps.end()).size(), kBatch * 9 / 10);
  int64_t same_high_seed = 0, same_high_offset = 0;
  for (int64_t r = 0; r < kBatch; ++r) {
    SamplingParams high_seed = params[r], high_offset = params[r];
    high_seed.seed += uint64_t{1} << 32;
    high_offset.offset += uint64_t{1} << 32;
    same_high_seed += Draw(row, 1, kVocab, {high_seed})[0] == first[r];
    same_high_offset += Draw(row, 1, kVocab, {high_offset})[0] == first[r];
  }
  EXPECT_LT(same_high_seed, kBatch / 10);
  EXPECT_LT(same_high_offset, kBatch / 10);
}

// A tiny top_p keeps only the most likely token, if it is unique (ties at the boundary are all
// kept), so the rows here get a unique maximum.
TEST(HostSamplingTest, TopKOneAndTinyTopPAreGreedy) {
  constexpr int64_t kBatch = 8;
  for (int64_t vocab : {int64_t{7}, int64_t{32000}}) {
    std::vector<float> logits = RandomLogits(kBatch * vocab, vocab + 1, 1.0f);
    const std::vector<int32_t> expected = FirstArgmax(logits, kBatch, vocab);
    for (int64_t r = 0; r < kBatch; ++r) logits[r * vocab + expected[r]] += 1.0f;
    for (const SamplingParams& p : {Params(0.8f, 1), Params(1.0f, 0, 1e-6f),
                                    Params(1.0f, 50, 1e-6f), Params(100.0f, 1, 0.5f)}) {
      std::vector<SamplingParams> params(kBatch, p);
      for (int64_t r = 0; r < kBatch; ++r) params[r].seed = r;
      EXPECT_EQ(Draw(logits, kBatch, vocab, params), expected)
          << "top_k " << p.top_k << " top_p " << p.top_p << " vocab " << vocab;
    }
  }
}

TEST(HostSamplingTest, TokensTiedAtTheTopKOrTopPBoundaryAreAllKept) {
  constexpr int64_t kDraws = 4000;
  // top_k = 2: the second largest logit is 2, held by tokens 1, 2 and 3; all three are kept.
  const std::vector<float> top_k_row = {3.0f, 2.0f, 2.0f, 2.0f, 1.0f, 0.0f};
  const std::vector<int64_t> top_k_counts =
      Counts(DrawsOverOffsets(top_k_row, Params(1.0f, 2, 1.0f, 11), kDraws), 6);
  EXPECT_EQ(top_k_counts, Counts(DrawsOverOffsets(top_k_row, Params(1.0f, 2, 1.0f, 11), kDraws),
                                 6));  // reproducible
  for (int64_t i : {0, 1, 2, 3}) EXPECT_GT(top_k_counts[i], 0) << "token " << i;
  for (int64_t i : {4, 5}) EXPECT_EQ(top_k_counts[i], 0) << "token " << i;
  // top_p = 0.5 at T = 1: token 0 holds e^2 / (e^2 + 3e + 1) = 45% of the mass, so the set must
  // take tokens with logit 1, and takes all three.
  const std::vector<float> top_p_row = {2.0f, 1.0f, 1.0f, 1.0f, 0.0f};
  const std::vector<int64_t> top_p_counts =
      Counts(DrawsOverOffsets(top_p_row, Params(1.0f, 0, 0.5f, 12), kDraws), 5);
  for (int64_t i : {0, 1, 2, 3}) EXPECT_GT(top_p_counts[i], 0) << "token " << i;
  EXPECT_EQ(top_p_counts[4], 0);
}

// Large vocabularies: every draw lies in the top-k / nucleus set computed from the semantics.
TEST(HostSamplingTest, FilteredDrawsStayInTheKeptSet) {
  constexpr int64_t kBatch = 32;
  struct Case {
    float temperature;
    int32_t top_k;
    float top_p;
  };
  for (int64_t vocab : {int64_t{1000}, int64_t{50257}}) {
    const std::vector<float> logits = RandomLogits(kBatch * vocab, 9 + vocab, 2.0f);
    for (const Case& c : {Case{1.5f, 40, 1.0f}, Case{1.5f, 0, 0.9f}, Case{0.7f, 100, 0.5f},
                          Case{1.0f, 1000, 0.95f}, Case{3.0f, 7, 0.3f}}) {
      std::vector<SamplingParams> params(kBatch);
      for (int64_t r = 0; r < kBatch; ++r) {
        params[r] = Params(c.temperature, c.top_k, c.top_p, 5 * r + 1, r);
      }
      const std::vector<int32_t> tokens = Draw(logits, kBatch, vocab, params);
      for (int64_t r = 0; r < kBatch; ++r) {
        const std::vector<float> row(logits.begin() + r * vocab, logits.begin() + (r + 1) * vocab);
        // A little slack on top_p: fixed-point masses of float exponentials (rather than exact
        // ones) may move the boundary by a token. top_k is exact.
        const std::vector<double> kept = KeptProbabilities(
            row, c.temperature, c.top_k, c.top_p < 1 ? std::min(1.0, c.top_p + 1e-4) : 1.0);
        ASSERT_GE(tokens[r], 0);
        ASSERT_LT(tokens[r], vocab);
        EXPECT_GT(kept[tokens[r]], 0) << "row " << r << " drew filtered token " << tokens[r]
                                      << " (top_k " << c.top_k << ", top_p " << c.top_p << ")";
      }
    }
  }
}

// Many draws (successive offsets of one seed) from one small distribution: the frequencies match
// the kept probabilities (chi-square), and filtered-out tokens are never drawn. The seeds are
// fixed, so the outcome is deterministic; a correct sampler exceeds the bound with probability
// below about 1e-4 (for 1 to 19 degrees of freedom), while a 1% bias in one token's probability
// already adds ~20 to the statistic at 65536 draws.
TEST(HostSamplingTest, FrequenciesMatchTheFilteredSoftmax) {
  constexpr int64_t kDraws = 1 << 16;
  struct Case {
    float temperature;
    int32_t top_k;
    float top_p;
  };
  const Case cases[] = {{0.7f, 0, 1.0f}, {1.3f, 3, 1.0f}, {1.0f, 0, 0.6f},
                        {0.9f, 5, 0.8f}, {2.0f, 0, 1.0f}, {1.0f, 0, 0.95f}};
  const std::vector<std::vector<float>> rows = {{1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 0.0f, 1.5f, -0.5f},
                                                {0.3f, -0.7f, 1.1f, 0.9f, -2.0f},
                                                RandomLogits(20, 21, 0.7f)};
  uint64_t seed = 1;
  for (const std::vector<float>& row : rows) {
    for (const Case& c : cases) {
      const std::vector<double> expected = KeptProbabilities(row, c.temperature, c.top_k, c.top_p);
      const std::vector<int64_t> counts =
          Counts(DrawsOverOffsets(row, Params(c.temperature, c.top_k, c.top_p, seed++), kDraws),
                 row.size());
      double chi_square = 0;
      int kept = 0;
      for (size_t i = 0; i < row.size(); ++i) {
        if (expected[i] == 0) {
          EXPECT_EQ(counts[i], 0) << "token " << i << " is filtered out";
          continue;
        }
        ++kept;
        const double mean = expected[i] * kDraws;
        chi_square += (counts[i] - mean) * (counts[i] - mean) / mean;
      }
      const int dof = kept - 1;
      // Above the 1 - 1e-4 quantile of chi-square(dof): 15.1 for dof 1, 47.4 for dof 19.
      const double bound = dof + 4.3 * std::sqrt(2.0 * dof) + 8;
      EXPECT_LT(chi_square, bound) << "vocab " << row.size() << " T " << c.temperature << " top_k "
                                   << c.top_k << " top_p " << c.top_p;
    }
  }
}

// BruteForceDraw is the draw as the kernel defines it, computed the plain way: thresholds by
// sorting keys (the kernel uses a radix select), a Gumbel score for every kept token (the
// samplers skip tokens that cannot win).
int32_t BruteForceDraw(const std::vector<float>& row, const SamplingParams& p) {
  const int64_t vocab = row.size();
  std::vector<uint32_t> keys(vocab);
  for (int64_t i = 0; i < vocab; ++i) keys[i] = internal::OrderedKey(row[i]);
  std::vector<int64_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return keys[a] > keys[b]; });
  uint32_t floor_key = 0;
  if (p.top_k > 0 && p.top_k < vocab) floor_key = keys[order[p.top_k - 1]];
  if (p.top_p < 1.0f) {
    const float max_logit = row[order[0]];
    const float inverse_temperature = internal::Reciprocal(p.temperature);
    std::vector<uint64_t> mass(vocab, 0);
    uint64_t total = 0;
    for (int64_t i = 0; i < vocab; ++i) {
      if (keys[i] >= floor_key) {
        total += mass[i] = internal::FixedPointMass(row[i], max_logit, inverse_temperature);
      }
    }
    const uint64_t target = static_cast<uint64_t>(std::ceil(double{p.top_p} * total));
    uint64_t cumulative = 0;
    for (int64_t i : order) {
      cumulative += mass[i];
      if (cumulative >= target) {
        floor_key = keys[i];
        break;
      }
    }
  }
  float best = -kInf;
  int32_t best_token = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (keys[i] < floor_key) continue;
    const uint64_t counter = i / 4;
    const internal::Philox4x32 bits = internal::Philox4x32_10(
        {static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32),
         static_cast<uint32_t>(p.offset), static_cast<uint32_t>(p.offset >> 32)},
        {static_cast<uint32_t>(p.seed), static_cast<uint32_t>(p.seed >> 32)});
    const uint32_t words[4] = {bits.x, bits.y, bits.z, bits.w};
    const float score = internal::GumbelScore(row[i], p.temperature, words[i % 4]);
    if (score > best) {
      best = score;
      best_token = static_cast<int32_t>(i);
    }
  }
  return best_token;
}

// SampleOnHost's radix selects and skipped noise give exactly the brute-force draw.
TEST(HostSamplingTest, MatchesTheBruteForceDraw) {
  constexpr int64_t kBatch = 48;
  for (int64_t vocab : {int64_t{3}, int64_t{8}, int64_t{1001}, int64_t{32000}}) {
    for (float stddev : {0.3f, 3.0f}) {
      // Finite logits (no NaN, whose key the brute force would not map to -inf's).
      const std::vector<float> logits = RandomLogits(kBatch * vocab, vocab * 10 + 1, stddev);
      std::vector<SamplingParams> params(kBatch);
      const SamplingParams kinds[] = {Params(1.0f),           Params(0.6f, 20),
                                      Params(1.4f, 0, 0.9f),  Params(0.8f, 100, 0.7f),
                                      Params(3.0f, 2, 0.99f), Params(0.05f, 0, 0.2f)};
      for (int64_t r = 0; r < kBatch; ++r) {
        params[r] = kinds[r % std::size(kinds)];
        params[r].seed = 0x9e3779b97f4a7c15ull * (r + 1);
        params[r].offset = (static_cast<uint64_t>(r) << 33) + r;
      }
      const std::vector<int32_t> tokens = Draw(logits, kBatch, vocab, params);
      for (int64_t r = 0; r < kBatch; ++r) {
        const std::vector<float> row(logits.begin() + r * vocab, logits.begin() + (r + 1) * vocab);
        EXPECT_EQ(tokens[r], BruteForceDraw(row, params[r]))
            << "row " << r << " vocab " << vocab << " stddev " << stddev;
      }
    }
  }
}

void ExpectInvalidArgument(const absl::Status& status, const std::string& argument) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(std::string(status.message()).find(argument), std::string::npos)
      << "message should name " << argument << ": " << status;
}

TEST(HostSamplingTest, BadArgumentsAreInvalidArgument) {
  const std::vector<float> logits = RandomLogits(16, 1, 1.0f);
  const std::vector<SamplingParams> two(2);
  auto with = [](auto change) {
    std::vector<SamplingParams> params(2);
    change(params[1]);
    return params;
  };
  auto sample = [&](const std::vector<SamplingParams>& params) {
    return SampleOnHost(logits, 2, 8, params).status();
  };
  ExpectInvalidArgument(sample(with([](SamplingParams& s) { s.temperature = -1.0f; })),
                        "params[1].temperature");
  ExpectInvalidArgument(sample(with([](SamplingParams& s) { s.temperature = NAN; })),
                        "temperature");
  ExpectInvalidArgument(sample(with([](SamplingParams& s) { s.temperature = kInf; })),
                        "temperature");
  ExpectInvalidArgument(sample(with([](SamplingParams& s) { s.top_p = 0.0f; })), "top_p");
  ExpectInvalidArgument(sample(with([](SamplingParams& s) { s.top_p = 1.5f; })), "top_p");
  ExpectInvalidArgument(sample(with([](SamplingParams& s) { s.top_p = NAN; })), "top_p");
  ExpectInvalidArgument(sample(with([](SamplingParams& s) { s.top_k = -1; })), "top_k");
  ExpectInvalidArgument(SampleOnHost(logits, 2, 0, two).status(), "vocab");
  ExpectInvalidArgument(SampleOnHost(logits, 1, int64_t{1} << 31, two).status(), "vocab");
  ExpectInvalidArgument(SampleOnHost(logits, 0, 8, {}).status(), "batch");
  ExpectInvalidArgument(SampleOnHost(logits, int64_t{1} << 31, 8, two).status(), "batch");
  ExpectInvalidArgument(SampleOnHost(logits, 3, 8, two).status(), "logits");  // 24 != 16
  ExpectInvalidArgument(SampleOnHost(logits, 2, 7, two).status(), "logits");
  ExpectInvalidArgument(SampleOnHost(logits, 1, 16, two).status(), "params");
  ExpectInvalidArgument(ArgmaxOnHost(logits, 2, -3).status(), "vocab");
  ExpectInvalidArgument(ArgmaxOnHost(logits, -1, 16).status(), "batch");
  ExpectInvalidArgument(ArgmaxOnHost(logits, 4, 8).status(), "logits");
  EXPECT_TRUE(SampleOnHost(logits, 2, 8, two).ok());
  EXPECT_TRUE(ArgmaxOnHost(logits, 1, 16).ok());
}

// The shared arithmetic: accurate to about an ulp, and within the bounds the samplers rely on.
double UlpsBetween(float actual, double exact) {
  const float rounded = static_cast<float>(exact);
  const double ulp = std::nextafter(std::fabs(rounded), kInf) - std::fabs(rounded);
  return std::fabs(actual - exact) / ulp;
}

TEST(DrawMathTest, LogAndExpAreWithinAnUlpOrSo) {
  // Every 61st float of the ranges the samplers use (Log: [2^-24, 17], the uniforms and
  // exponentials; Exp: [-23, 0], the scaled logit gaps). An exhaustive sweep gave 0.95 and 1.14
  // ulp at most.
  double worst_log = 0, worst_exp = 0;
  for (uint32_t bits = internal::FloatBits(0x1p-24f); bits <= internal::FloatBits(17.0f);
       bits += 61) {
    const float x = internal::BitsToFloat(bits);
    worst_log = std::max(worst_log, UlpsBetween(internal::Log(x), std::log(double{x})));
  }
  for (uint32_t bits = internal::FloatBits(-0x1p-40f); bits <= internal::FloatBits(-23.0f);
       bits += 61) {
    const float x = internal::BitsToFloat(bits);
    worst_exp = std::max(worst_exp, UlpsBetween(internal::Exp(x), std::exp(double{x})));
  }
  EXPECT_LT(worst_log, 1.0);
  EXPECT_LT(worst_exp, 1.2);
  EXPECT_EQ(internal::Log(1.0f), 0.0f);
  EXPECT_EQ(internal::Exp(0.0f), 1.0f);
  EXPECT_EQ(internal::Exp(-kInf), 0.0f);
  EXPECT_EQ(internal::Exp(std::nanf("")), 0.0f);
}

TEST(DrawMathTest, MassesAndScoresKeepTheirBounds) {
  const float inverse_temperature = internal::Reciprocal(0.7f);
  EXPECT_EQ(internal::FixedPointMass(2.5f, 2.5f, inverse_temperature), uint64_t{1} << 32);
  EXPECT_EQ(internal::FixedPointMass(-kInf, 2.5f, inverse_temperature), 0u);
  EXPECT_EQ(internal::FixedPointMass(-20.0f, 2.5f, inverse_temperature), 0u);
  const double expected = std::exp((1.0 - 2.5) / 0.7) * 0x1p32;
  EXPECT_NEAR(static_cast<double>(internal::FixedPointMass(1.0f, 2.5f, inverse_temperature)),
              expected, expected * 3e-7);
  // The Gumbel noise of the extreme uniforms (2^-24 and 1 - 2^-24) stays below kMaxGumbel,
  // which the samplers' skipping relies on.
  const float lowest = internal::GumbelScore(0.0f, 1.0f, 0u);
  const float highest = internal::GumbelScore(0.0f, 1.0f, 0xffffffffu);
  EXPECT_NEAR(lowest, -std::log(-std::log(0x1p-24)), 1e-5);
  EXPECT_NEAR(highest, -std::log(-std::log1p(-0x1p-24)), 1e-5);
  EXPECT_LT(highest, internal::kMaxGumbel);
  // Keys order floats, -inf lowest.
  const float ordered[] = {-kInf, -1e30f, -1.0f, -1e-40f, -0.0f, 0.0f, 1e-40f, 1.0f, 1e30f, kInf};
  for (size_t i = 1; i < std::size(ordered); ++i) {
    EXPECT_LT(internal::OrderedKey(ordered[i - 1]), internal::OrderedKey(ordered[i])) << i;
  }
}

}  // namespace
}  // namespace troupe::gpu::sampling
