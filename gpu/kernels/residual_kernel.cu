// The bias + residual kernel, launched from residual.cc: one 16-byte access (one element on the
// unaligned path) per thread, rows tiled as in TileRow, the sum in fp32 and rounded once.
#include "gpu/kernels/internal/device_helpers.h"
#include "gpu/kernels/internal/launch.h"

namespace troupe::gpu::kernels::internal {
namespace {

template <typename T, int kWidth, bool kBias>
__global__ void BiasResidualKernel(const T* input, const T* bias, const T* residual, T* output,
                                   int64_t cols) {
  const int64_t column =
      (static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x) * kWidth;
  if (column >= cols) return;
  const int64_t offset = static_cast<int64_t>(blockIdx.x) * cols + column;
  float x[kWidth];
  float r[kWidth];
  LoadFloats<kWidth>(input + offset, x);
  LoadFloats<kWidth>(residual + offset, r);
  if constexpr (kBias) {
    float b[kWidth];
    LoadFloats<kWidth>(bias + column, b);
#pragma unroll
    for (int i = 0; i < kWidth; ++i) x[i] += b[i];
  }
#pragma unroll
  for (int i = 0; i < kWidth; ++i) x[i] += r[i];
  StoreFloats<kWidth>(x, output + offset);
}

template <typename T, int kWidth, bool kBias>
cudaError_t LaunchForWidth(const T* input, const T* bias, const T* residual, T* output,
                           int64_t rows, int64_t cols, cudaStream_t stream) {
  const RowTiling tiling = TileRow(cols / kWidth);
  if (tiling.blocks_per_row > kMaxGridY) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(rows), tiling.blocks_per_row);
  BiasResidualKernel<T, kWidth, kBias>
      <<<grid, tiling.threads, 0, stream>>>(input, bias, residual, output, cols);
  return cudaGetLastError();
}

template <typename T, bool kBias>
cudaError_t LaunchForBias(const T* input, const T* bias, const T* residual, T* output,
                          int64_t rows, int64_t cols, cudaStream_t stream) {
  constexpr int kVector = VectorWidth<T>;
  if (cols % kVector == 0 && IsAligned(input) && IsAligned(bias) && IsAligned(residual) &&
      IsAligned(output)) {
    return LaunchForWidth<T, kVector, kBias>(input, bias, residual, output, rows, cols, stream);
  }
  return LaunchForWidth<T, 1, kBias>(input, bias, residual, output, rows, cols, stream);
}

template <typename T>
cudaError_t LaunchTyped(const void* input, const void* bias, const void* residual, void* output,
                        int64_t rows, int64_t cols, cudaStream_t stream) {
  const T* in = static_cast<const T*>(input);
  const T* b = static_cast<const T*>(bias);
  const T* r = static_cast<const T*>(residual);
  T* out = static_cast<T*>(output);
  if (bias != nullptr) return LaunchForBias<T, true>(in, b, r, out, rows, cols, stream);
  return LaunchForBias<T, false>(in, b, r, out, rows, cols, stream);
}

}  // namespace

cudaError_t LaunchBiasResidual(ElementType type, const void* input, const void* bias,
                               const void* residual, void* output, int64_t rows, int64_t cols,
                               cudaStream_t stream) {
  switch (type) {
    case ElementType::kFloat32:
      return LaunchTyped<float>(input, bias, residual, output, rows, cols, stream);
    case ElementType::kFloat16:
      return LaunchTyped<__half>(input, bias, residual, output, rows, cols, stream);
    case ElementType::kBFloat16:
      return LaunchTyped<__nv_bfloat16>(input, bias, residual, output, rows, cols, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace troupe::gpu::kernels::internal
