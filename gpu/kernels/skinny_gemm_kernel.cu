// The skinny GEMM of skinny_gemm.h, launched from skinny_gemm.cc.
//
// Each warp owns kColsPerWarp consecutive weight rows (output columns). Its lanes walk the depth
// in 16-byte chunks, lane l taking chunks l, l + 32, ...; before any arithmetic a lane issues
// kUnroll chunks of each of its rows, so kUnroll * kColsPerWarp 16-byte loads (128 bytes) are in
// flight per thread: with a few warps per SM that is the ~30 KB per SM that keeps HBM busy. The
// weights are read once, bypassing L1 (ld.global.nc.L1::no_allocate); x, a few KB, is re-read
// from L1 by every warp. Every lane keeps a fp32 partial sum per (row, column); a warp reduction
// finishes each, and one lane adds the bias (and y when accumulating) and stores it.
#include <cstdint>

#include "gpu/kernels/internal/device_helpers.h"
#include "gpu/kernels/internal/launch.h"

namespace troupe::gpu::kernels::internal {
namespace {

inline constexpr int kColsPerWarp = 2;
inline constexpr int kUnroll = 4;
inline constexpr int kWarpsPerBlock = 4;
inline constexpr int kChunkElements = 8;  // fp16/bf16 per 16-byte load

// LoadWeights reads 16 bytes that no thread writes and no other warp reads, without allocating
// them in L1.
__device__ __forceinline__ uint4 LoadWeights(const uint4* source) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(source));
  return v;
}

// Unpack converts the 8 elements of a 16-byte chunk to floats, two per instruction.
template <typename T>
__device__ __forceinline__ void Unpack(const uint4& chunk, float (&out)[kChunkElements]) {
  const uint32_t words[4] = {chunk.x, chunk.y, chunk.z, chunk.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float2 pair;
    if constexpr (std::is_same_v<T, __half>) {
      pair = __half22float2(*reinterpret_cast<const __half2*>(&words[i]));
    } else {
      pair = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&words[i]));
    }
    out[2 * i] = pair.x;
    out[2 * i + 1] = pair.y;
  }
}

template <typename T, typename Out, int kRows>
__global__ void __launch_bounds__(kWarpsPerBlock * kWarpSize)
    SkinnyGemmKernel(SkinnyGemmLaunch args) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t first_col =
      (static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize) *
      kColsPerWarp;
  if (first_col >= args.total_cols) return;  // the whole warp leaves together
  const int64_t chunks = args.depth / kChunkElements;

  // A warp whose last column is past the end re-reads the last column for it (in bounds, and
  // the loop stays free of per-column checks); that sum is never stored.
  const uint4* weights[kColsPerWarp];
#pragma unroll
  for (int c = 0; c < kColsPerWarp; ++c) {
    const int64_t col = min(first_col + c, static_cast<int64_t>(args.total_cols) - 1);
    weights[c] = static_cast<const uint4*>(args.w) + col * chunks;
  }
  const uint4* x = static_cast<const uint4*>(args.x);

  float sums[kColsPerWarp][kRows] = {};
  for (int64_t base = lane; base < chunks; base += kWarpSize * kUnroll) {
    uint4 w[kUnroll][kColsPerWarp];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t k = base + u * kWarpSize;
#pragma unroll
      for (int c = 0; c < kColsPerWarp; ++c) {
        w[u][c] = k < chunks ? LoadWeights(weights[c] + k) : make_uint4(0, 0, 0, 0);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t k = base + u * kWarpSize;
      if (k >= chunks) break;
      float wf[kColsPerWarp][kChunkElements];
#pragma unroll
      for (int c = 0; c < kColsPerWarp; ++c) Unpack<T>(w[u][c], wf[c]);
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        float xf[kChunkElements];
        Unpack<T>(__ldg(x + r * chunks + k), xf);
#pragma unroll
        for (int c = 0; c < kColsPerWarp; ++c) {
#pragma unroll
          for (int e = 0; e < kChunkElements; ++e) sums[c][r] = fmaf(xf[e], wf[c][e], sums[c][r]);
        }
      }
    }
  }

  const T* bias = static_cast<const T*>(args.bias);
  Out* y = static_cast<Out*>(args.y);
#pragma unroll
  for (int c = 0; c < kColsPerWarp; ++c) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float value = WarpSum(sums[c][r]);
      const int64_t col = first_col + c;
      if (lane != c * kRows + r || col >= args.total_cols) continue;
      const int64_t block = col / args.cols;
      const int64_t index = (block * args.rows + r) * args.cols + (col - block * args.cols);
      if (bias != nullptr) value += ToFloat(bias[col]);
      if (args.accumulate) value += ToFloat(y[index]);
      y[index] = FromFloat<Out>(value);
    }
  }
}

template <typename T, typename Out, int kRows>
cudaError_t Launch(const SkinnyGemmLaunch& args, cudaStream_t stream) {
  const int64_t warps = (static_cast<int64_t>(args.total_cols) + kColsPerWarp - 1) / kColsPerWarp;
  const int64_t blocks = (warps + kWarpsPerBlock - 1) / kWarpsPerBlock;
  SkinnyGemmKernel<T, Out, kRows>
      <<<static_cast<unsigned>(blocks), kWarpsPerBlock * kWarpSize, 0, stream>>>(args);
  return cudaGetLastError();
}

template <typename T, typename Out>
cudaError_t LaunchRows(const SkinnyGemmLaunch& args, cudaStream_t stream) {
  switch (args.rows) {
    case 1: return Launch<T, Out, 1>(args, stream);
    case 2: return Launch<T, Out, 2>(args, stream);
    case 3: return Launch<T, Out, 3>(args, stream);
    case 4: return Launch<T, Out, 4>(args, stream);
    case 5: return Launch<T, Out, 5>(args, stream);
    case 6: return Launch<T, Out, 6>(args, stream);
    case 7: return Launch<T, Out, 7>(args, stream);
    case 8: return Launch<T, Out, 8>(args, stream);
  }
  return cudaErrorInvalidValue;
}

template <typename T>
cudaError_t LaunchType(const SkinnyGemmLaunch& args, cudaStream_t stream) {
  return args.float_output ? LaunchRows<T, float>(args, stream) : LaunchRows<T, T>(args, stream);
}

}  // namespace

cudaError_t LaunchSkinnyGemm(ElementType type, const SkinnyGemmLaunch& args, cudaStream_t stream) {
  switch (type) {
    case ElementType::kFloat16: return LaunchType<__half>(args, stream);
    case ElementType::kBFloat16: return LaunchType<__nv_bfloat16>(args, stream);
    case ElementType::kFloat32: break;
  }
  return cudaErrorInvalidValue;
}

}  // namespace troupe::gpu::kernels::internal
