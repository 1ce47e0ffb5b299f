// Activation kernels (flat, bias + activation, gated), launched from activation.cc. Every
// thread handles one 16-byte access (one element on the unaligned path) in fp32 registers; row
// kernels tile rows as in TileRow (grid x = rows, y = blocks of a row) so no thread divides.
#include <cmath>

#include "gpu/kernels/internal/device_helpers.h"
#include "gpu/kernels/internal/launch.h"

namespace troupe::gpu::kernels::internal {
namespace {

inline constexpr int kFlatThreads = 256;
// sqrt(2 / pi) and the cubic coefficient of the tanh approximation of GELU (Hendrycks & Gimpel
// 2016, eq. in section 2; "gelu_new" in GPT-2, gelu(approximate="tanh") in PyTorch).
inline constexpr float kSqrtTwoOverPi = 0.7978845608028654f;
inline constexpr float kGeluTanhCubic = 0.044715f;
inline constexpr float kInverseSqrtTwo = 0.7071067811865476f;

template <ActivationFunction kFunction>
__device__ __forceinline__ float Activate(float x) {
  if constexpr (kFunction == ActivationFunction::kRelu) {
    return x > 0.0f ? x : 0.0f;
  } else if constexpr (kFunction == ActivationFunction::kGelu) {
    return 0.5f * x * (1.0f + erff(x * kInverseSqrtTwo));
  } else if constexpr (kFunction == ActivationFunction::kGeluTanh) {
    return 0.5f * x * (1.0f + tanhf(kSqrtTwoOverPi * (x + kGeluTanhCubic * x * x * x)));
  } else {
    // x * sigmoid(x); for x < -88 the exponential is +inf and the quotient -0.
    return __fdividef(x, 1.0f + __expf(-x));
  }
}

template <typename T, ActivationFunction kFunction, int kWidth>
__global__ void ActivationKernel(const T* input, T* output, int64_t count) {
  const int64_t first = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * kWidth;
  if (first + kWidth <= count) {
    float v[kWidth];
    LoadFloats<kWidth>(input + first, v);
#pragma unroll
    for (int i = 0; i < kWidth; ++i) v[i] = Activate<kFunction>(v[i]);
    StoreFloats<kWidth>(v, output + first);
  } else {
    for (int64_t i = first; i < count; ++i) {
      output[i] = FromFloat<T>(Activate<kFunction>(ToFloat(input[i])));
    }
  }
}

template <typename T, ActivationFunction kFunction, int kWidth>
__global__ void BiasActivationKernel(const T* input, const T* bias, T* output, int64_t cols) {
  const int64_t column =
      (static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x) * kWidth;
  if (column >= cols) return;
  const int64_t offset = static_cast<int64_t>(blockIdx.x) * cols + column;
  float v[kWidth];
  float b[kWidth];
  LoadFloats<kWidth>(input + offset, v);
  LoadFloats<kWidth>(bias + column, b);
#pragma unroll
  for (int i = 0; i < kWidth; ++i) v[i] = Activate<kFunction>(v[i] + b[i]);
  StoreFloats<kWidth>(v, output + offset);
}

template <typename T, ActivationFunction kFunction, int kWidth>
__global__ void GatedActivationKernel(const T* input, T* output, int64_t cols) {
  const int64_t column =
      (static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x) * kWidth;
  if (column >= cols) return;
  const int64_t row = blockIdx.x;
  const T* gate = input + row * 2 * cols + column;
  float g[kWidth];
  float u[kWidth];
  LoadFloats<kWidth>(gate, g);
  LoadFloats<kWidth>(gate + cols, u);
#pragma unroll
  for (int i = 0; i < kWidth; ++i) g[i] = Activate<kFunction>(g[i]) * u[i];
  StoreFloats<kWidth>(g, output + row * cols + column);
}

template <typename T, ActivationFunction kFunction>
cudaError_t LaunchFlat(const void* input, void* output, int64_t count, cudaStream_t stream) {
  const T* in = static_cast<const T*>(input);
  T* out = static_cast<T*>(output);
  constexpr int kVector = VectorWidth<T>;
  if (IsAligned(in) && IsAligned(out)) {
    const int64_t threads = (count + kVector - 1) / kVector;
    const int64_t blocks = (threads + kFlatThreads - 1) / kFlatThreads;
    ActivationKernel<T, kFunction, kVector>
        <<<static_cast<unsigned>(blocks), kFlatThreads, 0, stream>>>(in, out, count);
  } else {
    const int64_t blocks = (count + kFlatThreads - 1) / kFlatThreads;
    ActivationKernel<T, kFunction, 1>
        <<<static_cast<unsigned>(blocks), kFlatThreads, 0, stream>>>(in, out, count);
  }
  return cudaGetLastError();
}

template <typename T, ActivationFunction kFunction, int kWidth>
cudaError_t LaunchBiasWidth(const T* in, const T* bias, T* out, int64_t rows, int64_t cols,
                            cudaStream_t stream) {
  const RowTiling tiling = TileRow(cols / kWidth);
  if (tiling.blocks_per_row > kMaxGridY) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(rows), tiling.blocks_per_row);
  BiasActivationKernel<T, kFunction, kWidth><<<grid, tiling.threads, 0, stream>>>(in, bias, out,
                                                                                   cols);
  return cudaGetLastError();
}

template <typename T, ActivationFunction kFunction>
cudaError_t LaunchBias(const void* input, const void* bias, void* output, int64_t rows,
                       int64_t cols, cudaStream_t stream) {
  const T* in = static_cast<const T*>(input);
  const T* b = static_cast<const T*>(bias);
  T* out = static_cast<T*>(output);
  constexpr int kVector = VectorWidth<T>;
  if (cols % kVector == 0 && IsAligned(in) && IsAligned(b) && IsAligned(out)) {
    return LaunchBiasWidth<T, kFunction, kVector>(in, b, out, rows, cols, stream);
  }
  return LaunchBiasWidth<T, kFunction, 1>(in, b, out, rows, cols, stream);
}

template <typename T, ActivationFunction kFunction, int kWidth>
cudaError_t LaunchGatedWidth(const T* in, T* out, int64_t rows, int64_t cols,
                             cudaStream_t stream) {
  const RowTiling tiling = TileRow(cols / kWidth);
  if (tiling.blocks_per_row > kMaxGridY) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(rows), tiling.blocks_per_row);
  GatedActivationKernel<T, kFunction, kWidth><<<grid, tiling.threads, 0, stream>>>(in, out, cols);
  return cudaGetLastError();
}

