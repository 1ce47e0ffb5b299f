// The arithmetic of one draw, shared by the sampling kernel (sampling_kernel.cu) and the host
// sampler (host_sampling.cc) so that both give the same token for the same logits, bit for bit:
// the order-preserving key of a logit, a token's top-p mass in fixed point, and its Gumbel score.
//
// Bit-identical results need arithmetic that is defined the same way on both sides, so this
// file uses only IEEE-754 operations rounded to nearest (+, -, *, fma), exact integer bit
// manipulation and exact conversions. It never calls the math library's logf/expf, which differ
// between libdevice, glibc and the GPU's approximate units (__expf) by an ulp here and there,
// and never leaves it to a compiler whether a * b + c is fused: it is either an explicit
// FusedMultiplyAdd or two operations. On the device every operation is an explicitly rounded
// intrinsic (__fmul_rn, __fmaf_rn and friends, which nvcc never contracts); host code that
// includes this header must be compiled with -ffp-contract=off (the BUILD targets set it).
//
//   const uint64_t mass = FixedPointMass(logit, max_logit, Reciprocal(temperature));
//   const float score = GumbelScore(logit, temperature, philox_bits.x);
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "gpu/sampling/internal/philox.h"

#if defined(__CUDACC__)
#define TROUPE_DRAW_FUNCTION __host__ __device__ __forceinline__
#else
#define TROUPE_DRAW_FUNCTION inline
#endif

