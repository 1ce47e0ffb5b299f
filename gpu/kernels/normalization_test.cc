#include "gpu/kernels/normalization.h"

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
using internal::Poisoned;
using internal::Tail;
using internal::Upload;
using internal::WithPadding;
using testing::Quantized;
using testing::RandomFloats;
using testing::RelativeError;

constexpr float kEpsilon = 1e-5f;

struct Shape {
  int64_t rows;
  int64_t cols;
};

// Covers every launch path: one warp per row (cols <= 64 accesses), a block with 1, 2, 4 or 8
// accesses per thread, the long-row fallback (70000 columns; 5121 unaligned), odd column counts
// that force element accesses, and many rows.
const Shape kShapes[] = {{1, 1},    {3, 7},    {2, 33},   {5, 64},    {4, 100},   {3, 768},
                         {2, 4095}, {2, 4096}, {3, 5120}, {2, 8192},  {2, 20000}, {2, 70000},
                         {2, 5121}, {1, 9000}, {257, 512}, {1024, 5120}};

// Inputs with a mean and spread, so centring matters; gamma around 1; never zero.
struct Inputs {
  std::vector<float> x, residual, bias, gamma, beta;
};

Inputs MakeInputs(DType dtype, const Shape& shape, uint64_t seed) {
  const size_t n = shape.rows * shape.cols;
  return Inputs{Quantized(dtype, RandomFloats(n, seed, 2.0f, 0.5f)),
                Quantized(dtype, RandomFloats(n, seed + 1, 1.0f, -0.25f)),
                Quantized(dtype, RandomFloats(shape.cols, seed + 2, 0.5f)),
                Quantized(dtype, RandomFloats(shape.cols, seed + 3, 0.25f, 1.0f)),
                Quantized(dtype, RandomFloats(shape.cols, seed + 4, 0.5f))};
}

// Reference: LayerNorm (beta non-empty) or RMSNorm over rows of `x`, in double.
std::vector<double> NormReference(const std::vector<float>& x, const Shape& shape,
                                  const std::vector<float>& gamma,
                                  const std::vector<float>& beta) {
  const bool layer_norm = !beta.empty();
  std::vector<double> out(x.size());
  for (int64_t r = 0; r < shape.rows; ++r) {
    const float* row = x.data() + r * shape.cols;
    double mean = 0;
    if (layer_norm) {
      for (int64_t c = 0; c < shape.cols; ++c) mean += row[c];
      mean /= shape.cols;
    }
    double moment = 0;
    for (int64_t c = 0; c < shape.cols; ++c) moment += (row[c] - mean) * (row[c] - mean);
    moment /= shape.cols;
    const double scale = 1.0 / std::sqrt(moment + kEpsilon);
    for (int64_t c = 0; c < shape.cols; ++c) {
      out[r * shape.cols + c] =
          (row[c] - mean) * scale * gamma[c] + (layer_norm ? beta[c] : 0.0);
    }
  }
  return out;
}

// The residual sum in double (what sum_output should hold), with or without bias.
std::vector<double> SumReference(const Inputs& in, const Shape& shape, bool with_bias) {
  std::vector<double> sum(in.x.size());
  for (size_t i = 0; i < sum.size(); ++i) {
    sum[i] = double(in.x[i]) + in.residual[i] + (with_bias ? in.bias[i % shape.cols] : 0.0);
  }
  return sum;
}

std::vector<float> ToFloats(const std::vector<double>& values) {
  return std::vector<float>(values.begin(), values.end());
}

class NormalizationTest : public internal::KernelTest {};

TEST_P(NormalizationTest, LayerNormMatchesTheReference) {
  for (const Shape& shape : kShapes) {
    const Inputs in = MakeInputs(dtype(), shape, shape.cols);
    auto x = Upload(dtype(), in.x);
    auto gamma = Upload(dtype(), in.gamma);
    auto beta = Upload(dtype(), in.beta);
    auto out = Poisoned(dtype(), in.x.size());
    ASSERT_TRUE(LayerNorm(dtype(), x.data(), gamma.data(), beta.data(), out.data(), shape.rows,
                          shape.cols, kEpsilon, stream())
                    .ok());
    EXPECT_LT(RelativeError(Download(out), NormReference(in.x, shape, in.gamma, in.beta)),
              tolerance())
        << shape.rows << " x " << shape.cols;
  }
}

