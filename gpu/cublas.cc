#include "gpu/cublas.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gpu/device.h"
#include "gpu/internal/check.h"

namespace troupe::gpu {
namespace {

cublasHandle_t Native(void* handle) { return static_cast<cublasHandle_t>(handle); }

cudaDataType_t CudaType(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return CUDA_R_32F;
    case DType::kFloat16:
      return CUDA_R_16F;
    case DType::kBFloat16:
      return CUDA_R_16BF;
  }
  return CUDA_R_32F;  // Unreachable: the switch covers every DType.
}

// ColumnMajorGemm is the row-major product C = A·op(B) restated for cuBLAS as the column-major
// Cᵀ[n,m] = op(B)ᵀ · Aᵀ. Row-major A[m,k] is column-major Aᵀ with leading dimension k; row-major
// C[m,n] is Cᵀ with leading dimension n. Row-major B[k,n] is column-major Bᵀ (op N, ld n); a
// transposed B given as [n,k] is column-major (n,k)ᵀ = op(B), so cuBLAS transposes it (op T,
// ld k).
struct ColumnMajorGemm {
  cublasOperation_t op_b;
  int rows;   // n: rows of op(B)ᵀ and of Cᵀ.
  int cols;   // m: columns of Aᵀ and of Cᵀ.
  int inner;  // k.
  int ld_b;
  int ld_a;
  int ld_c;
};

ColumnMajorGemm ToColumnMajor(const GemmArgs& args) {
  // Leading dimensions must be at least 1 even when a matrix is empty (k = 0).
  const auto at_least_one = [](int64_t x) { return static_cast<int>(std::max<int64_t>(1, x)); };
  return ColumnMajorGemm{
      args.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N,
      static_cast<int>(args.n),
      static_cast<int>(args.m),
      static_cast<int>(args.k),
      at_least_one(args.transpose_b ? args.k : args.n),
      at_least_one(args.k),
      at_least_one(args.n),
  };
}

// Annotate prefixes a cuBLAS failure with the product, which the error codes do not name.
absl::Status Annotate(absl::Status status, const GemmArgs& args) {
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrCat("Gemm (", DescribeGemm(args), "): ", status.message()));
}

}  // namespace

absl::StatusOr<Blas> Blas::Create(const Stream& stream) {
  if (absl::Status valid = CheckStreamFor(stream, stream.device(), "Blas::Create"); !valid.ok()) {
    return valid;
  }
  const int device = stream.device();
  absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(device);
  if (!scoped.ok()) return scoped.status();
  cublasHandle_t handle = nullptr;
  TROUPE_CUBLAS_RETURN_IF_ERROR(cublasCreate(&handle), device);
  Blas blas(device, handle);  // Owns the handle from here, also on the error below.
  TROUPE_CUBLAS_RETURN_IF_ERROR(cublasSetStream(handle, static_cast<cudaStream_t>(stream.raw())),
                                device);
  return blas;
}

Blas::Blas(Blas&& other) noexcept
    : device_(other.device_), handle_(std::exchange(other.handle_, nullptr)) {}

Blas& Blas::operator=(Blas&& other) noexcept {
  if (this != &other) {
    Destroy();
    device_ = other.device_;
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

Blas::~Blas() { Destroy(); }

void Blas::Destroy() {
  if (handle_ == nullptr) return;
  // cublasDestroy synchronizes the handle's device, which must be current.
  if (absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(device_); scoped.ok()) {
    cublasDestroy(Native(handle_));  // A destructor cannot report its error.
  }
  handle_ = nullptr;
}

absl::Status Blas::CheckUsable(const char* user) const {
  if (handle_ != nullptr) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(user, ": the Blas was moved from; use the Blas it was moved to"));
}

absl::Status Blas::Gemm(const GemmArgs& args) {
  if (absl::Status usable = CheckUsable("Blas::Gemm"); !usable.ok()) return usable;
  if (absl::Status valid = ValidateGemm(args); !valid.ok()) return valid;
  if (args.m == 0 || args.n == 0) return absl::OkStatus();
  absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(device_);
  if (!scoped.ok()) return scoped.status();
  const ColumnMajorGemm g = ToColumnMajor(args);
  const cudaDataType_t in = CudaType(args.dtype);
  const cublasStatus_t code =
      cublasGemmEx(Native(handle_), g.op_b, CUBLAS_OP_N, g.rows, g.cols, g.inner, &args.alpha,
                   args.b, in, g.ld_b, args.a, in, g.ld_a, &args.beta, args.c,
                   CudaType(args.output_dtype), g.ld_c, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  return Annotate(internal::CublasStatus(code, "cublasGemmEx", device_), args);
}

absl::Status Blas::GemmStridedBatched(const BatchedGemmArgs& args) {
  if (absl::Status usable = CheckUsable("Blas::GemmStridedBatched"); !usable.ok()) return usable;
  if (absl::Status valid = ValidateBatchedGemm(args); !valid.ok()) return valid;
  const GemmArgs& gemm = args.gemm;
  if (gemm.m == 0 || gemm.n == 0 || args.batch_count == 0) return absl::OkStatus();
  absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(device_);
  if (!scoped.ok()) return scoped.status();
  const ColumnMajorGemm g = ToColumnMajor(gemm);
  const cudaDataType_t in = CudaType(gemm.dtype);
  const cublasStatus_t code = cublasGemmStridedBatchedEx(
      Native(handle_), g.op_b, CUBLAS_OP_N, g.rows, g.cols, g.inner, &gemm.alpha, gemm.b, in,
      g.ld_b, args.stride_b, gemm.a, in, g.ld_a, args.stride_a, &gemm.beta, gemm.c,
      CudaType(gemm.output_dtype), g.ld_c, args.stride_c, static_cast<int>(args.batch_count),
      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  return Annotate(internal::CublasStatus(code, "cublasGemmStridedBatchedEx", device_), gemm);
}

}  // namespace troupe::gpu
