// Blas::Gemm and GemmStridedBatched against a CPU reference in double precision, over odd and
// large shapes, both 16-bit types, B plain and transposed, 16-bit and fp32 outputs.
#include "gpu/cublas.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gpu/dtype.h"
#include "gpu/stream.h"
#include "gpu/testing/kernel_testing.h"
#include "gtest/gtest.h"

namespace troupe::gpu {
namespace {

using testing::DeviceArray;
using ::testing::HasSubstr;

struct Shape {
  int64_t m, n, k, batch;
};

// ReferenceGemm computes alpha * A·op(B) + beta * C for one batch entry, in double, from the
// values the GPU sees (already rounded to the operand type).
std::vector<double> ReferenceGemm(const Shape& s, bool transpose_b, const std::vector<float>& a,
                                  const std::vector<float>& b, const std::vector<float>& c,
                                  float alpha, float beta, int64_t batch) {
  std::vector<double> out(s.m * s.n);
  const float* a_batch = a.data() + batch * s.m * s.k;
  const float* b_batch = b.data() + batch * s.k * s.n;
  for (int64_t i = 0; i < s.m; ++i) {
    for (int64_t j = 0; j < s.n; ++j) {
      double sum = 0;
      for (int64_t p = 0; p < s.k; ++p) {
        const double b_pj = transpose_b ? b_batch[j * s.k + p] : b_batch[p * s.n + j];
        sum += double(a_batch[i * s.k + p]) * b_pj;
      }
      const double old = c.empty() ? 0.0 : c[batch * s.m * s.n + i * s.n + j];
      out[i * s.n + j] = alpha * sum + beta * old;
    }
  }
  return out;
}

// Tolerance for the output type. For fp32 outputs of 16-bit operands, the reference already
// has the rounded operands, so only fp32 accumulation differs; tensor cores accumulate with
// truncation, so allow 1e-4 rather than the 1e-5 of an all-fp32 kernel.
double OutputTolerance(DType output) {
  return output == DType::kFloat32 ? 1e-4 : testing::Tolerance(output);
}

struct Case {
  Shape shape;
  DType dtype;
  bool transpose_b;
  DType output;

  std::string Name() const {
    return absl::StrCat(shape.m, "x", shape.n, "x", shape.k, " batch ", shape.batch, " ",
                        DTypeName(dtype), transpose_b ? " B^T" : " B", " -> ", DTypeName(output));
  }
};

class CublasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::HasCudaDevice()) GTEST_SKIP() << "skipped: no CUDA device in this process";
    absl::StatusOr<Stream> stream = Stream::Create(0);
    ASSERT_TRUE(stream.ok()) << stream.status();
    stream_ = std::make_unique<Stream>(*std::move(stream));
    absl::StatusOr<Blas> blas = Blas::Create(*stream_);
    ASSERT_TRUE(blas.ok()) << blas.status();
    blas_ = std::make_unique<Blas>(*std::move(blas));
  }

  // Run multiplies random operands of `test` (batched when batch > 1, with a poisoned C and
  // beta = 0) and checks every output against the reference.
  void Run(const Case& test, uint64_t seed) {
    SCOPED_TRACE(test.Name());
    const Shape& s = test.shape;
    const std::vector<float> a =
        testing::Quantized(test.dtype, testing::RandomFloats(s.batch * s.m * s.k, seed));
    const std::vector<float> b =
        testing::Quantized(test.dtype, testing::RandomFloats(s.batch * s.k * s.n, seed + 1));
    DeviceArray device_a = *DeviceArray::FromHost(test.dtype, a);
    DeviceArray device_b = *DeviceArray::FromHost(test.dtype, b);
    DeviceArray device_c = *DeviceArray::Poisoned(test.output, s.batch * s.m * s.n);

    GemmArgs gemm;
    gemm.m = s.m;
    gemm.n = s.n;
    gemm.k = s.k;
    gemm.dtype = test.dtype;
    gemm.output_dtype = test.output;
    gemm.a = device_a.data();
    gemm.b = device_b.data();
    gemm.transpose_b = test.transpose_b;
    gemm.c = device_c.data();
    if (s.batch == 1) {
      ASSERT_TRUE(blas_->Gemm(gemm).ok());
    } else {
      BatchedGemmArgs batched{gemm, s.batch, s.m * s.k, s.k * s.n, s.m * s.n};
      ASSERT_TRUE(blas_->GemmStridedBatched(batched).ok());
    }
    ASSERT_TRUE(stream_->Synchronize().ok());

    const std::vector<float> c = *device_c.ToHost();
    for (int64_t batch = 0; batch < s.batch; ++batch) {
      const std::vector<double> want =
          ReferenceGemm(s, test.transpose_b, a, b, {}, 1.0f, 0.0f, batch);
      const std::vector<float> got(c.begin() + batch * s.m * s.n,
                                   c.begin() + (batch + 1) * s.m * s.n);
      EXPECT_LT(testing::RelativeError(got, want), OutputTolerance(test.output))
          << "batch entry " << batch;
    }
  }

  std::unique_ptr<Stream> stream_;
  std::unique_ptr<Blas> blas_;
};