// Rows whose mean is large against their spread (mean^2 > 8 variance: 100 +- 0.5, -30 +- 0.25)
// take the two-pass variance; rows just inside the one-pass bound (2.5 +- 1) and centred rows
// keep the one-reduction path. All must match the double reference.
TEST_P(NormalizationTest, LayerNormOfRowsFarFromZero) {
  struct Row {
    float offset, scale;
  };
  const Row kRows[] = {{100.0f, 0.5f}, {2.5f, 1.0f}, {-30.0f, 0.25f}, {0.0f, 1.0f}};
  for (const Shape& shape : {Shape{4, 64}, Shape{4, 5120}, Shape{4, 20000}, Shape{4, 70000}}) {
    std::vector<float> x;
    for (int64_t r = 0; r < shape.rows; ++r) {
      const Row& row = kRows[r % 4];
      const std::vector<float> values = RandomFloats(shape.cols, 40 + r, row.scale, row.offset);
      x.insert(x.end(), values.begin(), values.end());
    }
    x = Quantized(dtype(), x);
    const Inputs in = MakeInputs(dtype(), shape, 41);
    auto x_d = Upload(dtype(), x);
    auto gamma = Upload(dtype(), in.gamma);
    auto beta = Upload(dtype(), in.beta);
    auto out = Poisoned(dtype(), x.size());
    ASSERT_TRUE(LayerNorm(dtype(), x_d.data(), gamma.data(), beta.data(), out.data(), shape.rows,
                          shape.cols, kEpsilon, stream())
                    .ok());
    EXPECT_LT(RelativeError(Download(out), NormReference(x, shape, in.gamma, in.beta)),
              tolerance())
        << shape.rows << " x " << shape.cols;
  }
}

TEST_P(NormalizationTest, RmsNormMatchesTheReference) {
  for (const Shape& shape : kShapes) {
    const Inputs in = MakeInputs(dtype(), shape, shape.cols);
    auto x = Upload(dtype(), in.x);
    auto gamma = Upload(dtype(), in.gamma);
    auto out = Poisoned(dtype(), in.x.size());
    ASSERT_TRUE(RmsNorm(dtype(), x.data(), gamma.data(), out.data(), shape.rows, shape.cols,
                        kEpsilon, stream())
                    .ok());
    EXPECT_LT(RelativeError(Download(out), NormReference(in.x, shape, in.gamma, {})), tolerance())
        << shape.rows << " x " << shape.cols;
  }
}

TEST_P(NormalizationTest, ResidualFormsWriteTheSumAndItsNorm) {
  for (const Shape& shape : kShapes) {
    for (bool layer_norm : {true, false}) {
      for (bool with_bias : {true, false}) {
        const Inputs in = MakeInputs(dtype(), shape, shape.cols + 7);
        auto x = Upload(dtype(), in.x);
        auto residual = Upload(dtype(), in.residual);
        auto bias = Upload(dtype(), in.bias);
        auto gamma = Upload(dtype(), in.gamma);
        auto beta = Upload(dtype(), in.beta);
        auto sum = Poisoned(dtype(), in.x.size());
        auto out = Poisoned(dtype(), in.x.size());
        const void* bias_pointer = with_bias ? bias.data() : nullptr;
        const absl::Status status =
            layer_norm
                ? ResidualLayerNorm(dtype(), x.data(), bias_pointer, residual.data(),
                                    gamma.data(), beta.data(), sum.data(), out.data(), shape.rows,
                                    shape.cols, kEpsilon, stream())
                : ResidualRmsNorm(dtype(), x.data(), bias_pointer, residual.data(), gamma.data(),
                                  sum.data(), out.data(), shape.rows, shape.cols, kEpsilon,
                                  stream());
        ASSERT_TRUE(status.ok()) << status;
        const std::vector<double> sum_reference = SumReference(in, shape, with_bias);
        // The kernel normalizes the sum as stored (rounded to dtype), like the unfused pair.
        const std::vector<float> stored_sum = Quantized(dtype(), ToFloats(sum_reference));
        const std::vector<double> norm_reference =
            NormReference(stored_sum, shape, in.gamma, layer_norm ? in.beta : std::vector<float>());
        EXPECT_LT(RelativeError(Download(sum), sum_reference), tolerance())
            << shape.rows << " x " << shape.cols << " layer_norm " << layer_norm;
        EXPECT_LT(RelativeError(Download(out), norm_reference), tolerance())
            << shape.rows << " x " << shape.cols << " layer_norm " << layer_norm;
      }
    }
  }
}

