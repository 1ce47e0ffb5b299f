#include "gpu/vector_add.h"

#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"

namespace troupe::gpu {
namespace internal {
cudaError_t LaunchAddVectors(const float* a, const float* b, float* out, int n,
                             cudaStream_t stream);
}  // namespace internal

namespace {

// Check turns a CUDA return code into a status naming the call and the device.
absl::Status Check(cudaError_t code, const char* call, int device) {
  if (code == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(call, " failed on cuda:", device, ": ",
                                          cudaGetErrorName(code), " (",
                                          cudaGetErrorString(code), ")"));
}

}  // namespace

int CudaDeviceCount() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

absl::Status BindCudaDevice(int device) {
  const int count = CudaDeviceCount();
  if (device < 0 || device >= count) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cuda:", device, " does not exist: this process sees ", count,
        " CUDA device(s); check the node's gpus and CUDA_VISIBLE_DEVICES"));
  }
  return Check(cudaSetDevice(device), "cudaSetDevice", device);
}

absl::Status AddVectors(const float* a, const float* b, float* out, int n, int device) {
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat("AddVectors: n = ", n, " < 0"));
  if (absl::Status bound = BindCudaDevice(device); !bound.ok()) return bound;
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  float* device_a = nullptr;
  float* device_b = nullptr;
  float* device_out = nullptr;
  absl::Status status = Check(cudaMalloc(&device_a, bytes), "cudaMalloc", device);
  if (status.ok()) status = Check(cudaMalloc(&device_b, bytes), "cudaMalloc", device);
  if (status.ok()) status = Check(cudaMalloc(&device_out, bytes), "cudaMalloc", device);
  if (status.ok()) {
    status = Check(cudaMemcpy(device_a, a, bytes, cudaMemcpyHostToDevice), "cudaMemcpy", device);
  }
  if (status.ok()) {
    status = Check(cudaMemcpy(device_b, b, bytes, cudaMemcpyHostToDevice), "cudaMemcpy", device);
  }
  if (status.ok()) {
    status = Check(internal::LaunchAddVectors(device_a, device_b, device_out, n, nullptr),
                   "AddVectorsKernel launch", device);
  }
  if (status.ok()) {
    status = Check(cudaMemcpy(out, device_out, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy",
                   device);
  }
  cudaFree(device_a);
  cudaFree(device_b);
  cudaFree(device_out);
  return status;
}

}  // namespace troupe::gpu
