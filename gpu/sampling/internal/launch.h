// The seam between Sample() (sampling.cc: validation, absl::Status) and its kernel
// (sampling_kernel.cu). Arguments arrive validated.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "gpu/kernels/internal/launch.h"

namespace troupe::gpu::sampling::internal {

using kernels::internal::ElementType;

// RowParams is one row's SamplingParams as the kernel reads them.
struct RowParams {
  float temperature;  // 0: greedy
  float top_p;        // 1: off
  int32_t top_k;      // 0: off
  uint32_t reserved;
  uint64_t seed;
  uint64_t offset;
};

// kMaxRowsPerLaunch rows of parameters travel in one launch as a kernel argument
// (kMaxRowsPerLaunch * 32 bytes = 16 KB, within CUDA 12.1+'s 32764-byte limit), so Sample needs
// neither a workspace nor a host-to-device copy. Bigger batches take several launches.
inline constexpr int kMaxRowsPerLaunch = 512;

// LaunchSample writes token_ids[r] for r < batch from logits [batch, vocab].
cudaError_t LaunchSample(ElementType type, const void* logits, int64_t batch, int64_t vocab,
                         const RowParams* rows, int32_t* token_ids, cudaStream_t stream);

}  // namespace troupe::gpu::sampling::internal