TEST_P(NormalizationTest, WorksInPlace) {
  const Shape shape{6, 4096};
  const Inputs in = MakeInputs(dtype(), shape, 11);
  // RmsNorm with output == input.
  auto x = Upload(dtype(), in.x);
  auto gamma = Upload(dtype(), in.gamma);
  ASSERT_TRUE(RmsNorm(dtype(), x.data(), gamma.data(), x.data(), shape.rows, shape.cols,
                      kEpsilon, stream())
                  .ok());
  EXPECT_LT(RelativeError(Download(x), NormReference(in.x, shape, in.gamma, {})), tolerance());
  // ResidualRmsNorm updating the residual stream in place (sum_output == residual).
  auto input = Upload(dtype(), in.x);
  auto residual = Upload(dtype(), in.residual);
  auto out = Poisoned(dtype(), in.x.size());
  ASSERT_TRUE(ResidualRmsNorm(dtype(), input.data(), nullptr, residual.data(), gamma.data(),
                              residual.data(), out.data(), shape.rows, shape.cols, kEpsilon,
                              stream())
                  .ok());
  const std::vector<double> sum_reference = SumReference(in, shape, /*with_bias=*/false);
  EXPECT_LT(RelativeError(Download(residual), sum_reference), tolerance());
  EXPECT_LT(RelativeError(Download(out),
                          NormReference(Quantized(dtype(), ToFloats(sum_reference)), shape,
                                        in.gamma, {})),
            tolerance());
}

// ResidualLayerNorm writing the sum over one of its inputs (each thread reads its own elements
// before it writes them).
TEST_P(NormalizationTest, ResidualLayerNormWorksInPlace) {
  for (const Shape& shape : {Shape{6, 4096}, Shape{3, 5120}, Shape{5, 64}, Shape{2, 20000}}) {
    for (bool over_residual : {true, false}) {
      const Inputs in = MakeInputs(dtype(), shape, 13);
      auto input = Upload(dtype(), in.x);
      auto residual = Upload(dtype(), in.residual);
      auto bias = Upload(dtype(), in.bias);
      auto gamma = Upload(dtype(), in.gamma);
      auto beta = Upload(dtype(), in.beta);
      auto out = Poisoned(dtype(), in.x.size());
      auto& sum = over_residual ? residual : input;
      ASSERT_TRUE(ResidualLayerNorm(dtype(), input.data(), bias.data(), residual.data(),
                                    gamma.data(), beta.data(), sum.data(), out.data(), shape.rows,
                                    shape.cols, kEpsilon, stream())
                      .ok());
      const std::vector<double> sum_reference = SumReference(in, shape, /*with_bias=*/true);
      EXPECT_LT(RelativeError(Download(sum), sum_reference), tolerance())
          << shape.rows << " x " << shape.cols << " over residual " << over_residual;
      EXPECT_LT(RelativeError(Download(out),
                              NormReference(Quantized(dtype(), ToFloats(sum_reference)), shape,
                                            in.gamma, in.beta)),
                tolerance())
          << shape.rows << " x " << shape.cols << " over residual " << over_residual;
    }
  }
}