TEST_F(CublasTest, MatchesTheReferenceOverShapesTypesAndLayouts) {
  const std::vector<Shape> shapes = {
      {1, 1, 1, 1}, {33, 65, 17, 1}, {7, 1, 300, 1}, {128, 256, 4096, 1}};
  uint64_t seed = 1;
  for (const Shape& shape : shapes) {
    for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
      for (bool transpose_b : {false, true}) {
        for (DType output : {dtype, DType::kFloat32}) {
          Run(Case{shape, dtype, transpose_b, output}, seed += 2);
        }
      }
    }
  }
}

TEST_F(CublasTest, StridedBatchedMatchesTheReferenceForEveryBatchEntry) {
  uint64_t seed = 100;
  for (const Shape& shape : {Shape{128, 256, 4096, 3}, Shape{33, 65, 17, 5}}) {
    for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
      for (bool transpose_b : {false, true}) {
        Run(Case{shape, dtype, transpose_b, dtype}, seed += 2);
      }
    }
  }
}

TEST_F(CublasTest, AlphaAndBetaScaleTheProductAndTheOldOutput) {
  const Shape s{19, 23, 29, 1};
  const std::vector<float> a =
      testing::Quantized(DType::kFloat16, testing::RandomFloats(19 * 29, 1));
  const std::vector<float> b =
      testing::Quantized(DType::kFloat16, testing::RandomFloats(29 * 23, 2));
  const std::vector<float> c = testing::RandomFloats(19 * 23, 3);
  DeviceArray device_a = *DeviceArray::FromHost(DType::kFloat16, a);
  DeviceArray device_b = *DeviceArray::FromHost(DType::kFloat16, b);
  DeviceArray device_c = *DeviceArray::FromHost(DType::kFloat32, c);
  GemmArgs gemm;
  gemm.m = s.m;
  gemm.n = s.n;
  gemm.k = s.k;
  gemm.dtype = DType::kFloat16;
  gemm.output_dtype = DType::kFloat32;
  gemm.a = device_a.data();
  gemm.b = device_b.data();
  gemm.c = device_c.data();
  gemm.alpha = 0.5f;
  gemm.beta = -2.0f;
  ASSERT_TRUE(blas_->Gemm(gemm).ok());
  ASSERT_TRUE(stream_->Synchronize().ok());
  const std::vector<double> want = ReferenceGemm(s, false, a, b, c, 0.5f, -2.0f, 0);
  EXPECT_LT(testing::RelativeError(*device_c.ToHost(), want), 1e-4);
}

