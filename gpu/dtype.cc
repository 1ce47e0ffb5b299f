#include "gpu/dtype.h"

#include <cmath>
#include <cstring>

namespace troupe::gpu {

size_t SizeOf(DType dtype) { return dtype == DType::kFloat32 ? 4 : 2; }

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return "fp32";
    case DType::kFloat16: return "fp16";
    case DType::kBFloat16: return "bf16";
  }
  return "?";
}

uint16_t FloatToHalf(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // Inf or NaN.
    return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // Overflow to Inf.
  if (abs < 0x38800000u) {  // Subnormal or zero in half: value = m * 2^-24.
    float magnitude;
    std::memcpy(&magnitude, &abs, 4);
    const float scaled = magnitude * 16777216.0f;  // 2^24; nearbyint rounds to even.
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(scaled)));
  }
  // Normal: rebias the exponent and round the mantissa to 10 bits, to nearest even.
  uint32_t mantissa = abs & 0x7fffffu;
  uint32_t exponent = (abs >> 23) - 127 + 15;
  uint32_t half = (exponent << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // May carry into Inf: fine.
  return static_cast<uint16_t>(sign | half);
}

float HalfToFloat(uint16_t bits) {
  const uint32_t sign = (bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  const uint32_t mantissa = bits & 0x3ffu;
  uint32_t x;
  if (exponent == 0) {
    const float magnitude = static_cast<float>(mantissa) / 16777216.0f;
    float value = sign ? -magnitude : magnitude;
    return value;
  } else if (exponent == 31) {
    x = sign | 0x7f800000u | (mantissa << 13);
  } else {
    x = sign | ((exponent - 15 + 127) << 23) | (mantissa << 13);
  }
  float value;
  std::memcpy(&value, &x, 4);
  return value;
}

uint16_t FloatToBFloat16(float value) {
  uint32_t x;
  std::memcpy(&x, &value, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // NaN.
  const uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>((x + rounding) >> 16);
}

float BFloat16ToFloat(uint16_t bits) {
  const uint32_t x = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &x, 4);
  return value;
}

float ToFloat(DType dtype, const void* element) {
  uint16_t bits;
  switch (dtype) {
    case DType::kFloat32: {
      float value;
      std::memcpy(&value, element, 4);
      return value;
    }
    case DType::kFloat16:
      std::memcpy(&bits, element, 2);
      return HalfToFloat(bits);
    case DType::kBFloat16:
      std::memcpy(&bits, element, 2);
      return BFloat16ToFloat(bits);
  }
  return 0;
}

void FromFloat(DType dtype, float value, void* element) {
  uint16_t bits;
  switch (dtype) {
    case DType::kFloat32:
      std::memcpy(element, &value, 4);
      return;
    case DType::kFloat16:
      bits = FloatToHalf(value);
      std::memcpy(element, &bits, 2);
      return;
    case DType::kBFloat16:
      bits = FloatToBFloat16(value);
      std::memcpy(element, &bits, 2);
      return;
  }
}

}  // namespace troupe::gpu
