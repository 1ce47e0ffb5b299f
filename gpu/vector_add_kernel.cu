// The kernel behind AddVectors; launched from vector_add.cc.
#include <cuda_runtime.h>

namespace troupe::gpu::internal {

__global__ void AddVectorsKernel(const float* a, const float* b, float* out, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    out[i] = a[i] + b[i];
  }
}

cudaError_t LaunchAddVectors(const float* a, const float* b, float* out, int n,
                             cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int blocks = n == 0 ? 1 : (n + kThreads - 1) / kThreads;
  AddVectorsKernel<<<blocks < 65535 ? blocks : 65535, kThreads, 0, stream>>>(a, b, out, n);
  return cudaGetLastError();
}

}  // namespace troupe::gpu::internal
