#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "gpu/internal/check.h"
#include "tools/random_fill.h"

namespace troupe::tools {
namespace {

__device__ __forceinline__ uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

template <class T>
__device__ __forceinline__ T Convert(float x);
template <>
__device__ __forceinline__ float Convert<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half Convert<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 Convert<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

template <class T>
__global__ void FillKernel(T* data, size_t count, uint64_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint64_t bits = SplitMix(seed * 0x100000001b3ull + i);
    // Four 16-bit uniforms in [0, 1): their sum has mean 2 and variance 1/3.
    float sum = 0;
#pragma unroll
    for (int k = 0; k < 4; ++k) sum += static_cast<float>((bits >> (16 * k)) & 0xffff) / 65536.f;
    data[i] = Convert<T>((sum - 2.f) * 1.7320508f);
  }
}

}  // namespace

absl::Status FillRandom(gpu::DType dtype, void* data, size_t count, uint64_t seed,
                        gpu::Stream& stream) {
  cudaStream_t raw = static_cast<cudaStream_t>(stream.raw());
  constexpr int kThreads = 256;
  const unsigned blocks = static_cast<unsigned>(std::min<size_t>((count + kThreads - 1) / kThreads, 65536));
  switch (dtype) {
    case gpu::DType::kFloat32:
      FillKernel<<<blocks, kThreads, 0, raw>>>(static_cast<float*>(data), count, seed);
      break;
    case gpu::DType::kFloat16:
      FillKernel<<<blocks, kThreads, 0, raw>>>(static_cast<__half*>(data), count, seed);
      break;
    case gpu::DType::kBFloat16:
      FillKernel<<<blocks, kThreads, 0, raw>>>(static_cast<__nv_bfloat16*>(data), count, seed);
      break;
  }
  return gpu::internal::CudaStatus(cudaGetLastError(), "FillKernel launch", stream.device());
}

}  // namespace troupe::tools
