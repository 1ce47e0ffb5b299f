// CPU test of the Philox4x32-10 generator shared with the sampling kernel.
#include "gpu/sampling/internal/philox.h"

#include <cmath>
#include <cstdint>

#include "gtest/gtest.h"

namespace troupe::gpu::sampling::internal {
namespace {

void ExpectBits(const Philox4x32& actual, const Philox4x32& expected) {
  EXPECT_EQ(actual.x, expected.x);
  EXPECT_EQ(actual.y, expected.y);
  EXPECT_EQ(actual.z, expected.z);
  EXPECT_EQ(actual.w, expected.w);
}

// The philox4x32 10 lines of Random123's kat_vectors (counter, key -> output).
TEST(PhiloxTest, MatchesRandom123KnownAnswers) {
  ExpectBits(Philox4x32_10({0, 0, 0, 0}, {0, 0}),
             {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  ExpectBits(Philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
                           {0xffffffff, 0xffffffff}),
             {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  ExpectBits(Philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
                           {0xa4093822, 0x299f31d0}),
             {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST(PhiloxTest, OpenUnitIntervalExcludesBothEnds) {
  EXPECT_GT(OpenUnitInterval(0), 0.0f);
  EXPECT_LT(OpenUnitInterval(0xffffffffu), 1.0f);
  EXPECT_GT(-std::log(OpenUnitInterval(0xffffffffu)), 0.0f);
  EXPECT_FLOAT_EQ(OpenUnitInterval(0x80000000u), 0.5f + 0.5f / 8388608.0f);
}

TEST(PhiloxTest, UniformsHaveTheRightMean) {
  double sum = 0;
  constexpr int kDraws = 1 << 16;
  for (uint32_t i = 0; i < kDraws / 4; ++i) {
    const Philox4x32 bits = Philox4x32_10({i, 0, 0, 0}, {1234, 5678});
    sum += OpenUnitInterval(bits.x) + OpenUnitInterval(bits.y) + OpenUnitInterval(bits.z) +
           OpenUnitInterval(bits.w);
  }
  // Standard error of the mean of 2^16 uniforms: 1 / sqrt(12 * 2^16) ~ 0.0011.
  EXPECT_NEAR(sum / kDraws, 0.5, 0.006);
}

}  // namespace
}  // namespace troupe::gpu::sampling::internal
