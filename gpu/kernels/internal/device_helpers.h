// Device-side building blocks shared by the .cu files of gpu/kernels and gpu/sampling: fp16/bf16
// <-> float conversion, 16-byte vector loads and stores that convert to float registers, and
// warp/block reductions. CUDA code only; public headers never include this.
//
//   float x[8];
//   LoadFloats<8>(input + offset, x);      // one 16-byte load of 8 halves
//   const float sum = BlockSum(x[0] + ..., shared);
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

namespace troupe::gpu::kernels::internal {

// kVectorBytes is the widest global access a thread makes: 16 bytes, one LDG.128/STG.128.
inline constexpr int kVectorBytes = 16;
inline constexpr unsigned kFullWarpMask = 0xffffffffu;
inline constexpr int kWarpSize = 32;

// VectorWidth<T> is how many elements of T fit in one 16-byte access (4 fp32, 8 fp16/bf16).
template <typename T>
inline constexpr int VectorWidth = kVectorBytes / static_cast<int>(sizeof(T));

__device__ __forceinline__ float ToFloat(float x) { return x; }
__device__ __forceinline__ float ToFloat(__half x) { return __half2float(x); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T FromFloat(float x);
template <>
__device__ __forceinline__ float FromFloat<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half FromFloat<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// RoundTo<T> rounds a float through T, so that a value stored as T and re-read matches the value
// kept in registers.
template <typename T>
__device__ __forceinline__ float RoundTo(float x) {
  return ToFloat(FromFloat<T>(x));
}

// Elements<T, N> is N elements of T aligned as one access of N * sizeof(T) bytes.
template <typename T, int N>
struct alignas(sizeof(T) * N) Elements {
  T values[N];
};

// IsVectorAccess<T, N> is true when N elements of T make one 16-byte access; only then do the
// load and store helpers below require 16-byte alignment.
template <typename T, int N>
inline constexpr bool IsVectorAccess = sizeof(T) * N == kVectorBytes;

// LoadFloats reads N consecutive elements at `source` into float registers: one 16-byte load when
// N * sizeof(T) == 16 (then `source` must be 16-byte aligned), else N element loads.
template <int N, typename T>
__device__ __forceinline__ void LoadFloats(const T* source, float (&out)[N]) {
  if constexpr (IsVectorAccess<T, N>) {
    const Elements<T, N> packed = *reinterpret_cast<const Elements<T, N>*>(source);
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = ToFloat(packed.values[i]);
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = ToFloat(source[i]);
  }
}

// PackPair converts two floats to a pair of T with one instruction where the hardware has it.
template <typename T>
__device__ __forceinline__ void PackPair(float a, float b, T* out) {
  if constexpr (std::is_same_v<T, __half>) {
    *reinterpret_cast<__half2*>(out) = __floats2half2_rn(a, b);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    *reinterpret_cast<__nv_bfloat162*>(out) = __floats2bfloat162_rn(a, b);
  } else {
    out[0] = a;
    out[1] = b;
  }
}

// StoreFloats writes N floats to `destination` as T: one 16-byte store when N * sizeof(T) == 16
// (then `destination` must be 16-byte aligned), else N element stores.
template <int N, typename T>
__device__ __forceinline__ void StoreFloats(const float (&in)[N], T* destination) {
  if constexpr (IsVectorAccess<T, N>) {
    Elements<T, N> packed;
#pragma unroll
    for (int i = 0; i < N; i += 2) PackPair<T>(in[i], in[i + 1], &packed.values[i]);
    *reinterpret_cast<Elements<T, N>*>(destination) = packed;
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) destination[i] = FromFloat<T>(in[i]);
  }
}

// IsAligned is true for a pointer (or null) on a 16-byte boundary.
__host__ __device__ __forceinline__ bool IsAligned(const void* pointer) {
  return reinterpret_cast<uintptr_t>(pointer) % kVectorBytes == 0;
}

__device__ __forceinline__ float WarpSum(float value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(kFullWarpMask, value, offset);
  }
  return value;
}

__device__ __forceinline__ float WarpMax(float value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value = fmaxf(value, __shfl_xor_sync(kFullWarpMask, value, offset));
  }
  return value;
}

// BlockSum returns the sum of `value` over a 1-D block to every thread. blockDim.x must be a
// multiple of 32 and every thread must call it; `shared` holds 32 floats and is free again on
// return, so calls may follow each other.
__device__ __forceinline__ float BlockSum(float value, float* shared) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  value = WarpSum(value);
  if (lane == 0) shared[warp] = value;
  __syncthreads();
  const int warps = blockDim.x / kWarpSize;
  float total = lane < warps ? shared[lane] : 0.0f;
  total = WarpSum(total);
  __syncthreads();
  return total;
}

// BlockMax is BlockSum's maximum.
__device__ __forceinline__ float BlockMax(float value, float* shared) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  value = WarpMax(value);
  if (lane == 0) shared[warp] = value;
  __syncthreads();
  const int warps = blockDim.x / kWarpSize;
  float total = lane < warps ? shared[lane] : -INFINITY;
  total = WarpMax(total);
  __syncthreads();
  return total;
}

// RowTiling is how a 2-D elementwise launch covers a row of `packs` vector accesses: the grid's
// x dimension walks rows (up to 2^31 - 1), y the blocks within a row (up to 65535), and the
// threads of a block are balanced so that the last block of a row is not mostly idle.
struct RowTiling {
  int threads;
  int blocks_per_row;
};

inline constexpr int kMaxElementwiseThreads = 256;
inline constexpr int kMaxGridY = 65535;

__host__ __forceinline__ RowTiling TileRow(int64_t packs) {
  const int64_t blocks = (packs + kMaxElementwiseThreads - 1) / kMaxElementwiseThreads;
  const int64_t per_block = (packs + blocks - 1) / blocks;
  const int64_t threads = (per_block + kWarpSize - 1) / kWarpSize * kWarpSize;
  return RowTiling{static_cast<int>(threads), static_cast<int>(blocks)};
}

}  // namespace troupe::gpu::kernels::internal
