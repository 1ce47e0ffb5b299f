// The third_party wrappers for cuBLAS and NCCL link and load, and each library answers a basic
// call on the GPU host: a one-element GEMM through cuBLAS, and NCCL's version.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include "gpu/vector_add.h"
#include "gtest/gtest.h"

namespace troupe::gpu {
namespace {

TEST(CudaLibrariesTest, NcclReportsItsVersion) {
  int version = 0;
  ASSERT_EQ(ncclGetVersion(&version), ncclSuccess);
  EXPECT_GE(version, 22800) << "NCCL 2.28 or newer expected on the GPU hosts";
}

TEST(CudaLibrariesTest, CublasMultipliesOnTheDevice) {
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device in this process";
  ASSERT_TRUE(BindCudaDevice(0).ok());
  cublasHandle_t handle = nullptr;
  ASSERT_EQ(cublasCreate(&handle), CUBLAS_STATUS_SUCCESS);
  const float a = 3.0f, b = 7.0f;
  float* device = nullptr;
  ASSERT_EQ(cudaMalloc(&device, 3 * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(device, &a, sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(device + 1, &b, sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  const float one = 1.0f, zero = 0.0f;
  ASSERT_EQ(cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, device, 1, device + 1, 1,
                        &zero, device + 2, 1),
            CUBLAS_STATUS_SUCCESS);
  float c = -1;
  ASSERT_EQ(cudaMemcpy(&c, device + 2, sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(c, 21.0f);
  cudaFree(device);
  cublasDestroy(handle);
}

}  // namespace
}  // namespace troupe::gpu
