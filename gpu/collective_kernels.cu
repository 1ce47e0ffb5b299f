// The kernel behind SumBuffers (collective_kernels.h); launched from collective_kernels.cc.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "gpu/kernels/internal/device_helpers.h"

namespace troupe::gpu::internal {

using kernels::internal::FromFloat;
using kernels::internal::ToFloat;

// The element types as collective_kernels.cc passes them: DType's order.
enum SumElement { kSumFloat32 = 0, kSumFloat16 = 1, kSumBFloat16 = 2 };

// kMaxInputs must equal kMaxSumInputs (collective_kernels.h, which this file cannot include:
// nvcc sees no Abseil here).
constexpr int kMaxInputs = 8;

struct SumInputs {
  const void* pointers[kMaxInputs];
  int count;
};

template <typename In, typename Out>
__global__ void SumBuffersKernel(SumInputs inputs, Out* output, int64_t count) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    float sum = ToFloat(static_cast<const In*>(inputs.pointers[0])[i]);
    for (int k = 1; k < inputs.count; ++k) {
      sum += ToFloat(static_cast<const In*>(inputs.pointers[k])[i]);
    }
    output[i] = FromFloat<Out>(sum);
  }
}

template <typename In, typename Out>
cudaError_t LaunchTyped(const SumInputs& inputs, void* output, int64_t count,
                        cudaStream_t stream) {
  constexpr int kThreads = 256;
  // A grid-stride loop over at most this many blocks: enough to fill an H200 (132 SMs) several
  // times over, and within the grid's x limit for any count.
  constexpr int64_t kMaxBlocks = 4096;
  int64_t blocks = (count + kThreads - 1) / kThreads;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  SumBuffersKernel<In, Out><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      inputs, static_cast<Out*>(output), count);
  return cudaGetLastError();
}

template <typename In>
cudaError_t LaunchForOutput(int output_type, const SumInputs& inputs, void* output,
                            int64_t count, cudaStream_t stream) {
  switch (output_type) {
    case kSumFloat32:
      return LaunchTyped<In, float>(inputs, output, count, stream);
    case kSumFloat16:
      return LaunchTyped<In, __half>(inputs, output, count, stream);
    case kSumBFloat16:
      return LaunchTyped<In, __nv_bfloat16>(inputs, output, count, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t LaunchSumBuffers(int input_type, int output_type, const void* const* inputs,
                             int num_inputs, void* output, int64_t count, cudaStream_t stream) {
  if (num_inputs < 1 || num_inputs > kMaxInputs) return cudaErrorInvalidValue;
  SumInputs packed = {};
  for (int k = 0; k < num_inputs; ++k) packed.pointers[k] = inputs[k];
  packed.count = num_inputs;
  switch (input_type) {
    case kSumFloat32:
      return LaunchForOutput<float>(output_type, packed, output, count, stream);
    case kSumFloat16:
      return LaunchForOutput<__half>(output_type, packed, output, count, stream);
    case kSumBFloat16:
      return LaunchForOutput<__nv_bfloat16>(output_type, packed, output, count, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace troupe::gpu::internal
