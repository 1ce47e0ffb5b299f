#include "gpu/kernels/residual.h"

#include <cuda_runtime.h>

#include "gpu/kernels/internal/host_checks.h"
#include "gpu/kernels/internal/launch.h"

namespace troupe::gpu::kernels {

absl::Status BiasResidual(DType dtype, const void* input, const void* bias, const void* residual,
                          void* output, int64_t rows, int64_t cols, Stream& stream) {
  constexpr const char* kFunction = "BiasResidual";
  absl::Status status = internal::RequireDType(kFunction, dtype);
  if (status.ok()) status = internal::RequireNonNull(kFunction, "input", input);
  if (status.ok()) status = internal::RequireNonNull(kFunction, "residual", residual);
  if (status.ok()) status = internal::RequireNonNull(kFunction, "output", output);
  if (status.ok()) {
    status = internal::RequireInRange(kFunction, "rows", rows, 1, internal::kMaxGridRows);
  }
  if (status.ok()) {
    status = internal::RequireInRange(kFunction, "cols", cols, 1, internal::kMaxTiledCols);
  }
  if (!status.ok()) return status;
  if (absl::Status device = internal::RequireStreamDevice(kFunction, stream); !device.ok()) {
    return device;
  }
  return internal::LaunchStatus(
      internal::LaunchBiasResidual(internal::ToElementType(dtype), input, bias, residual, output,
                                   rows, cols, static_cast<cudaStream_t>(stream.raw())),
      "BiasResidual kernel launch", stream);
}

}  // namespace troupe::gpu::kernels
