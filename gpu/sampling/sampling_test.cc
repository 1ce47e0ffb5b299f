#include "gpu/sampling/sampling.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <numeric>
#include <set>
#include <vector>

#include "gpu/dtype.h"
#include "gpu/kernels/internal/kernel_test_base.h"
#include "gpu/sampling/host_sampling.h"
#include "gpu/sampling/internal/kept_probabilities.h"
#include "gpu/testing/kernel_testing.h"
#include "gtest/gtest.h"

namespace troupe::gpu::sampling {
namespace {

using internal::KeptProbabilities;

using kernels::internal::AllDTypes;
using kernels::internal::Download;
using kernels::internal::DownloadInts;
using kernels::internal::DTypeParamName;
using kernels::internal::ExpectInvalidArgument;
using kernels::internal::Poisoned;
using kernels::internal::Upload;
using testing::Quantized;
using testing::RandomFloats;

// Vocabulary sizes in use: GPT-2 (50257, odd: the element path), OPT (50272), LLaMA-2 (32000),
// LLaMA-3 (128256), Qwen2 (151936), and small ones.
const int64_t kVocabs[] = {1, 5, 7, 8, 1000, 32000, 50257, 50272, 128256, 151936};

// CpuArgmax: the lowest index among the largest values of each row.
std::vector<int32_t> CpuArgmax(const std::vector<float>& logits, int64_t batch, int64_t vocab) {
  std::vector<int32_t> tokens(batch);
  for (int64_t r = 0; r < batch; ++r) {
    const float* row = logits.data() + r * vocab;
    tokens[r] = static_cast<int32_t>(std::max_element(row, row + vocab) - row);
  }
  return tokens;
}

// WithUniqueMax raises each row's largest logit by 1, so no other logit ties with it (fp16 and
// bf16 round many random logits to equal values); the result is still representable.
std::vector<float> WithUniqueMax(DType dtype, std::vector<float> logits, int64_t batch,
                                 int64_t vocab) {
  const std::vector<int32_t> argmax = CpuArgmax(logits, batch, vocab);
  for (int64_t r = 0; r < batch; ++r) logits[r * vocab + argmax[r]] += 1.0f;
  return Quantized(dtype, logits);
}

class SamplingTest : public kernels::internal::KernelTest {
 protected:
  // Samples `batch` rows of `logits` (already quantized to dtype) on the device.
  std::vector<int32_t> Run(const std::vector<float>& logits, int64_t batch, int64_t vocab,
                           const std::vector<SamplingParams>& params) {
    auto logits_device = Upload(dtype(), logits);
    auto tokens = Poisoned(DType::kFloat32, batch);  // all bits set: token -1
    const absl::Status status =
        Sample(dtype(), logits_device.data(), static_cast<int32_t*>(tokens.data()), batch, vocab,
               params, stream());
    EXPECT_TRUE(status.ok()) << status;
    return DownloadInts(tokens);
  }

