#include "gpu/gemm_args.h"

#include <cstdint>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace troupe::gpu {
namespace {

// cuBLAS takes dimensions, leading dimensions and the batch count as int.
constexpr int64_t kMaxDimension = std::numeric_limits<int>::max();

absl::Status Invalid(const GemmArgs& args, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat("Gemm (", DescribeGemm(args), "): ", problem));
}

absl::Status CheckDimension(const GemmArgs& args, const char* name, int64_t value) {
  if (value < 0) return Invalid(args, absl::StrCat(name, " = ", value, " must be >= 0"));
  if (value > kMaxDimension) {
    return Invalid(args, absl::StrCat(name, " = ", value, " is above cuBLAS's limit of ",
                                      kMaxDimension, "; split the product"));
  }
  return absl::OkStatus();
}

// CheckMatrix refuses a null or misaligned pointer to a matrix with `elements` > 0.
absl::Status CheckMatrix(const GemmArgs& args, const char* name, const void* data, int64_t elements,
                         DType dtype) {
  if (elements == 0) return absl::OkStatus();
  if (data == nullptr) {
    return Invalid(args, absl::StrCat(name, " is null but has ", elements, " elements"));
  }
  const size_t alignment = SizeOf(dtype);
  if (reinterpret_cast<uintptr_t>(data) % alignment != 0) {
    return Invalid(
        args, absl::StrCat(name, " at 0x", absl::Hex(reinterpret_cast<uintptr_t>(data)),
                           " is not aligned to ", alignment, " bytes (", DTypeName(dtype), ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckStride(const BatchedGemmArgs& args, const char* name, int64_t stride,
                         int64_t matrix_elements, bool may_be_zero) {
  if (stride < 0) {
    return Invalid(args.gemm, absl::StrCat(name, " = ", stride, " must be >= 0"));
  }
  if (args.batch_count <= 1 || stride >= matrix_elements || (may_be_zero && stride == 0)) {
    return absl::OkStatus();
  }
  return Invalid(args.gemm,
                 absl::StrCat(name, " = ", stride, " is less than one matrix (", matrix_elements,
                              " elements), so the batch's matrices overlap; use at least ",
                              matrix_elements, may_be_zero ? " (or 0 to share one matrix)" : ""));
}

}  // namespace

std::string DescribeGemm(const GemmArgs& args) {
  return absl::StrCat("m=", args.m, " n=", args.n, " k=", args.k, " ", DTypeName(args.dtype), " x ",
                      DTypeName(args.dtype), args.transpose_b ? "^T" : "", " -> ",
                      DTypeName(args.output_dtype));
}

absl::Status ValidateGemm(const GemmArgs& args) {
  if (args.dtype != DType::kFloat16 && args.dtype != DType::kBFloat16) {
    return Invalid(args, absl::StrCat("A and B are ", DTypeName(args.dtype),
                                      "; Gemm takes fp16 or bf16 operands (accumulating in fp32)"));
  }
  if (args.output_dtype != args.dtype && args.output_dtype != DType::kFloat32) {
    return Invalid(
        args, absl::StrCat("C is ", DTypeName(args.output_dtype), " but A and B are ",
                           DTypeName(args.dtype), "; make C ", DTypeName(args.dtype), " or fp32"));
  }
  for (const auto& [name, value] :
       {std::pair<const char*, int64_t>{"m", args.m}, {"n", args.n}, {"k", args.k}}) {
    if (absl::Status valid = CheckDimension(args, name, value); !valid.ok()) return valid;
  }
  if (absl::Status valid = CheckMatrix(args, "A", args.a, args.m * args.k, args.dtype);
      !valid.ok()) {
    return valid;
  }
  if (absl::Status valid = CheckMatrix(args, "B", args.b, args.k * args.n, args.dtype);
      !valid.ok()) {
    return valid;
  }
  if (absl::Status valid = CheckMatrix(args, "C", args.c, args.m * args.n, args.output_dtype);
      !valid.ok()) {
    return valid;
  }
  if (args.m * args.n > 0 && (args.c == args.a || args.c == args.b)) {
    return Invalid(args, absl::StrCat("C is at the address of ", args.c == args.a ? "A" : "B",
                                      "; cuBLAS cannot write its output over an input, so give "
                                      "C its own memory"));
  }
  return absl::OkStatus();
}

absl::Status ValidateBatchedGemm(const BatchedGemmArgs& args) {
  if (absl::Status valid = ValidateGemm(args.gemm); !valid.ok()) return valid;
  if (args.batch_count < 0 || args.batch_count > kMaxDimension) {
    return Invalid(args.gemm, absl::StrCat("batch_count = ", args.batch_count,
                                           " must be between 0 and ", kMaxDimension));
  }
  const GemmArgs& g = args.gemm;
  if (absl::Status valid = CheckStride(args, "stride_a", args.stride_a, g.m * g.k, true);
      !valid.ok()) {
    return valid;
  }
  if (absl::Status valid = CheckStride(args, "stride_b", args.stride_b, g.k * g.n, true);
      !valid.ok()) {
    return valid;
  }
  return CheckStride(args, "stride_c", args.stride_c, g.m * g.n, /*may_be_zero=*/false);
}

}  // namespace troupe::gpu
