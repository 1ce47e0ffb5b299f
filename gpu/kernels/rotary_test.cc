#include "gpu/kernels/rotary.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "gpu/dtype.h"
#include "gpu/kernels/internal/kernel_test_base.h"
#include "gpu/testing/kernel_testing.h"
#include "gtest/gtest.h"

namespace troupe::gpu::kernels {
namespace {

using internal::AllDTypes;
using internal::Download;
using internal::DTypeParamName;
using internal::ElementAt;
using internal::ExpectInvalidArgument;
using internal::Tail;
using internal::Upload;
using internal::UploadInts;
using internal::WithPadding;
using testing::Quantized;
using testing::RandomFloats;
using testing::RandomInts;
using testing::RelativeError;

struct Config {
  int64_t tokens, heads, kv_heads, head_dim, rotary_dim;
};

// LLaMA-like GQA, partial rotary, head sizes off the vector width (80, 96 with rotary 24,
// odd 7), and multi-query attention.
const Config kConfigs[] = {{7, 8, 2, 128, 128}, {3, 4, 4, 64, 32}, {5, 6, 3, 80, 80},
                           {4, 2, 1, 96, 24},   {3, 3, 1, 7, 6},   {2, 32, 1, 64, 64},
                           {65, 32, 8, 128, 128}};

// Rotates heads [tokens, heads, head_dim] (row stride `stride`) in place, in double.
void RotateReference(std::vector<double>& x, const std::vector<int32_t>& positions,
                     int64_t heads, int64_t head_dim, int64_t rotary_dim, int64_t stride,
                     double theta, RotaryStyle style) {
  const int64_t half = rotary_dim / 2;
  for (size_t t = 0; t < positions.size(); ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      double* head = x.data() + t * stride + h * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const double angle = positions[t] * std::pow(theta, -2.0 * i / rotary_dim);
        const int64_t a = style == RotaryStyle::kNeox ? i : 2 * i;
        const int64_t b = style == RotaryStyle::kNeox ? i + half : 2 * i + 1;
        const double first = head[a], second = head[b];
        head[a] = first * std::cos(angle) - second * std::sin(angle);
        head[b] = second * std::cos(angle) + first * std::sin(angle);
      }
    }
  }
}

std::vector<double> ToDoubles(const std::vector<float>& values) {
  return std::vector<double>(values.begin(), values.end());
}

class RotaryTest : public internal::KernelTest {
 protected:
  // Runs one configuration and compares query and key with the reference.
  void ExpectMatches(const Config& c, RotaryStyle style, float theta,
                     const std::vector<int32_t>& positions) {
    const std::vector<float> q =
        Quantized(dtype(), RandomFloats(c.tokens * c.heads * c.head_dim, c.head_dim, 1.0f, 0.2f));
    const std::vector<float> k = Quantized(
        dtype(), RandomFloats(c.tokens * c.kv_heads * c.head_dim, c.head_dim + 1, 1.0f, 0.2f));
    auto q_device = Upload(dtype(), q);
    auto k_device = Upload(dtype(), k);
    auto positions_device = UploadInts(positions);
    RotaryOptions options;
    options.theta = theta;
    options.style = style;
    ASSERT_TRUE(RotaryEmbedding(dtype(), static_cast<const int32_t*>(positions_device.data()),
                                q_device.data(), k_device.data(), c.tokens, c.heads, c.kv_heads,
                                c.head_dim, c.rotary_dim, options, stream())
                    .ok());
    std::vector<double> q_reference = ToDoubles(q);
    std::vector<double> k_reference = ToDoubles(k);
    RotateReference(q_reference, positions, c.heads, c.head_dim, c.rotary_dim,
                    c.heads * c.head_dim, theta, style);
    RotateReference(k_reference, positions, c.kv_heads, c.head_dim, c.rotary_dim,
                    c.kv_heads * c.head_dim, theta, style);
    EXPECT_LT(RelativeError(Download(q_device), q_reference), tolerance())
        << "query, head_dim " << c.head_dim << " rotary_dim " << c.rotary_dim;
    EXPECT_LT(RelativeError(Download(k_device), k_reference), tolerance())
        << "key, head_dim " << c.head_dim << " rotary_dim " << c.rotary_dim;
  }
};