  // Same logits in every row, row r seeded with r: `rows` independent draws.
  std::vector<int64_t> Counts(const std::vector<float>& row_logits, SamplingParams params,
                              int64_t rows) {
    const int64_t vocab = row_logits.size();
    std::vector<float> logits;
    for (int64_t r = 0; r < rows; ++r) {
      logits.insert(logits.end(), row_logits.begin(), row_logits.end());
    }
    std::vector<SamplingParams> all(rows, params);
    for (int64_t r = 0; r < rows; ++r) all[r].seed = 1000003 * r + 17;
    std::vector<int64_t> counts(vocab, 0);
    for (int32_t token : Run(logits, rows, vocab, all)) {
      EXPECT_GE(token, 0);
      EXPECT_LT(token, vocab);
      if (token >= 0 && token < vocab) ++counts[token];
    }
    return counts;
  }
};

SamplingParams Greedy() {
  SamplingParams p;
  p.temperature = 0.0f;
  return p;
}

TEST_P(SamplingTest, GreedyIsTheCpuArgmax) {
  constexpr int64_t kBatch = 5;
  for (int64_t vocab : kVocabs) {
    const std::vector<float> logits =
        Quantized(dtype(), RandomFloats(kBatch * vocab, vocab, 3.0f, -1.0f));
    const std::vector<int32_t> expected = CpuArgmax(logits, kBatch, vocab);
    EXPECT_EQ(Run(logits, kBatch, vocab, std::vector<SamplingParams>(kBatch, Greedy())), expected)
        << "vocab " << vocab;
    auto logits_device = Upload(dtype(), logits);
    auto tokens = Poisoned(DType::kFloat32, kBatch);
    ASSERT_TRUE(Argmax(dtype(), logits_device.data(), static_cast<int32_t*>(tokens.data()),
                       kBatch, vocab, stream())
                    .ok());
    EXPECT_EQ(DownloadInts(tokens), expected) << "vocab " << vocab;
  }
}

TEST_P(SamplingTest, GreedyTiesGoToTheLowestIndexAndNanIsIgnored) {
  constexpr int64_t kVocab = 4096;
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> logits(4 * kVocab, 0.5f);
  logits[0 * kVocab + 3000] = 2.0f;  // row 0: tie between 100 and 3000
  logits[0 * kVocab + 100] = 2.0f;
  for (int64_t i = 0; i < kVocab; ++i) logits[1 * kVocab + i] = -inf;  // row 1: all -inf
  logits[2 * kVocab + 0] = std::nanf("");                                // row 2: NaN first
  logits[2 * kVocab + 17] = 1.0f;
  for (int64_t i = 0; i < kVocab; ++i) logits[3 * kVocab + i] = 1.25f;  // row 3: all equal
  EXPECT_EQ(Run(logits, 4, kVocab, std::vector<SamplingParams>(4, Greedy())),
            (std::vector<int32_t>{100, 0, 17, 0}));
}

TEST_P(SamplingTest, SeededDrawsAreReproducibleAndFollowTheirParams) {
  constexpr int64_t kBatch = 64, kVocab = 50272;
  // Near-uniform rows (high entropy): different seeds should give different tokens.
  const std::vector<float> row = Quantized(dtype(), RandomFloats(kVocab, 3, 0.5f));
  std::vector<float> logits;
  for (int64_t r = 0; r < kBatch; ++r) logits.insert(logits.end(), row.begin(), row.end());
  std::vector<SamplingParams> params(kBatch);
  for (int64_t r = 0; r < kBatch; ++r) params[r].seed = 77 + r;
  const std::vector<int32_t> first = Run(logits, kBatch, kVocab, params);
  EXPECT_EQ(Run(logits, kBatch, kVocab, params), first);
  EXPECT_GT(std::set<int32_t>(first.begin(), first.end()).size(), 1u)
      << "different seeds gave one token";
  // The draw depends on (seed, offset) only, not on the row's place in the batch.
  std::vector<SamplingParams> reversed(params.rbegin(), params.rend());
  const std::vector<int32_t> second = Run(logits, kBatch, kVocab, reversed);
  EXPECT_EQ(std::vector<int32_t>(second.rbegin(), second.rend()), first);
  // Another offset (the next decode step) draws afresh.
  for (SamplingParams& p : params) p.offset = 1;
  EXPECT_NE(Run(logits, kBatch, kVocab, params), first);
}

// A tiny top_p keeps only the most likely token, if it is unique (ties at the boundary are all
// kept), so the rows here have a unique maximum.
TEST_P(SamplingTest, TopKOneAndTinyTopPAreGreedy) {
  constexpr int64_t kBatch = 8;
  for (int64_t vocab : {int64_t{7}, int64_t{32000}, int64_t{128256}}) {
    const std::vector<float> logits = WithUniqueMax(
        dtype(), Quantized(dtype(), RandomFloats(kBatch * vocab, vocab)), kBatch, vocab);
    const std::vector<int32_t> expected = CpuArgmax(logits, kBatch, vocab);
    std::vector<SamplingParams> top_k(kBatch), top_p(kBatch), both(kBatch);
    for (int64_t r = 0; r < kBatch; ++r) {
      top_k[r].temperature = 0.8f;
      top_k[r].top_k = 1;
      top_k[r].seed = r;
      top_p[r].top_p = 1e-6f;
      top_p[r].seed = r;
      both[r].top_k = 50;
      both[r].top_p = 1e-6f;
      both[r].seed = r;
    }
    EXPECT_EQ(Run(logits, kBatch, vocab, top_k), expected) << "top_k = 1, vocab " << vocab;
    EXPECT_EQ(Run(logits, kBatch, vocab, top_p), expected) << "top_p = 1e-6, vocab " << vocab;
    EXPECT_EQ(Run(logits, kBatch, vocab, both), expected) << "top_k 50 + top_p, vocab " << vocab;
  }
}

// Many independent draws from one small distribution: the frequencies match the kept
// probabilities (chi-square), and filtered-out tokens are never drawn. The seeds are fixed, so
// the outcome is deterministic; a correct sampler exceeds the bound with probability below
// about 1e-4 (for 1 to 7 degrees of freedom), while a 1% bias in one token's probability already
// adds ~20 to the statistic at 65536 draws.
TEST_P(SamplingTest, FrequenciesMatchTheFilteredSoftmax) {
  constexpr int64_t kDraws = 1 << 16;
  struct Case {
    float temperature;
    int32_t top_k;
    float top_p;
  };
  const Case cases[] = {{0.7f, 0, 1.0f}, {1.3f, 3, 1.0f}, {1.0f, 0, 0.6f}, {0.9f, 5, 0.8f},
                        {2.0f, 0, 1.0f}};
  // Vocab 8: the vector path; vocab 5: the element path.
  const std::vector<std::vector<float>> distributions = {
      {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 0.0f, 1.5f, -0.5f}, {0.3f, -0.7f, 1.1f, 0.9f, -2.0f}};
  for (const std::vector<float>& raw : distributions) {
    const std::vector<float> row = Quantized(dtype(), raw);
    for (const Case& c : cases) {
      SamplingParams params;
      params.temperature = c.temperature;
      params.top_k = c.top_k;
      params.top_p = c.top_p;
      const std::vector<double> expected =
          KeptProbabilities(row, c.temperature, c.top_k, c.top_p);
      const std::vector<int64_t> counts = Counts(row, params, kDraws);
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
      // Above the 1 - 1e-4 quantile of chi-square(dof): 15.1 for dof 1, 31.1 for dof 7.
      const double bound = dof + 4.3 * std::sqrt(2.0 * dof) + 8;
      EXPECT_LT(chi_square, bound) << "vocab " << row.size() << " T " << c.temperature
                                   << " top_k " << c.top_k << " top_p " << c.top_p;
    }
  }
}

// Large vocabularies: every draw lies in the CPU's top-k / nucleus set.
TEST_P(SamplingTest, FilteredDrawsStayInTheKeptSet) {
  constexpr int64_t kBatch = 64;
  struct Case {
    int32_t top_k;
    float top_p;
  };
  for (int64_t vocab : {int64_t{50257}, int64_t{128256}}) {
    const std::vector<float> logits = Quantized(dtype(), RandomFloats(kBatch * vocab, 9, 2.0f));
    for (const Case& c : {Case{40, 1.0f}, Case{0, 0.9f}, Case{100, 0.5f}, Case{1000, 0.95f}}) {
      std::vector<SamplingParams> params(kBatch);
      for (int64_t r = 0; r < kBatch; ++r) {
        params[r].temperature = 1.5f;
        params[r].top_k = c.top_k;
        params[r].top_p = c.top_p;
        params[r].seed = 5 * r + 1;
      }
      const std::vector<int32_t> tokens = Run(logits, kBatch, vocab, params);
      for (int64_t r = 0; r < kBatch; ++r) {
        const std::vector<float> row(logits.begin() + r * vocab, logits.begin() + (r + 1) * vocab);
        // A little slack on top_p: the kernel's fixed-point masses and float exponentials may
        // move the boundary by one token.
        const std::vector<double> kept = KeptProbabilities(
            row, 1.5, c.top_k, c.top_p < 1 ? std::min(1.0, c.top_p + 1e-4) : 1.0);
        ASSERT_GE(tokens[r], 0);
        ASSERT_LT(tokens[r], vocab);
        EXPECT_GT(kept[tokens[r]], 0) << "row " << r << " drew filtered token " << tokens[r]
                                      << " (top_k " << c.top_k << ", top_p " << c.top_p << ")";
      }
    }
  }
}

// Batches beyond one launch (512 rows), with greedy and sampled rows mixed.
TEST_P(SamplingTest, LargeMixedBatches) {
  constexpr int64_t kBatch = 1100, kVocab = 257;
  const std::vector<float> logits = Quantized(dtype(), RandomFloats(kBatch * kVocab, 4, 2.0f));
  const std::vector<int32_t> argmax = CpuArgmax(logits, kBatch, kVocab);
  std::vector<SamplingParams> params(kBatch);
  for (int64_t r = 0; r < kBatch; ++r) {
    params[r].seed = r;
    if (r % 3 == 0) params[r] = Greedy();
    if (r % 3 == 1) params[r].top_k = 20;
  }
  const std::vector<int32_t> tokens = Run(logits, kBatch, kVocab, params);
  EXPECT_EQ(Run(logits, kBatch, kVocab, params), tokens);
  for (int64_t r = 0; r < kBatch; ++r) {
    ASSERT_GE(tokens[r], 0) << "row " << r << " was not written";
    ASSERT_LT(tokens[r], kVocab);
    if (r % 3 == 0) {
      EXPECT_EQ(tokens[r], argmax[r]) << "greedy row " << r;
    }
  }
}

// SampleOnHost (host_sampling.h) draws exactly the kernel's tokens, row for row: both run the
// same algorithm through the same per-token arithmetic (internal/draw_math.h: only correctly
// rounded operations, never __expf or a library logf), every sum is an exact integer sum and
// every reduction breaks ties by the lowest index, so no summation order or thread layout can
// tell them apart and the test asks for equality, not a tolerance. The host reads the logits
// as the kernel does: the device array converted back to float.
TEST_P(SamplingTest, HostSamplerAgreesTokenForToken) {
  struct Case {
    float temperature;
    int32_t top_k;
    float top_p;
  };
  const Case kinds[] = {{0.0f, 0, 1.0f},       {1.0f, 0, 1.0f},  {0.7f, 50, 1.0f}, {1.3f, 0, 0.9f},
                        {0.9f, 1000, 0.95f},   {0.5f, 1, 1.0f},  {1.0f, 0, 1e-6f}, {2.0f, 3, 0.5f},
                        {1.0f, 200000, 0.99f}, {0.05f, 0, 0.3f}, {4.0f, 40, 1.0f}, {1.0f, 7, 0.8f}};
  const float nan = std::nanf("");
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t vocab : kVocabs) {
    // Small vocabularies get more rows than one launch takes (512).
    const int64_t batch = vocab <= 1000 ? 600 : 48;
    std::vector<float> values = RandomFloats(batch * vocab, vocab + 11, 2.0f);
    for (int64_t r = 0; r < batch; ++r) {
      // Flat to peaked rows, a few NaN and -inf logits, and an all -inf row.
      const float scale = 0.05f + static_cast<float>(r % 7);
      for (int64_t i = 0; i < vocab; ++i) values[r * vocab + i] *= scale;
      if (vocab > 1) values[r * vocab + (r * 31) % vocab] = r % 2 ? nan : -inf;
      if (r == 5) std::fill(values.begin() + r * vocab, values.begin() + (r + 1) * vocab, -inf);
    }
    auto logits = Upload(dtype(), values);
    const std::vector<float> seen = Download(logits);
    std::vector<SamplingParams> params(batch);
    for (int64_t r = 0; r < batch; ++r) {
      const Case& c = kinds[r % std::size(kinds)];
      params[r].temperature = c.temperature;
      params[r].top_k = c.top_k;
      params[r].top_p = c.top_p;
      params[r].seed = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(r + vocab);
      params[r].offset = static_cast<uint64_t>(r / 3) + (r % 3 == 0 ? uint64_t{1} << 40 : 0);
    }
    auto tokens = Poisoned(DType::kFloat32, batch);
    ASSERT_TRUE(Sample(dtype(), logits.data(), static_cast<int32_t*>(tokens.data()), batch, vocab,
                       params, stream())
                    .ok());
    const std::vector<int32_t> device = DownloadInts(tokens);
    const absl::StatusOr<std::vector<int32_t>> host = SampleOnHost(seen, batch, vocab, params);
    ASSERT_TRUE(host.ok()) << host.status();
    int64_t mismatches = 0;
    for (int64_t r = 0; r < batch; ++r) {
      if (device[r] == (*host)[r]) continue;
      if (++mismatches <= 10) {
        ADD_FAILURE() << "vocab " << vocab << " row " << r << ": device " << device[r] << ", host "
                      << (*host)[r] << " (temperature " << params[r].temperature << ", top_k "
                      << params[r].top_k << ", top_p " << params[r].top_p << ")";
      }
    }
    EXPECT_EQ(mismatches, 0) << "of " << batch << " rows, vocab " << vocab;
  }
}

TEST_P(SamplingTest, BadArgumentsAreInvalidArgument) {
  auto logits = Upload(dtype(), RandomFloats(16, 1));
  auto tokens_device = Poisoned(DType::kFloat32, 2);
  int32_t* tokens = static_cast<int32_t*>(tokens_device.data());
  const void* p = logits.data();
  const std::vector<SamplingParams> two(2);
  auto with = [](auto change) {
    std::vector<SamplingParams> params(2);
    change(params[1]);
    return params;
  };
  ExpectInvalidArgument(Sample(dtype(), p, tokens, 2, 8,
                               with([](SamplingParams& s) { s.temperature = -1.0f; }), stream()),
                        "temperature");
  ExpectInvalidArgument(Sample(dtype(), p, tokens, 2, 8,
                               with([](SamplingParams& s) { s.temperature = NAN; }), stream()),
                        "temperature");
  ExpectInvalidArgument(
      Sample(dtype(), p, tokens, 2, 8, with([](SamplingParams& s) { s.top_p = 0.0f; }), stream()),
      "top_p");
  ExpectInvalidArgument(
      Sample(dtype(), p, tokens, 2, 8, with([](SamplingParams& s) { s.top_p = 1.5f; }), stream()),
      "top_p");
  ExpectInvalidArgument(
      Sample(dtype(), p, tokens, 2, 8, with([](SamplingParams& s) { s.top_p = NAN; }), stream()),
      "top_p");
  ExpectInvalidArgument(
      Sample(dtype(), p, tokens, 2, 8, with([](SamplingParams& s) { s.top_k = -1; }), stream()),
      "top_k");
  ExpectInvalidArgument(Sample(dtype(), p, tokens, 2, 0, two, stream()), "vocab");
  ExpectInvalidArgument(Sample(dtype(), p, tokens, 0, 8, {}, stream()), "batch");
  ExpectInvalidArgument(Sample(dtype(), p, tokens, 3, 8, two, stream()), "params");
  ExpectInvalidArgument(Sample(dtype(), nullptr, tokens, 2, 8, two, stream()), "logits");
  ExpectInvalidArgument(Sample(dtype(), p, nullptr, 2, 8, two, stream()), "token_ids");
  ExpectInvalidArgument(Argmax(dtype(), p, tokens, 2, -3, stream()), "vocab");
}

INSTANTIATE_TEST_SUITE_P(Types, SamplingTest, AllDTypes(), DTypeParamName);

}  // namespace
}  // namespace troupe::gpu::sampling