template <typename T, ActivationFunction kFunction>
cudaError_t LaunchGated(const void* input, void* output, int64_t rows, int64_t cols,
                        cudaStream_t stream) {
  const T* in = static_cast<const T*>(input);
  T* out = static_cast<T*>(output);
  constexpr int kVector = VectorWidth<T>;
  if (cols % kVector == 0 && IsAligned(in) && IsAligned(out)) {
    return LaunchGatedWidth<T, kFunction, kVector>(in, out, rows, cols, stream);
  }
  return LaunchGatedWidth<T, kFunction, 1>(in, out, rows, cols, stream);
}

// Dispatch turns the run-time (type, function) pair into template arguments for `Launch`.
template <template <typename, ActivationFunction> class Launch, typename... Args>
cudaError_t Dispatch(ElementType type, ActivationFunction function, Args... args) {
  switch (type) {
    case ElementType::kFloat32:
      switch (function) {
        case ActivationFunction::kRelu:
          return Launch<float, ActivationFunction::kRelu>::Run(args...);
        case ActivationFunction::kGelu:
          return Launch<float, ActivationFunction::kGelu>::Run(args...);
        case ActivationFunction::kGeluTanh:
          return Launch<float, ActivationFunction::kGeluTanh>::Run(args...);
        case ActivationFunction::kSilu:
          return Launch<float, ActivationFunction::kSilu>::Run(args...);
      }
      break;
    case ElementType::kFloat16:
      switch (function) {
        case ActivationFunction::kRelu:
          return Launch<__half, ActivationFunction::kRelu>::Run(args...);
        case ActivationFunction::kGelu:
          return Launch<__half, ActivationFunction::kGelu>::Run(args...);
        case ActivationFunction::kGeluTanh:
          return Launch<__half, ActivationFunction::kGeluTanh>::Run(args...);
        case ActivationFunction::kSilu:
          return Launch<__half, ActivationFunction::kSilu>::Run(args...);
      }
      break;
    case ElementType::kBFloat16:
      switch (function) {
        case ActivationFunction::kRelu:
          return Launch<__nv_bfloat16, ActivationFunction::kRelu>::Run(args...);
        case ActivationFunction::kGelu:
          return Launch<__nv_bfloat16, ActivationFunction::kGelu>::Run(args...);
        case ActivationFunction::kGeluTanh:
          return Launch<__nv_bfloat16, ActivationFunction::kGeluTanh>::Run(args...);
        case ActivationFunction::kSilu:
          return Launch<__nv_bfloat16, ActivationFunction::kSilu>::Run(args...);
      }
      break;
  }
  return cudaErrorInvalidValue;
}

template <typename T, ActivationFunction kFunction>
struct FlatLaunch {
  static cudaError_t Run(const void* input, void* output, int64_t count, cudaStream_t stream) {
    return LaunchFlat<T, kFunction>(input, output, count, stream);
  }
};

template <typename T, ActivationFunction kFunction>
struct BiasLaunch {
  static cudaError_t Run(const void* input, const void* bias, void* output, int64_t rows,
                         int64_t cols, cudaStream_t stream) {
    return LaunchBias<T, kFunction>(input, bias, output, rows, cols, stream);
  }
};

template <typename T, ActivationFunction kFunction>
struct GatedLaunch {
  static cudaError_t Run(const void* input, void* output, int64_t rows, int64_t cols,
                         cudaStream_t stream) {
    return LaunchGated<T, kFunction>(input, output, rows, cols, stream);
  }
};

}  // namespace

cudaError_t LaunchActivation(ElementType type, ActivationFunction function, const void* input,
                             void* output, int64_t count, cudaStream_t stream) {
  return Dispatch<FlatLaunch>(type, function, input, output, count, stream);
}

cudaError_t LaunchBiasActivation(ElementType type, ActivationFunction function, const void* input,
                                 const void* bias, void* output, int64_t rows, int64_t cols,
                                 cudaStream_t stream) {
  return Dispatch<BiasLaunch>(type, function, input, bias, output, rows, cols, stream);
}

cudaError_t LaunchGatedActivation(ElementType type, ActivationFunction function,
                                  const void* input, void* output, int64_t rows, int64_t cols,
                                  cudaStream_t stream) {
  return Dispatch<GatedLaunch>(type, function, input, output, rows, cols, stream);
}

}  // namespace troupe::gpu::kernels::internal
