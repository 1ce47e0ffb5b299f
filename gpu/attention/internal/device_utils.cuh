// Device helpers shared by the attention kernels: element types, 16-byte vectors, conversion.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace troupe::gpu::attention::internal {

// Vec8 is eight 16-bit elements: one 16-byte load or store.
struct alignas(16) Vec8 {
  uint4 bits;
};

template <class T>
__device__ __forceinline__ float ToFloat(T x);
template <>
__device__ __forceinline__ float ToFloat<__half>(__half x) { return __half2float(x); }
template <>
__device__ __forceinline__ float ToFloat<__nv_bfloat16>(__nv_bfloat16 x) {
  return __bfloat162float(x);
}

template <class T>
__device__ __forceinline__ T FromFloat(float x);
template <>
__device__ __forceinline__ __half FromFloat<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// Unpack8 converts eight packed 16-bit elements to floats.
template <class T>
__device__ __forceinline__ void Unpack8(const uint4& bits, float (&out)[8]) {
  const T* elements = reinterpret_cast<const T*>(&bits);
#pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = ToFloat<T>(elements[i]);
}

template <class T>
__device__ __forceinline__ uint4 Pack8(const float (&in)[8]) {
  uint4 bits;
  T* elements = reinterpret_cast<T*>(&bits);
#pragma unroll
  for (int i = 0; i < 8; ++i) elements[i] = FromFloat<T>(in[i]);
  return bits;
}

// PackPair packs two floats into one 32-bit register of two 16-bit elements (low = a).
template <class T>
__device__ __forceinline__ uint32_t PackPair(float a, float b);
template <>
__device__ __forceinline__ uint32_t PackPair<__half>(float a, float b) {
  __half2 v = __floats2half2_rn(a, b);
  return *reinterpret_cast<uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t PackPair<__nv_bfloat16>(float a, float b) {
  __nv_bfloat162 v = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<uint32_t*>(&v);
}

}  // namespace troupe::gpu::attention::internal