// Pointers one element past a 16-byte boundary take the element-access path even when cols is
// a multiple of the vector width.
TEST_P(NormalizationTest, UnalignedPointersUseTheElementPath) {
  for (const Shape& shape : {Shape{3, 64}, Shape{2, 4096}, Shape{2, 8192}}) {
    const Inputs in = MakeInputs(dtype(), shape, 5);
    auto x = Upload(dtype(), WithPadding(in.x, 1));
    auto gamma = Upload(dtype(), WithPadding(in.gamma, 1));
    auto beta = Upload(dtype(), WithPadding(in.beta, 1));
    auto out = Poisoned(dtype(), in.x.size() + 1);
    ASSERT_TRUE(LayerNorm(dtype(), ElementAt(x, 1), ElementAt(gamma, 1), ElementAt(beta, 1),
                          ElementAt(out, 1), shape.rows, shape.cols, kEpsilon, stream())
                    .ok());
    EXPECT_LT(RelativeError(Tail(Download(out), 1), NormReference(in.x, shape, in.gamma, in.beta)),
              tolerance())
        << shape.rows << " x " << shape.cols;
  }
}

// Launches queue on the stream without waiting: many in a row, one synchronization at the end.
TEST_P(NormalizationTest, RepeatedLaunchesNeedNoSynchronization) {
  const Shape shape{64, 5120};
  const Inputs in = MakeInputs(dtype(), shape, 3);
  auto x = Upload(dtype(), in.x);
  auto gamma = Upload(dtype(), in.gamma);
  auto out = Poisoned(dtype(), in.x.size());
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(RmsNorm(dtype(), x.data(), gamma.data(), out.data(), shape.rows, shape.cols,
                        kEpsilon, stream())
                    .ok());
  }
  ASSERT_TRUE(stream().Synchronize().ok());
  EXPECT_LT(RelativeError(Download(out), NormReference(in.x, shape, in.gamma, {})), tolerance());
}

TEST_P(NormalizationTest, BadArgumentsAreInvalidArgument) {
  auto x = Upload(dtype(), RandomFloats(64, 1));
  void* p = x.data();
  ExpectInvalidArgument(LayerNorm(dtype(), nullptr, p, p, p, 1, 64, kEpsilon, stream()), "input");
  ExpectInvalidArgument(LayerNorm(dtype(), p, nullptr, p, p, 1, 64, kEpsilon, stream()), "gamma");
  ExpectInvalidArgument(LayerNorm(dtype(), p, p, nullptr, p, 1, 64, kEpsilon, stream()), "beta");
  ExpectInvalidArgument(LayerNorm(dtype(), p, p, p, nullptr, 1, 64, kEpsilon, stream()),
                        "output");
  ExpectInvalidArgument(LayerNorm(dtype(), p, p, p, p, 0, 64, kEpsilon, stream()), "rows");
  ExpectInvalidArgument(LayerNorm(dtype(), p, p, p, p, 1, -1, kEpsilon, stream()), "cols");
  ExpectInvalidArgument(RmsNorm(dtype(), p, p, p, 1, 0, kEpsilon, stream()), "cols");
  ExpectInvalidArgument(RmsNorm(dtype(), p, p, p, 1, 64, -1.0f, stream()), "epsilon");
  ExpectInvalidArgument(RmsNorm(dtype(), p, p, p, 1, 64, NAN, stream()), "epsilon");
  ExpectInvalidArgument(RmsNorm(static_cast<DType>(7), p, p, p, 1, 64, kEpsilon, stream()),
                        "dtype");
  ExpectInvalidArgument(
      ResidualRmsNorm(dtype(), p, nullptr, nullptr, p, p, p, 1, 64, kEpsilon, stream()),
      "residual");
  ExpectInvalidArgument(
      ResidualRmsNorm(dtype(), p, nullptr, p, p, p, p, 1, 64, kEpsilon, stream()), "sum_output");
  ExpectInvalidArgument(
      ResidualLayerNorm(dtype(), p, nullptr, p, p, p, nullptr, p, 1, 64, kEpsilon, stream()),
      "sum_output");
}

INSTANTIATE_TEST_SUITE_P(Types, NormalizationTest, AllDTypes(), DTypeParamName);

}  // namespace
}  // namespace troupe::gpu::kernels