TEST_P(RotaryTest, NeoxMatchesTheReference) {
  for (const Config& c : kConfigs) {
    ExpectMatches(c, RotaryStyle::kNeox, 10000.0f, RandomInts(c.tokens, c.tokens, 0, 8191));
  }
}

TEST_P(RotaryTest, GptjMatchesTheReference) {
  for (const Config& c : kConfigs) {
    ExpectMatches(c, RotaryStyle::kGptj, 10000.0f, RandomInts(c.tokens, c.tokens, 0, 8191));
  }
}

// LLaMA-3's base and positions far beyond 2^16: the angle is exact in double, so the result
// still matches a double reference.
TEST_P(RotaryTest, LargeBasesAndPositionsKeepTheirPrecision) {
  const Config c{9, 8, 2, 128, 128};
  std::vector<int32_t> positions = RandomInts(c.tokens, 17, 0, 1 << 20);
  positions[0] = 0;
  positions[1] = -5;
  positions[2] = (1 << 30) + 12345;
  ExpectMatches(c, RotaryStyle::kNeox, 500000.0f, positions);
  ExpectMatches(c, RotaryStyle::kGptj, 10000.0f, positions);
}

// q and k as views of a fused qkv buffer [tokens, (heads + 2 kv_heads) * head_dim]: the value
// part and the elements beyond rotary_dim stay exactly as they were.
TEST_P(RotaryTest, RotatesStridedViewsOfAFusedQkvBuffer) {
  for (const Config& c : {Config{5, 8, 2, 128, 64}, Config{4, 4, 2, 36, 20}}) {
    const int64_t stride = (c.heads + 2 * c.kv_heads) * c.head_dim;
    const std::vector<float> qkv = Quantized(dtype(), RandomFloats(c.tokens * stride, 21));
    const std::vector<int32_t> positions = RandomInts(c.tokens, 22, 0, 4095);
    auto qkv_device = Upload(dtype(), qkv);
    auto positions_device = UploadInts(positions);
    RotaryOptions options;
    options.query_stride = stride;
    options.key_stride = stride;
    ASSERT_TRUE(RotaryEmbedding(dtype(), static_cast<const int32_t*>(positions_device.data()),
                                qkv_device.data(), ElementAt(qkv_device, c.heads * c.head_dim),
                                c.tokens, c.heads, c.kv_heads, c.head_dim, c.rotary_dim, options,
                                stream())
                    .ok());
    std::vector<double> reference = ToDoubles(qkv);
    // Queries and keys are consecutive heads of each token row: rotate heads + kv_heads heads.
    RotateReference(reference, positions, c.heads + c.kv_heads, c.head_dim, c.rotary_dim, stride,
                    10000.0, RotaryStyle::kNeox);
    const std::vector<float> result = Download(qkv_device);
    EXPECT_LT(RelativeError(result, reference), tolerance());
    for (int64_t t = 0; t < c.tokens; ++t) {
      for (int64_t h = 0; h < c.heads + 2 * c.kv_heads; ++h) {
        for (int64_t d = 0; d < c.head_dim; ++d) {
          const bool rotated = h < c.heads + c.kv_heads && d < c.rotary_dim;
          const int64_t i = t * stride + h * c.head_dim + d;
          if (!rotated) {
            ASSERT_EQ(result[i], qkv[i]) << "token " << t << " head " << h << " element " << d;
          }
        }
      }
    }
  }
}

