#include "gpu/kernels/residual.h"

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

struct Shape {
  int64_t rows, cols;
};

std::vector<double> Reference(const std::vector<float>& x, const std::vector<float>& bias,
                              const std::vector<float>& residual, int64_t cols) {
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    out[i] = double(x[i]) + residual[i] + (bias.empty() ? 0.0 : bias[i % cols]);
  }
  return out;
}

class ResidualTest : public internal::KernelTest {};

TEST_P(ResidualTest, MatchesTheReferenceWithAndWithoutBias) {
  for (const Shape& s : {Shape{1, 1}, Shape{3, 7}, Shape{5, 64}, Shape{4, 100}, Shape{3, 5120},
                         Shape{129, 768}, Shape{2, 70001}}) {
    for (bool with_bias : {true, false}) {
      const std::vector<float> x = Quantized(dtype(), RandomFloats(s.rows * s.cols, s.cols));
      const std::vector<float> residual =
          Quantized(dtype(), RandomFloats(s.rows * s.cols, s.cols + 1, 2.0f, 0.5f));
      const std::vector<float> bias = Quantized(dtype(), RandomFloats(s.cols, s.cols + 2));
      auto x_device = Upload(dtype(), x);
      auto residual_device = Upload(dtype(), residual);
      auto bias_device = Upload(dtype(), bias);
      auto out = Poisoned(dtype(), x.size());
      ASSERT_TRUE(BiasResidual(dtype(), x_device.data(),
                               with_bias ? bias_device.data() : nullptr, residual_device.data(),
                               out.data(), s.rows, s.cols, stream())
                      .ok());
      EXPECT_LT(RelativeError(Download(out),
                              Reference(x, with_bias ? bias : std::vector<float>(), residual,
                                        s.cols)),
                tolerance())
          << s.rows << " x " << s.cols << " bias " << with_bias;
    }
  }
}

// The residual stream updated in place (output == residual), and unaligned pointers.
TEST_P(ResidualTest, WorksInPlaceAndUnaligned) {
  const Shape s{7, 4096};
  const std::vector<float> x = Quantized(dtype(), RandomFloats(s.rows * s.cols, 1));
  const std::vector<float> residual = Quantized(dtype(), RandomFloats(s.rows * s.cols, 2));
  const std::vector<float> bias = Quantized(dtype(), RandomFloats(s.cols, 3));
  const std::vector<double> reference = Reference(x, bias, residual, s.cols);
  {
    auto x_device = Upload(dtype(), x);
    auto residual_device = Upload(dtype(), residual);
    auto bias_device = Upload(dtype(), bias);
    ASSERT_TRUE(BiasResidual(dtype(), x_device.data(), bias_device.data(),
                             residual_device.data(), residual_device.data(), s.rows, s.cols,
                             stream())
                    .ok());
    EXPECT_LT(RelativeError(Download(residual_device), reference), tolerance());
  }
  {
    auto x_device = Upload(dtype(), WithPadding(x, 1));
    auto residual_device = Upload(dtype(), residual);
    auto bias_device = Upload(dtype(), bias);
    auto out = Poisoned(dtype(), x.size() + 1);
    ASSERT_TRUE(BiasResidual(dtype(), ElementAt(x_device, 1), bias_device.data(),
                             residual_device.data(), ElementAt(out, 1), s.rows, s.cols, stream())
                    .ok());
    EXPECT_LT(RelativeError(Tail(Download(out), 1), reference), tolerance());
  }
}

TEST_P(ResidualTest, BadArgumentsAreInvalidArgument) {
  auto data = Upload(dtype(), RandomFloats(64, 1));
  void* p = data.data();
  ExpectInvalidArgument(BiasResidual(dtype(), nullptr, p, p, p, 2, 4, stream()), "input");
  ExpectInvalidArgument(BiasResidual(dtype(), p, p, nullptr, p, 2, 4, stream()), "residual");
  ExpectInvalidArgument(BiasResidual(dtype(), p, p, p, nullptr, 2, 4, stream()), "output");
  ExpectInvalidArgument(BiasResidual(dtype(), p, p, p, p, 0, 4, stream()), "rows");
  ExpectInvalidArgument(BiasResidual(dtype(), p, p, p, p, 2, 0, stream()), "cols");
}

INSTANTIATE_TEST_SUITE_P(Types, ResidualTest, AllDTypes(), DTypeParamName);

}  // namespace
}  // namespace troupe::gpu::kernels
