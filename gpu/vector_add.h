// The first CUDA target: element-wise vector addition, and binding a device to a thread.
//
// It proves the build path end to end: nvcc compiles the kernel for sm_90, the host code turns
// every CUDA return code into an absl::Status, and this header includes no CUDA header, so CPU
// code (the GPU worker, the node) can depend on it. The GPU layer proper (gpu/ runtime,
// kernels, cuBLAS, NCCL) grows beside it.
//
//   absl::Status s = AddVectors(a.data(), b.data(), out.data(), n, /*device=*/0);
#pragma once

#include "absl/status/status.h"

namespace troupe::gpu {

// AddVectors computes out[i] = a[i] + b[i] for i < n on CUDA device `device`. The arrays are in
// host memory; the copies to and from the device are part of the call.
absl::Status AddVectors(const float* a, const float* b, float* out, int n, int device);

// BindCudaDevice makes `device` current on the calling thread (a GpuWorker's DeviceBinder).
absl::Status BindCudaDevice(int device);

// CudaDeviceCount returns how many CUDA devices this process sees (0 without a driver).
int CudaDeviceCount();

}  // namespace troupe::gpu
