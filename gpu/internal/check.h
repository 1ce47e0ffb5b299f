// Turning CUDA, cuBLAS and NCCL return codes into absl::Status. For .cc/.cu files only: it
// includes CUDA headers, which public gpu/ headers never do.
//
//   TROUPE_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(...), device);
//   return CudaStatus(cudaGetLastError(), "LayerNormKernel launch", device);
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace troupe::gpu::internal {

// CudaStatus names the call, the device and CUDA's own description of the error.
inline absl::Status CudaStatus(cudaError_t code, const char* call, int device) {
  if (code == cudaSuccess) return absl::OkStatus();
  const absl::StatusCode status_code = code == cudaErrorMemoryAllocation
                                           ? absl::StatusCode::kResourceExhausted
                                           : code == cudaErrorInvalidValue
                                                 ? absl::StatusCode::kInvalidArgument
                                                 : absl::StatusCode::kInternal;
  return absl::Status(status_code, absl::StrCat(call, " failed on cuda:", device, ": ",
                                                cudaGetErrorName(code), " (",
                                                cudaGetErrorString(code), ")"));
}

inline const char* CublasErrorName(cublasStatus_t code) {
  switch (code) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}

inline absl::Status CublasStatus(cublasStatus_t code, const char* call, int device) {
  if (code == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat(call, " failed on cuda:", device, ": ", CublasErrorName(code)));
}

inline absl::Status NcclStatus(ncclResult_t code, const char* call, int device) {
  if (code == ncclSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(call, " failed on cuda:", device, ": ",
                                          ncclGetErrorString(code)));
}

}  // namespace troupe::gpu::internal

// TROUPE_CUDA_RETURN_IF_ERROR evaluates a CUDA runtime call and returns its status if it failed.
#define TROUPE_CUDA_RETURN_IF_ERROR(call, device)                                       \
  do {                                                                                  \
    if (absl::Status troupe_status = ::troupe::gpu::internal::CudaStatus((call), #call, \
                                                                         (device));     \
        !troupe_status.ok()) {                                                          \
      return troupe_status;                                                             \
    }                                                                                   \
  } while (0)

#define TROUPE_CUBLAS_RETURN_IF_ERROR(call, device)                                       \
  do {                                                                                    \
    if (absl::Status troupe_status = ::troupe::gpu::internal::CublasStatus((call), #call, \
                                                                           (device));     \
        !troupe_status.ok()) {                                                            \
      return troupe_status;                                                               \
    }                                                                                     \
  } while (0)

#define TROUPE_NCCL_RETURN_IF_ERROR(call, device)                                       \
  do {                                                                                  \
    if (absl::Status troupe_status = ::troupe::gpu::internal::NcclStatus((call), #call, \
                                                                         (device));     \
        !troupe_status.ok()) {                                                          \
      return troupe_status;                                                             \
    }                                                                                   \
  } while (0)
