#include "gpu/kernels/skinny_gemm.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gpu/dtype.h"
#include "gpu/kernels/internal/kernel_test_base.h"
#include "gpu/testing/kernel_testing.h"
#include "gtest/gtest.h"

namespace troupe::gpu::kernels {
namespace {

using internal::Download;
using internal::DTypeParamName;
using internal::ElementAt;
using internal::ExpectInvalidArgument;
using internal::Poisoned;
using internal::Upload;
using testing::Quantized;
using testing::RandomFloats;
using testing::RelativeError;

struct Shape {
  int64_t cols;
  int64_t depth;
  int64_t count;
};

// Depths: one chunk, a partial last round of the unrolled loop (33 and 513 chunks), and a
// whole number of rounds; column counts odd and even (a warp owns two columns).
constexpr Shape kShapes[] = {{1, 8, 1}, {37, 264, 1}, {100, 4104, 3}, {129, 2048, 1}};

// Reference is the product in double from the values the kernel sees, plus the bias and what y
// held when accumulating.
std::vector<double> Reference(const std::vector<float>& x, const std::vector<float>& w,
                              const std::vector<float>& bias, const std::vector<float>& y0,
                              int64_t rows, const Shape& s) {
  std::vector<double> y(s.count * rows * s.cols);
  for (int64_t c = 0; c < s.count; ++c) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < s.cols; ++j) {
        const int64_t col = c * s.cols + j;
        double sum = bias.empty() ? 0.0 : bias[col];
        for (int64_t k = 0; k < s.depth; ++k) {
          sum += static_cast<double>(x[r * s.depth + k]) * w[col * s.depth + k];
        }
        const int64_t index = (c * rows + r) * s.cols + j;
        y[index] = sum + (y0.empty() ? 0.0 : y0[index]);
      }
    }
  }
  return y;
}

class SkinnyGemmTest : public internal::KernelTest {
 protected:
  // Run multiplies random operands of `shape` with `rows` rows and compares with Reference; the
  // output has 5 poisoned elements after it that must stay untouched.
  void Run(int64_t rows, const Shape& shape, bool bias, bool accumulate, DType output_dtype) {
    const std::string label = absl::StrCat(
        "rows ", rows, " cols ", shape.cols, " depth ", shape.depth, " count ", shape.count,
        bias ? " bias" : "", accumulate ? " accumulate" : "", " out ", DTypeName(output_dtype));
    const uint64_t seed = rows * 1000 + shape.depth;
    const std::vector<float> x = Quantized(dtype(), RandomFloats(rows * shape.depth, seed));
    const std::vector<float> w =
        Quantized(dtype(), RandomFloats(shape.count * shape.cols * shape.depth, seed + 1, 0.05f));
    const std::vector<float> b =
        bias ? Quantized(dtype(), RandomFloats(shape.count * shape.cols, seed + 2))
             : std::vector<float>();
    const int64_t outputs = shape.count * rows * shape.cols;
    std::vector<float> y0 = accumulate ? Quantized(output_dtype, RandomFloats(outputs, seed + 3))
                                       : std::vector<float>();

    auto x_device = Upload(dtype(), x);
    auto w_device = Upload(dtype(), w);
    auto b_device = Upload(dtype(), bias ? b : std::vector<float>{0.0f});
    auto y_device = Poisoned(output_dtype, outputs + 5);
    if (accumulate) {
      std::vector<float> initial = y0;
      initial.resize(outputs + 5, NAN);
      y_device = Upload(output_dtype, initial);
    }
    SkinnyGemmArgs args{.dtype = dtype(),
                        .output_dtype = output_dtype,
                        .x = x_device.data(),
                        .w = w_device.data(),
                        .bias = bias ? b_device.data() : nullptr,
                        .y = y_device.data(),
                        .rows = rows,
                        .cols = shape.cols,
                        .depth = shape.depth,
                        .count = shape.count,
                        .accumulate = accumulate};
    ASSERT_TRUE(SkinnyGemmFits(args)) << label;
    ASSERT_TRUE(SkinnyGemm(args, stream()).ok()) << label;
    std::vector<float> out = Download(y_device);
    ASSERT_EQ(out.size(), static_cast<size_t>(outputs + 5));
    for (int64_t i = outputs; i < outputs + 5; ++i) {
      EXPECT_TRUE(std::isnan(out[i])) << label << ": wrote past the output at " << i;
    }
    out.resize(outputs);
    const double tolerance =
        output_dtype == DType::kFloat32 ? 1e-5 : testing::Tolerance(output_dtype);
    EXPECT_LT(RelativeError(out, Reference(x, w, b, y0, rows, shape)), tolerance) << label;
  }
};

