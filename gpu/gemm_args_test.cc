// Every bad GEMM input is an InvalidArgument that names the operand and the fix, checked on the
// CPU (pointers here are fake addresses, never dereferenced).
#include "gpu/gemm_args.h"

#include <cstdint>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::gpu {
namespace {

using ::testing::HasSubstr;

void* FakePointer(uintptr_t address) { return reinterpret_cast<void*>(address); }

// Linear is y[4, 8] = x[4, 16] · weight[8, 16]ᵀ in bf16.
GemmArgs Linear() {
  GemmArgs args;
  args.m = 4;
  args.n = 8;
  args.k = 16;
  args.dtype = DType::kBFloat16;
  args.output_dtype = DType::kBFloat16;
  args.a = FakePointer(0x10000);
  args.b = FakePointer(0x20000);
  args.transpose_b = true;
  args.c = FakePointer(0x30000);
  return args;
}

void ExpectInvalid(const absl::Status& status, const std::string& text) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr(text));
}

TEST(GemmArgsTest, AWellFormedProductPasses) {
  EXPECT_TRUE(ValidateGemm(Linear()).ok());
  GemmArgs fp32_out = Linear();
  fp32_out.output_dtype = DType::kFloat32;
  EXPECT_TRUE(ValidateGemm(fp32_out).ok());
}

TEST(GemmArgsTest, DescribeNamesShapeAndTypes) {
  EXPECT_EQ(DescribeGemm(Linear()), "m=4 n=8 k=16 bf16 x bf16^T -> bf16");
}

TEST(GemmArgsTest, OperandsMustBeSixteenBit) {
  GemmArgs args = Linear();
  args.dtype = DType::kFloat32;
  ExpectInvalid(ValidateGemm(args), "Gemm takes fp16 or bf16 operands");
}

TEST(GemmArgsTest, OutputIsTheInputTypeOrFp32) {
  GemmArgs args = Linear();
  args.output_dtype = DType::kFloat16;
  ExpectInvalid(ValidateGemm(args), "C is fp16 but A and B are bf16; make C bf16 or fp32");
}

TEST(GemmArgsTest, DimensionsAreNonNegativeAndFitAnInt) {
  GemmArgs negative = Linear();
  negative.n = -3;
  ExpectInvalid(ValidateGemm(negative), "n = -3 must be >= 0");
  GemmArgs huge = Linear();
  huge.k = int64_t{1} << 31;
  ExpectInvalid(ValidateGemm(huge), "k = 2147483648 is above cuBLAS's limit");
}

TEST(GemmArgsTest, NullMatricesAreRefusedUnlessEmpty) {
  GemmArgs null_a = Linear();
  null_a.a = nullptr;
  ExpectInvalid(ValidateGemm(null_a), "A is null but has 64 elements");
  GemmArgs null_c = Linear();
  null_c.c = nullptr;
  ExpectInvalid(ValidateGemm(null_c), "C is null but has 32 elements");

  GemmArgs empty;  // m = n = k = 0: nothing is read or written.
  EXPECT_TRUE(ValidateGemm(empty).ok());
  GemmArgs no_rows = Linear();
  no_rows.m = 0;
  no_rows.a = nullptr;
  no_rows.c = nullptr;
  EXPECT_TRUE(ValidateGemm(no_rows).ok());
}

TEST(GemmArgsTest, MisalignedPointersAreRefused) {
  GemmArgs args = Linear();
  args.b = FakePointer(0x20001);
  ExpectInvalid(ValidateGemm(args), "B at 0x20001 is not aligned to 2 bytes (bf16)");
  GemmArgs fp32_out = Linear();
  fp32_out.output_dtype = DType::kFloat32;
  fp32_out.c = FakePointer(0x30002);
  ExpectInvalid(ValidateGemm(fp32_out), "C at 0x30002 is not aligned to 4 bytes (fp32)");
}

TEST(GemmArgsTest, OutputMayNotOverwriteAnInput) {
  GemmArgs args = Linear();
  args.c = const_cast<void*>(args.a);
  ExpectInvalid(ValidateGemm(args), "C is at the address of A");
}

BatchedGemmArgs Batched() {
  BatchedGemmArgs args;
  args.gemm = Linear();
  args.batch_count = 3;
  args.stride_a = 4 * 16;
  args.stride_b = 8 * 16;
  args.stride_c = 4 * 8;
  return args;
}

TEST(GemmArgsTest, BatchedStridesKeepOutputsApart) {
  EXPECT_TRUE(ValidateBatchedGemm(Batched()).ok());

  BatchedGemmArgs shared_weight = Batched();
  shared_weight.stride_b = 0;
  EXPECT_TRUE(ValidateBatchedGemm(shared_weight).ok());

  BatchedGemmArgs overlapping_c = Batched();
  overlapping_c.stride_c = 0;
  ExpectInvalid(ValidateBatchedGemm(overlapping_c),
                "stride_c = 0 is less than one matrix (32 elements)");
  BatchedGemmArgs overlapping_a = Batched();
  overlapping_a.stride_a = 10;
  ExpectInvalid(ValidateBatchedGemm(overlapping_a), "use at least 64 (or 0 to share one matrix)");

  BatchedGemmArgs negative = Batched();
  negative.stride_b = -1;
  ExpectInvalid(ValidateBatchedGemm(negative), "stride_b = -1 must be >= 0");

  BatchedGemmArgs single = Batched();  // One product: strides are never used.
  single.batch_count = 1;
  single.stride_c = 0;
  EXPECT_TRUE(ValidateBatchedGemm(single).ok());
}

TEST(GemmArgsTest, BatchCountIsNonNegativeAndChecksTheProductToo) {
  BatchedGemmArgs negative = Batched();
  negative.batch_count = -2;
  ExpectInvalid(ValidateBatchedGemm(negative), "batch_count = -2 must be between 0 and");
  BatchedGemmArgs bad_product = Batched();
  bad_product.gemm.dtype = DType::kFloat32;
  ExpectInvalid(ValidateBatchedGemm(bad_product), "fp16 or bf16");
}

}  // namespace
}  // namespace troupe::gpu
