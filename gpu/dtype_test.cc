#include "gpu/dtype.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "gtest/gtest.h"

namespace troupe::gpu {
namespace {

TEST(DTypeTest, SizesAndNames) {
  EXPECT_EQ(SizeOf(DType::kFloat32), 4u);
  EXPECT_EQ(SizeOf(DType::kFloat16), 2u);
  EXPECT_EQ(SizeOf(DType::kBFloat16), 2u);
  EXPECT_STREQ(DTypeName(DType::kBFloat16), "bf16");
}

TEST(DTypeTest, HalfRoundTripsEveryFiniteValue) {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const uint16_t h = static_cast<uint16_t>(bits);
    const float f = HalfToFloat(h);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(f))));
      continue;
    }
    EXPECT_EQ(FloatToHalf(f), h) << std::hex << bits;
  }
}

TEST(DTypeTest, HalfRoundsToNearestEven) {
  EXPECT_EQ(HalfToFloat(FloatToHalf(1.0f)), 1.0f);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bffu);             // Largest finite.
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00u);             // Rounds to Inf.
  EXPECT_EQ(FloatToHalf(1.0f + 1.0f / 2048), 0x3c00u);   // Tie: to even (1.0).
  EXPECT_EQ(FloatToHalf(1.0f + 3.0f / 2048), 0x3c02u);   // Tie: to even (up).
  EXPECT_EQ(FloatToHalf(5.9604645e-08f), 0x0001u);       // Smallest subnormal.
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000u);
  EXPECT_NEAR(HalfToFloat(FloatToHalf(0.1f)), 0.1f, 1e-4);
}

TEST(DTypeTest, BFloat16RoundsToNearestEvenAndKeepsNaN) {
  EXPECT_EQ(FloatToBFloat16(1.0f), 0x3f80u);
  EXPECT_EQ(BFloat16ToFloat(FloatToBFloat16(3.0f)), 3.0f);
  EXPECT_NEAR(BFloat16ToFloat(FloatToBFloat16(0.1f)), 0.1f, 1e-3);
  EXPECT_TRUE(std::isnan(BFloat16ToFloat(FloatToBFloat16(std::nanf("")))));
  EXPECT_EQ(FloatToBFloat16(std::numeric_limits<float>::infinity()), 0x7f80u);
}

TEST(DTypeTest, DispatchByDType) {
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    char storage[4];
    FromFloat(dtype, 2.5f, storage);
    EXPECT_EQ(ToFloat(dtype, storage), 2.5f) << DTypeName(dtype);
  }
}

}  // namespace
}  // namespace troupe::gpu
