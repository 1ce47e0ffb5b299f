// CudaAllocator: the RawAllocator behind a MemoryPool on GPUs (cudaMalloc and cudaFree).
//
//   absl::StatusOr<std::shared_ptr<MemoryPool>> pool = CreateCudaMemoryPool();
//   absl::StatusOr<PooledBuffer> block = (*pool)->Allocate(bytes, /*device=*/0);
#pragma once

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gpu/memory_pool.h"

namespace troupe::gpu {

class CudaAllocator : public RawAllocator {
 public:
  // Allocate calls cudaMalloc on `device` (leaving the caller's current device as it was). Out
  // of memory is ResourceExhausted, a missing device FailedPrecondition.
  absl::StatusOr<void*> Allocate(size_t bytes, int device) override;
  absl::Status Free(void* data, int device) override;
};

// CreateCudaMemoryPool makes a MemoryPool over a CudaAllocator.
absl::StatusOr<std::shared_ptr<MemoryPool>> CreateCudaMemoryPool(MemoryPoolOptions options = {});

}  // namespace troupe::gpu
