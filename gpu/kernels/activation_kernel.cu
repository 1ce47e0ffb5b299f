// Activation kernels (flat, bias + activation, gated), launched from activation.cc. Every
// thread handles one 16-byte access (one element on the unaligned path) in fp32 registers; row
// kernels tile rows as in TileRow (grid x = rows, y = blocks of a row) so no thread divides.
//
// These kernels are memory-bound only if the math per element stays well under the ~30
// instructions that a 16-byte access per thread leaves room for at full bandwidth: hence the
// exact-erf GELU and the tanh GELU below are written with one SFU exponential each instead of
// erff / tanhf (each about 20-30 instructions, which made bias + GELU compute-bound).
#include <cmath>

#include "gpu/kernels/internal/device_helpers.h"
#include "gpu/kernels/internal/launch.h"

namespace troupe::gpu::kernels::internal {
namespace {

inline constexpr int kFlatThreads = 256;

// GELU (erf): x * Phi(x) with Phi the standard normal CDF, computed as
//   gelu(x) = max(x, 0) - |x| * Phi(-|x|)
// (for x >= 0 that is x (1 - Phi(-x)) = x Phi(x); for x < 0 it is x Phi(x)), with
//   Phi(-a) = 0.5 erfc(a / sqrt(2)) = 2^E(a),  E(a) = -1 + a (c1 + a (c2 + ... + a c10)).
// The polynomial is a weighted least-squares fit of log2(0.5 erfc(a / sqrt 2)) on [0, 6] (fit in
// double, coefficients rounded to float one at a time from c10 down, refitting the rest). In
// float arithmetic with an exact exp2 it is within 4.5e-8 of Phi (relative 3.2e-6 where Phi is
// tiny); ex2.approx adds at most 2 ulp of Phi. So the result is the exact-erf GELU to about fp32
// rounding (over all fp16 inputs, 3 of 63488 outputs differed from the correctly rounded value,
// each by one ulp at a rounding tie), and more accurate than 0.5 x (1 + erff(x / sqrt 2)) for
// negative x, where 1 + erf cancels. Cost: 10 FMA, one MUFU.EX2 and 3 other instructions.
// Beyond 6 (Phi(-6) = 1e-9) the polynomial is extrapolated: E keeps decreasing monotonically up
// to 13, within a few percent of the tail's (< 6e-9) value. |x| is clamped at 12, where
// E(12) < -144 and 2^E flushes to 0: gelu(x) is exactly x for x >= 12 and 0 for x <= -12 (inf
// included). NaN propagates.
inline constexpr float kGeluClamp = 12.0f;

// The tanh approximation of GELU (Hendrycks & Gimpel 2016; "gelu_new" in GPT-2,
// gelu(approximate="tanh") in PyTorch), 0.5 x (1 + tanh(u)) with u = sqrt(2 / pi) (x + 0.044715
// x^3), computed as x * sigmoid(2u) = x / (1 + 2^(x (k1 + k3 x^2))): two MUFU instructions and 5
// others, instead of tanhf.
inline constexpr float kSqrtTwoOverPi = 0.7978845608028654f;
inline constexpr float kGeluTanhCubic = 0.044715f;
inline constexpr float kLog2E = 1.4426950408889634f;
inline constexpr float kGeluTanhK1 = -2.0f * kLog2E * kSqrtTwoOverPi;
inline constexpr float kGeluTanhK3 = kGeluTanhK1 * kGeluTanhCubic;

// min/max that return NaN when either input is NaN (fminf/fmaxf would return the other input).
__device__ __forceinline__ float MinPropagatingNaN(float a, float b) {
  float result;
  asm("min.NaN.f32 %0, %1, %2;" : "=f"(result) : "f"(a), "f"(b));
  return result;
}

__device__ __forceinline__ float MaxPropagatingNaN(float a, float b) {
  float result;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(result) : "f"(a), "f"(b));
  return result;
}

// Exp2Approx is 2^x by the SFU (MUFU.EX2): relative error about 2 ulp, results below 2^-126
// flushed to zero.
__device__ __forceinline__ float Exp2Approx(float x) {
  float result;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(result) : "f"(x));
  return result;
}

__device__ __forceinline__ float GeluErf(float x) {
  // c1 ... c10 of E(a) above.
  constexpr float kLog2Tail[10] = {
      -0x1.26aee8p+0f,  -0x1.d637bcp-2f, -0x1.ae483ap-5f,  0x1.d022c6p-8f,  -0x1.ed93b2p-14f,
      -0x1.ceb3c8p-13f, 0x1.ee0a20p-15f, -0x1.0980cep-17f, 0x1.333ba6p-21f, -0x1.2f1e38p-26f};
  const float a = MinPropagatingNaN(fabsf(x), kGeluClamp);
  float poly = kLog2Tail[9];
#pragma unroll
  for (int k = 8; k >= 0; --k) poly = fmaf(poly, a, kLog2Tail[k]);
  const float lower_tail = Exp2Approx(fmaf(poly, a, -1.0f));  // Phi(-a)
  return fmaf(-a, lower_tail, MaxPropagatingNaN(x, 0.0f));
}

template <ActivationFunction kFunction>
__device__ __forceinline__ float Activate(float x) {
  if constexpr (kFunction == ActivationFunction::kRelu) {
    return x > 0.0f ? x : 0.0f;
  } else if constexpr (kFunction == ActivationFunction::kGelu) {
    return GeluErf(x);
  } else if constexpr (kFunction == ActivationFunction::kGeluTanh) {
    // For x < -10 or so the exponential is +inf and the quotient -0 (the true value is < 1e-36).
    const float exponent = x * fmaf(x * x, kGeluTanhK3, kGeluTanhK1);
    return __fdividef(x, 1.0f + Exp2Approx(exponent));
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