TEST_P(RotaryTest, UnalignedPointersUseTheElementPath) {
  const Config c{3, 4, 2, 64, 64};
  for (RotaryStyle style : {RotaryStyle::kNeox, RotaryStyle::kGptj}) {
    const std::vector<float> q = Quantized(dtype(), RandomFloats(c.tokens * c.heads * 64, 31));
    const std::vector<float> k = Quantized(dtype(), RandomFloats(c.tokens * c.kv_heads * 64, 32));
    const std::vector<int32_t> positions = RandomInts(c.tokens, 33, 0, 999);
    auto q_device = Upload(dtype(), WithPadding(q, 1));
    auto k_device = Upload(dtype(), WithPadding(k, 1));
    auto positions_device = UploadInts(positions);
    RotaryOptions options;
    options.style = style;
    ASSERT_TRUE(RotaryEmbedding(dtype(), static_cast<const int32_t*>(positions_device.data()),
                                ElementAt(q_device, 1), ElementAt(k_device, 1), c.tokens, c.heads,
                                c.kv_heads, c.head_dim, c.rotary_dim, options, stream())
                    .ok());
    std::vector<double> q_reference = ToDoubles(q);
    std::vector<double> k_reference = ToDoubles(k);
    RotateReference(q_reference, positions, c.heads, 64, 64, c.heads * 64, 10000.0, style);
    RotateReference(k_reference, positions, c.kv_heads, 64, 64, c.kv_heads * 64, 10000.0, style);
    EXPECT_LT(RelativeError(Tail(Download(q_device), 1), q_reference), tolerance());
    EXPECT_LT(RelativeError(Tail(Download(k_device), 1), k_reference), tolerance());
  }
}

TEST_P(RotaryTest, BadArgumentsAreInvalidArgument) {
  auto data = Upload(dtype(), RandomFloats(1024, 1));
  auto positions_device = UploadInts({0, 1});
  const int32_t* positions = static_cast<const int32_t*>(positions_device.data());
  void* p = data.data();
  const RotaryOptions defaults;
  ExpectInvalidArgument(RotaryEmbedding(dtype(), nullptr, p, p, 1, 4, 2, 64, 64, defaults,
                                        stream()),
                        "positions");
  ExpectInvalidArgument(RotaryEmbedding(dtype(), positions, nullptr, p, 1, 4, 2, 64, 64,
                                        defaults, stream()),
                        "query");
  ExpectInvalidArgument(RotaryEmbedding(dtype(), positions, p, nullptr, 1, 4, 2, 64, 64,
                                        defaults, stream()),
                        "key");
  ExpectInvalidArgument(RotaryEmbedding(dtype(), positions, p, p, 0, 4, 2, 64, 64, defaults,
                                        stream()),
                        "num_tokens");
  ExpectInvalidArgument(RotaryEmbedding(dtype(), positions, p, p, 1, 4, 3, 64, 64, defaults,
                                        stream()),
                        "num_kv_heads");
  ExpectInvalidArgument(RotaryEmbedding(dtype(), positions, p, p, 1, 4, 8, 64, 64, defaults,
                                        stream()),
                        "num_kv_heads");
  ExpectInvalidArgument(RotaryEmbedding(dtype(), positions, p, p, 1, 4, 2, 64, 63, defaults,
                                        stream()),
                        "rotary_dim");
  ExpectInvalidArgument(RotaryEmbedding(dtype(), positions, p, p, 1, 4, 2, 64, 66, defaults,
                                        stream()),
                        "rotary_dim");
  ExpectInvalidArgument(RotaryEmbedding(dtype(), positions, p, p, 1, 4, 2, 0, 0, defaults,
                                        stream()),
                        "head_dim");
  RotaryOptions bad_theta;
  bad_theta.theta = 0.5f;
  ExpectInvalidArgument(RotaryEmbedding(dtype(), positions, p, p, 1, 4, 2, 64, 64, bad_theta,
                                        stream()),
                        "theta");
  RotaryOptions bad_stride;
  bad_stride.query_stride = 100;
  ExpectInvalidArgument(RotaryEmbedding(dtype(), positions, p, p, 1, 4, 2, 64, 64, bad_stride,
                                        stream()),
                        "query_stride");
}

INSTANTIATE_TEST_SUITE_P(Types, RotaryTest, AllDTypes(), DTypeParamName);

}  // namespace
}  // namespace troupe::gpu::kernels