TEST_P(SkinnyGemmTest, EveryRowCountMatchesTheReference) {
  for (int64_t rows = 1; rows <= kMaxSkinnyRows; ++rows) {
    for (const Shape& shape : kShapes) Run(rows, shape, false, false, dtype());
  }
}

TEST_P(SkinnyGemmTest, BiasAccumulationAndFloatOutputMatchTheReference) {
  for (int64_t rows : {1, 3, 8}) {
    for (const Shape& shape : kShapes) {
      Run(rows, shape, /*bias=*/true, /*accumulate=*/false, dtype());
      Run(rows, shape, /*bias=*/false, /*accumulate=*/true, dtype());
      Run(rows, shape, /*bias=*/true, /*accumulate=*/true, dtype());
      Run(rows, shape, /*bias=*/false, /*accumulate=*/false, DType::kFloat32);
    }
  }
}

TEST_P(SkinnyGemmTest, BadArgumentsAreRefusedByName) {
  auto x = Upload(dtype(), RandomFloats(8 * 64 + 8, 1));
  auto w = Upload(dtype(), RandomFloats(16 * 64, 2));
  auto y = Poisoned(dtype(), 8 * 16);
  const SkinnyGemmArgs good{.dtype = dtype(),
                            .output_dtype = dtype(),
                            .x = x.data(),
                            .w = w.data(),
                            .y = y.data(),
                            .rows = 2,
                            .cols = 16,
                            .depth = 64};
  ASSERT_TRUE(SkinnyGemmFits(good));
  const auto expect_refused = [&](SkinnyGemmArgs args, const std::string& argument) {
    EXPECT_FALSE(SkinnyGemmFits(args)) << argument;
    ExpectInvalidArgument(SkinnyGemm(args, stream()), argument);
  };
  SkinnyGemmArgs bad = good;
  bad.dtype = DType::kFloat32;
  bad.output_dtype = DType::kFloat32;
  expect_refused(bad, "dtype fp32");
  bad = good;
  bad.output_dtype = dtype() == DType::kFloat16 ? DType::kBFloat16 : DType::kFloat16;
  expect_refused(bad, "output_dtype");
  bad = good;
  bad.x = nullptr;
  expect_refused(bad, "x");
  bad = good;
  bad.w = nullptr;
  expect_refused(bad, "w");
  bad = good;
  bad.y = nullptr;
  expect_refused(bad, "y");
  for (int64_t rows : {int64_t{0}, kMaxSkinnyRows + 1}) {
    bad = good;
    bad.rows = rows;
    expect_refused(bad, "rows");
  }
  bad = good;
  bad.cols = 0;
  expect_refused(bad, "cols");
  bad = good;
  bad.count = 0;
  expect_refused(bad, "count");
  bad = good;
  bad.depth = 60;
  expect_refused(bad, "depth 60 is not a multiple of 8");
  bad = good;
  bad.x = ElementAt(x, 1);
  expect_refused(bad, "x is not 16-byte aligned");
}

INSTANTIATE_TEST_SUITE_P(Types, SkinnyGemmTest,
                         ::testing::Values(DType::kFloat16, DType::kBFloat16), DTypeParamName);

}  // namespace
}  // namespace troupe::gpu::kernels
