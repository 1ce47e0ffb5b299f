#include "gpu/kernels/internal/host_checks.h"

#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "gpu/internal/check.h"

namespace troupe::gpu::kernels::internal {

ElementType ToElementType(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return ElementType::kFloat32;
    case DType::kFloat16: return ElementType::kFloat16;
    case DType::kBFloat16: return ElementType::kBFloat16;
  }
  return ElementType::kFloat32;
}

absl::Status RequireDType(const char* function, DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
    case DType::kFloat16:
    case DType::kBFloat16: return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(function, ": dtype ", static_cast<int>(dtype),
                                                 " is not one of fp32, fp16, bf16"));
}

absl::Status RequireNonNull(const char* function, const char* argument, const void* pointer) {
  if (pointer != nullptr) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(function, ": ", argument, " is null; pass a device pointer"));
}

absl::Status RequireInRange(const char* function, const char* argument, int64_t value,
                            int64_t low, int64_t high) {
  if (value >= low && value <= high) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(function, ": ", argument, " = ", value,
                                                 " is outside [", low, ", ", high, "]"));
}

absl::Status RequireStreamDevice(const char* function, const Stream& stream) {
  if (stream.raw() == nullptr) {
    // CUDA would read a null stream as the legacy default stream.
    return absl::FailedPreconditionError(absl::StrCat(
        function, ": the stream has no CUDA stream (moved from?); pass a live Stream"));
  }
  int current = -1;
  TROUPE_CUDA_RETURN_IF_ERROR(cudaGetDevice(&current), stream.device());
  if (current == stream.device()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      function, ": the stream belongs to cuda:", stream.device(), " but cuda:", current,
      " is current on this thread; call cudaSetDevice(", stream.device(), ") first"));
}

absl::Status LaunchStatus(cudaError_t code, const char* kernel, const Stream& stream) {
  return gpu::internal::CudaStatus(code, kernel, stream.device());
}

}  // namespace troupe::gpu::kernels::internal
