// Element types of GPU tensors, and host-side conversions for the 16-bit ones.
//
// Kernels take raw device pointers plus a DType; the conversions here let CPU code (references,
// tests, weight loading) produce and read fp16/bf16 without CUDA headers.
//
//   uint16_t h = FloatToHalf(0.1f);   float f = HalfToFloat(h);
#pragma once

#include <cstddef>
#include <cstdint>

namespace troupe::gpu {

enum class DType { kFloat32, kFloat16, kBFloat16 };

// SizeOf returns the bytes per element.
size_t SizeOf(DType dtype);
// DTypeName returns "fp32", "fp16" or "bf16".
const char* DTypeName(DType dtype);

// IEEE binary16 and bfloat16 from/to float, rounding to nearest even.
uint16_t FloatToHalf(float value);
float HalfToFloat(uint16_t bits);
uint16_t FloatToBFloat16(float value);
float BFloat16ToFloat(uint16_t bits);

// ToFloat/FromFloat dispatch on dtype for one element stored at `element` (2 or 4 bytes).
float ToFloat(DType dtype, const void* element);
void FromFloat(DType dtype, float value, void* element);

}  // namespace troupe::gpu
