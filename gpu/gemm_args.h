// GemmArgs: the operands of a row-major matrix product, and their checks.
//
// Blas (cublas.h) runs these products; the arguments and their validation live apart from
// cuBLAS so that every bad input is tested on a CPU. The product is
//
//   C[m,n] = alpha * A[m,k] · op(B) + beta * C[m,n]
//
// with every matrix row-major and densely packed. B is given as [k,n] (op(B) = B) or, with
// transpose_b, as [n,k] (op(B) = Bᵀ): a Linear layer's weight[out_features, in_features] is the
// transposed case, y[tokens, out] = x[tokens, in] · weightᵀ. A and B have one type, fp16 or
// bf16; C is that type or fp32; products accumulate in fp32.
//
//   GemmArgs linear;
//   linear.m = tokens;  linear.n = out_features;  linear.k = in_features;
//   linear.dtype = DType::kBFloat16;  linear.output_dtype = DType::kBFloat16;
//   linear.a = x;  linear.b = weight;  linear.transpose_b = true;  linear.c = y;
//   absl::Status s = ValidateGemm(linear);
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "gpu/dtype.h"

namespace troupe::gpu {

struct GemmArgs {
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;
  DType dtype = DType::kFloat16;         // Of A and B: kFloat16 or kBFloat16.
  DType output_dtype = DType::kFloat16;  // Of C: `dtype` or kFloat32.
  const void* a = nullptr;               // [m, k].
  const void* b = nullptr;               // [k, n], or [n, k] when transpose_b.
  bool transpose_b = false;
  void* c = nullptr;  // [m, n]. With beta == 0 it is only written (NaNs in it do not matter).
  float alpha = 1.0f;
  float beta = 0.0f;
};

// BatchedGemmArgs are `batch_count` products of one shape. Product i reads A at
// a + i * stride_a elements (B and C likewise). A stride of 0 for A or B gives every product the
// same matrix (one weight for the whole batch); C's stride must keep outputs apart.
struct BatchedGemmArgs {
  GemmArgs gemm;
  int64_t batch_count = 1;
  int64_t stride_a = 0;  // In elements of `gemm.dtype`.
  int64_t stride_b = 0;
  int64_t stride_c = 0;  // In elements of `gemm.output_dtype`.
};

// ValidateGemm returns InvalidArgument, naming the operand and the fix, when cuBLAS cannot run
// the product as asked: a dtype outside fp16/bf16 (or an output dtype other than the input's or
// fp32), a negative dimension or one above cuBLAS's int limit, a null or misaligned pointer to
// a matrix that has elements, or C at the address of A or B.
absl::Status ValidateGemm(const GemmArgs& args);

// ValidateBatchedGemm also checks the batch count and the strides (non-negative; C's at least
// m * n so outputs do not overlap; A's and B's 0 or at least one matrix).
absl::Status ValidateBatchedGemm(const BatchedGemmArgs& args);

// DescribeGemm renders the shape and types, e.g. "m=4 n=8 k=16 bf16 x bf16^T -> fp32", for
// error messages.
std::string DescribeGemm(const GemmArgs& args);

}  // namespace troupe::gpu
