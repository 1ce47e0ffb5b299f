#include "gpu/cuda_allocator.h"

#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "gpu/device.h"
#include "gpu/internal/check.h"

namespace troupe::gpu {

absl::StatusOr<void*> CudaAllocator::Allocate(size_t bytes, int device) {
  absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(device);
  if (!scoped.ok()) return scoped.status();
  void* data = nullptr;
  if (cudaError_t code = cudaMalloc(&data, bytes); code != cudaSuccess) {
    // Out of memory is recoverable (the pool frees its cache and retries), so CUDA's record of
    // it must not linger for the next cudaGetLastError to report after an unrelated launch.
    cudaGetLastError();
    absl::Status status = internal::CudaStatus(code, "cudaMalloc", device);
    return absl::Status(status.code(),
                        absl::StrCat("allocating ", bytes, " bytes: ", status.message()));
  }
  return data;
}

absl::Status CudaAllocator::Free(void* data, int device) {
  absl::StatusOr<ScopedDevice> scoped = ScopedDevice::Enter(device);
  if (!scoped.ok()) return scoped.status();
  TROUPE_CUDA_RETURN_IF_ERROR(cudaFree(data), device);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<MemoryPool>> CreateCudaMemoryPool(MemoryPoolOptions options) {
  return MemoryPool::Create(std::make_unique<CudaAllocator>(), options);
}

}  // namespace troupe::gpu