namespace troupe::gpu::sampling::internal {

// kMassScale is the fixed-point scale of a token's top-p mass: 2^32 for the most likely token.
// Masses are integers so that their sums are exact in any order (the kernel sums with atomics).
inline constexpr float kMassScale = 4294967296.0f;  // 2^32
// kMinMassExponent: below it, exp(x) * 2^32 < 1 and the mass truncates to 0 anyway
// (exp(-23) * 2^32 = 0.44).
inline constexpr float kMinMassExponent = -23.0f;
// kMaxGumbel bounds the Gumbel noise from above: u <= 1 - 2^-24 gives
// g = -log(-log(u)) <= 16.64. A token with logit + T * kMaxGumbel at or below the best score
// so far cannot win, so a sampler may skip its noise without changing the draw.
inline constexpr float kMaxGumbel = 17.0f;

// The operations, each rounded once to nearest even.
TROUPE_DRAW_FUNCTION float Add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

TROUPE_DRAW_FUNCTION float Subtract(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

TROUPE_DRAW_FUNCTION float Multiply(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

TROUPE_DRAW_FUNCTION float Divide(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

// FusedMultiplyAdd is a * b + c rounded once (IEEE fma: __fmaf_rn, std::fma).
TROUPE_DRAW_FUNCTION float FusedMultiplyAdd(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

TROUPE_DRAW_FUNCTION uint32_t FloatBits(float value) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(value);
#else
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
#endif
}

TROUPE_DRAW_FUNCTION float BitsToFloat(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
#endif
}

// OrderedKey maps floats to uint32 so that key order is float order (-inf lowest, -0 just below
// +0). Top-k and top-p thresholds are keys: a token is kept when its key is at least the row's.
TROUPE_DRAW_FUNCTION uint32_t OrderedKey(float value) {
  const uint32_t bits = FloatBits(value);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// ln(2) split so that k * kLn2High is exact for |k| < 128 (its low 7 bits are zero).
inline constexpr float kLn2High = 6.93138123e-01f;  // 0x3f317180
inline constexpr float kLn2Low = 9.05800061e-06f;   // 0x3717f7d1: ln(2) - kLn2High

// Log is the natural logarithm of a positive, normal, finite x (the only inputs it gets), with
// an error under 0.95 ulp (checked on every float in [2^-24, 17]). With x = m * 2^k, m in
// [2/3, 4/3) and f = m - 1 (exact), log(x) = k ln2 + f + f^2 Q(f), where Q is a degree-8
// polynomial fitted to (log(1 + f) - f) / f^2 on [-1/3, 1/3] (interpolation at Chebyshev nodes;
// relative error 9e-9). Its Horner steps are fused multiply-adds, so that the kernel, which runs
// it for many tokens of a row, pays no more than for a library logf.
TROUPE_DRAW_FUNCTION float Log(float x) {
  const uint32_t bits = FloatBits(x);
  const uint32_t mantissa = bits & 0x007fffffu;
  const int32_t biased_exponent = static_cast<int32_t>(bits >> 23);
  // 0x2aaaab is the mantissa of 4/3: at or above it m goes to [2/3, 1), below it to [1, 4/3).
  const bool upper = mantissa >= 0x002aaaabu;
  const float m = BitsToFloat(mantissa | (upper ? 0x3f000000u : 0x3f800000u));
  const float k = static_cast<float>(biased_exponent - (upper ? 126 : 127));
  const float f = Subtract(m, 1.0f);
  float q = -0.124238856f;
  q = FusedMultiplyAdd(q, f, 0.137501404f);
  q = FusedMultiplyAdd(q, f, -0.122884415f);
  q = FusedMultiplyAdd(q, f, 0.140555084f);
  q = FusedMultiplyAdd(q, f, -0.166733295f);
  q = FusedMultiplyAdd(q, f, 0.200072482f);
  q = FusedMultiplyAdd(q, f, -0.249999434f);
  q = FusedMultiplyAdd(q, f, 0.333332717f);
  q = FusedMultiplyAdd(q, f, -0.5f);
  const float log1p_f = FusedMultiplyAdd(q, Multiply(f, f), f);
  return FusedMultiplyAdd(k, kLn2High, FusedMultiplyAdd(k, kLn2Low, log1p_f));
}

// Exp is e^x for x in [kMinMassExponent, 0], with an error under 1.2 ulp (NaN and smaller x
// give 0). With n = round(x / ln 2) and r = x - n ln2 (|r| <= ln2 / 2, exact by the split of
// ln2), e^x = 2^n e^r, and e^r is its Taylor polynomial of degree 8 (remainder below 2^-30).
// Plain operations rather than FMAs: the host runs Exp for every token of a top-p row, and
// std::fma is a library call where the CPU code is built without FMA instructions.
TROUPE_DRAW_FUNCTION float Exp(float x) {
  if (!(x >= kMinMassExponent)) return 0.0f;
  constexpr float kLog2E = 1.44269502f;
  // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer.
  constexpr float kRoundingShift = 12582912.0f;
  const float n = Subtract(Add(Multiply(x, kLog2E), kRoundingShift), kRoundingShift);
  float r = Subtract(x, Multiply(n, kLn2High));
  r = Subtract(r, Multiply(n, kLn2Low));
  // 1/8!, 1/7!, ..., 1/2!, 1, 1 (the floats nearest to them).
  float taylor = 2.48015876e-05f;
  taylor = Add(Multiply(taylor, r), 1.98412701e-04f);
  taylor = Add(Multiply(taylor, r), 1.38888892e-03f);
  taylor = Add(Multiply(taylor, r), 8.33333377e-03f);
  taylor = Add(Multiply(taylor, r), 4.16666679e-02f);
  taylor = Add(Multiply(taylor, r), 0.166666672f);
  taylor = Add(Multiply(taylor, r), 0.5f);
  taylor = Add(Multiply(taylor, r), 1.0f);
  taylor = Add(Multiply(taylor, r), 1.0f);
  // 2^n for n in [-33, 0]: a float with exponent field n + 127 and no mantissa.
  const float scale = BitsToFloat(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
  return Multiply(taylor, scale);
}

// Reciprocal is 1 / x, rounded once.
TROUPE_DRAW_FUNCTION float Reciprocal(float x) { return Divide(1.0f, x); }

// FixedPointMass is a token's share of softmax(logits / T) relative to the most likely token's,
// exp((logit - max_logit) / T), in 32.32 fixed point (truncated): 2^32 for the most likely
// token, 0 for a -inf logit. Needs logit <= max_logit; inverse_temperature is Reciprocal(T).
TROUPE_DRAW_FUNCTION uint64_t FixedPointMass(float logit, float max_logit,
                                             float inverse_temperature) {
  const float exponent = Multiply(Subtract(logit, max_logit), inverse_temperature);
  if (!(exponent >= kMinMassExponent)) return 0;
  return static_cast<uint64_t>(Multiply(Exp(exponent), kMassScale));
}

// GumbelScore is logit + T * g with g = -log(-log(u)) standard Gumbel noise and
// u = OpenUnitInterval(bits). The kept token with the highest score (the lowest index among
// equal scores) is an exact draw from softmax(logits / T) over the kept tokens.
TROUPE_DRAW_FUNCTION float GumbelScore(float logit, float temperature, uint32_t bits) {
  const float exponential = -Log(OpenUnitInterval(bits));  // in [6e-8, 16.7]: normal
  const float gumbel = -Log(exponential);
  return Add(logit, Multiply(temperature, gumbel));
}

}  // namespace troupe::gpu::sampling::internal

#undef TROUPE_DRAW_FUNCTION
