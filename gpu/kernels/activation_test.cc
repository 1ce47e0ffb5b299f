#include "gpu/kernels/activation.h"

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

constexpr ActivationKind kKinds[] = {ActivationKind::kRelu, ActivationKind::kGelu,
                                     ActivationKind::kGeluTanh, ActivationKind::kSilu};

double Reference(ActivationKind kind, double x) {
  switch (kind) {
    case ActivationKind::kRelu: return x > 0 ? x : 0;
    case ActivationKind::kGelu: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case ActivationKind::kGeluTanh:
      return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case ActivationKind::kSilu: return x / (1 + std::exp(-x));
  }
  return NAN;
}

// Inputs spread over the range where the functions differ, including large magnitudes.
std::vector<float> Inputs(DType dtype, size_t n, uint64_t seed) {
  return Quantized(dtype, RandomFloats(n, seed, 3.0f, 0.1f));
}

class ActivationTest : public internal::KernelTest {};

TEST_P(ActivationTest, FlatMatchesTheReference) {
  for (ActivationKind kind : kKinds) {
    for (int64_t count : {1, 7, 8, 1000, 4099, (1 << 20) + 3}) {
      const std::vector<float> x = Inputs(dtype(), count, count);
      auto in = Upload(dtype(), x);
      auto out = Poisoned(dtype(), count);
      ASSERT_TRUE(Activation(dtype(), kind, in.data(), out.data(), count, stream()).ok());
      std::vector<double> reference(count);
      for (int64_t i = 0; i < count; ++i) reference[i] = Reference(kind, x[i]);
      EXPECT_LT(RelativeError(Download(out), reference), tolerance())
          << ActivationName(kind) << " count " << count;
    }
  }
}

TEST_P(ActivationTest, FlatWorksInPlaceAndUnaligned) {
  for (ActivationKind kind : kKinds) {
    const std::vector<float> x = Inputs(dtype(), 1029, 3);
    auto data = Upload(dtype(), WithPadding(x, 1));
    ASSERT_TRUE(
        Activation(dtype(), kind, ElementAt(data, 1), ElementAt(data, 1), x.size(), stream())
            .ok());
    std::vector<double> reference(x.size());
    for (size_t i = 0; i < x.size(); ++i) reference[i] = Reference(kind, x[i]);
    EXPECT_LT(RelativeError(Tail(Download(data), 1), reference), tolerance())
        << ActivationName(kind);
  }
}

TEST_P(ActivationTest, BiasActivationMatchesTheReference) {
  struct Shape {
    int64_t rows, cols;
  };
  for (ActivationKind kind : kKinds) {
    for (const Shape& s : {Shape{1, 1}, Shape{3, 7}, Shape{5, 64}, Shape{4, 100},
                           Shape{17, 3072}, Shape{2, 70001}}) {
      const std::vector<float> x = Inputs(dtype(), s.rows * s.cols, s.cols);
      const std::vector<float> bias = Inputs(dtype(), s.cols, s.cols + 1);
      auto in = Upload(dtype(), x);
      auto bias_device = Upload(dtype(), bias);
      auto out = Poisoned(dtype(), x.size());
      ASSERT_TRUE(BiasActivation(dtype(), kind, in.data(), bias_device.data(), out.data(), s.rows,
                                 s.cols, stream())
                      .ok());
      std::vector<double> reference(x.size());
      for (size_t i = 0; i < x.size(); ++i) {
        reference[i] = Reference(kind, double(x[i]) + bias[i % s.cols]);
      }
      EXPECT_LT(RelativeError(Download(out), reference), tolerance())
          << ActivationName(kind) << " " << s.rows << " x " << s.cols;
    }
  }
}

TEST_P(ActivationTest, GatedActivationMatchesTheReference) {
  struct Shape {
    int64_t rows, cols;
  };
  for (ActivationKind kind : kKinds) {
    for (const Shape& s : {Shape{1, 1}, Shape{3, 7}, Shape{5, 64}, Shape{2, 4100},
                           Shape{16, 13824}}) {
      const std::vector<float> x = Inputs(dtype(), s.rows * 2 * s.cols, s.cols);
      auto in = Upload(dtype(), x);
      auto out = Poisoned(dtype(), s.rows * s.cols);
      ASSERT_TRUE(
          GatedActivation(dtype(), kind, in.data(), out.data(), s.rows, s.cols, stream()).ok());
      std::vector<double> reference(s.rows * s.cols);
      for (int64_t r = 0; r < s.rows; ++r) {
        for (int64_t c = 0; c < s.cols; ++c) {
          const double gate = x[r * 2 * s.cols + c];
          const double up = x[r * 2 * s.cols + s.cols + c];
          reference[r * s.cols + c] = Reference(kind, gate) * up;
        }
      }
      EXPECT_LT(RelativeError(Download(out), reference), tolerance())
          << ActivationName(kind) << " " << s.rows << " x " << s.cols;
    }
  }
}

TEST_P(ActivationTest, SiluAndMulIsGatedSilu) {
  const int64_t rows = 9, cols = 4096;
  const std::vector<float> x = Inputs(dtype(), rows * 2 * cols, 5);
  auto in = Upload(dtype(), WithPadding(x, 1));  // unaligned: the element path
  auto out = Poisoned(dtype(), rows * cols);
  ASSERT_TRUE(SiluAndMul(dtype(), ElementAt(in, 1), out.data(), rows, cols, stream()).ok());
  std::vector<double> reference(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      reference[r * cols + c] = Reference(ActivationKind::kSilu, x[r * 2 * cols + c]) *
                                x[r * 2 * cols + cols + c];
    }
  }
  EXPECT_LT(RelativeError(Download(out), reference), tolerance());
}

TEST_P(ActivationTest, BadArgumentsAreInvalidArgument) {
  auto data = Upload(dtype(), RandomFloats(64, 1));
  void* p = data.data();
  const ActivationKind gelu = ActivationKind::kGelu;
  ExpectInvalidArgument(Activation(dtype(), gelu, nullptr, p, 8, stream()), "input");
  ExpectInvalidArgument(Activation(dtype(), gelu, p, nullptr, 8, stream()), "output");
  ExpectInvalidArgument(Activation(dtype(), gelu, p, p, 0, stream()), "count");
  ExpectInvalidArgument(Activation(dtype(), static_cast<ActivationKind>(9), p, p, 8, stream()),
                        "kind");
  ExpectInvalidArgument(BiasActivation(dtype(), gelu, p, nullptr, p, 2, 4, stream()), "bias");
  ExpectInvalidArgument(BiasActivation(dtype(), gelu, p, p, p, 0, 4, stream()), "rows");
  ExpectInvalidArgument(GatedActivation(dtype(), gelu, p, p, 2, -4, stream()), "cols");
  ExpectInvalidArgument(SiluAndMul(static_cast<DType>(5), p, p, 2, 4, stream()), "dtype");
}

INSTANTIATE_TEST_SUITE_P(Types, ActivationTest, AllDTypes(), DTypeParamName);

}  // namespace
}  // namespace troupe::gpu::kernels