TEST_F(CublasTest, StridedBatchedCanShareOneWeightMatrix) {
  const Shape s{8, 16, 32, 4};
  const std::vector<float> a =
      testing::Quantized(DType::kBFloat16, testing::RandomFloats(4 * 8 * 32, 5));
  const std::vector<float> weight =
      testing::Quantized(DType::kBFloat16, testing::RandomFloats(16 * 32, 6));
  DeviceArray device_a = *DeviceArray::FromHost(DType::kBFloat16, a);
  DeviceArray device_w = *DeviceArray::FromHost(DType::kBFloat16, weight);
  DeviceArray device_c = *DeviceArray::Poisoned(DType::kFloat32, 4 * 8 * 16);
  BatchedGemmArgs batched;
  batched.gemm.m = s.m;
  batched.gemm.n = s.n;
  batched.gemm.k = s.k;
  batched.gemm.dtype = DType::kBFloat16;
  batched.gemm.output_dtype = DType::kFloat32;
  batched.gemm.a = device_a.data();
  batched.gemm.b = device_w.data();
  batched.gemm.transpose_b = true;
  batched.gemm.c = device_c.data();
  batched.batch_count = 4;
  batched.stride_a = 8 * 32;
  batched.stride_b = 0;  // Every entry multiplies by the same weight.
  batched.stride_c = 8 * 16;
  ASSERT_TRUE(blas_->GemmStridedBatched(batched).ok());
  ASSERT_TRUE(stream_->Synchronize().ok());
  const std::vector<float> c = *device_c.ToHost();
  const Shape one{8, 16, 32, 1};
  for (int64_t batch = 0; batch < 4; ++batch) {
    const std::vector<float> a_batch(a.begin() + batch * 8 * 32, a.begin() + (batch + 1) * 8 * 32);
    const std::vector<double> want = ReferenceGemm(one, true, a_batch, weight, {}, 1, 0, 0);
    const std::vector<float> got(c.begin() + batch * 8 * 16, c.begin() + (batch + 1) * 8 * 16);
    EXPECT_LT(testing::RelativeError(got, want), 1e-4) << "batch entry " << batch;
  }
}

TEST_F(CublasTest, EmptyProductsDoNothingAndKZeroWritesBetaTimesC) {
  GemmArgs no_rows;  // m = n = k = 0, null pointers: nothing to do.
  EXPECT_TRUE(blas_->Gemm(no_rows).ok());

  DeviceArray device_c = *DeviceArray::Poisoned(DType::kFloat32, 6);
  GemmArgs k_zero;
  k_zero.m = 2;
  k_zero.n = 3;
  k_zero.k = 0;
  k_zero.output_dtype = DType::kFloat32;
  k_zero.c = device_c.data();
  ASSERT_TRUE(blas_->Gemm(k_zero).ok());
  ASSERT_TRUE(stream_->Synchronize().ok());
  EXPECT_EQ(*device_c.ToHost(), std::vector<float>(6, 0.0f));  // beta = 0: C = 0.
}

TEST_F(CublasTest, BadArgumentsFailBeforeCublas) {
  DeviceArray device_c = *DeviceArray::Poisoned(DType::kFloat32, 4);
  GemmArgs fp32_operands;
  fp32_operands.m = fp32_operands.n = fp32_operands.k = 2;
  fp32_operands.dtype = DType::kFloat32;
  fp32_operands.a = fp32_operands.b = fp32_operands.c = device_c.data();
  absl::Status status = blas_->Gemm(fp32_operands);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("fp16 or bf16 operands"));

  GemmArgs null_b;
  null_b.m = null_b.n = null_b.k = 2;
  null_b.a = device_c.data();
  null_b.c = static_cast<char*>(device_c.data()) + 8;
  BatchedGemmArgs batched{null_b, 2, 4, 4, 4};
  status = blas_->GemmStridedBatched(batched);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("B is null"));

  Blas moved_to = std::move(*blas_);
  status = blas_->Gemm(GemmArgs{});  // NOLINT(bugprone-use-after-move): checking the move.
  EXPECT_THAT(status.message(), HasSubstr("the Blas was moved from"));

  Stream moved_from = *Stream::Create(0);
  Stream moved_stream_to = std::move(moved_from);
  absl::StatusOr<Blas> on_moved_stream =
      Blas::Create(moved_from);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(on_moved_stream.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(on_moved_stream.status().message(), HasSubstr("the Stream was moved from"));
}

}  // namespace
}  // namespace troupe::gpu
