// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a
// counter-based generator, so any thread can draw the random numbers of any (key, counter)
// without state, and the same seed gives the same numbers on every run, batch layout and GPU.
// Host and device code share this header; the CPU test checks the Random123 known answers.
//
//   const Philox4x32 bits = Philox4x32_10({counter0, counter1, counter2, counter3}, {key0, key1});
//   const float u = OpenUnitInterval(bits.x);   // in (0, 1)
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define TROUPE_PHILOX_FUNCTION __host__ __device__ __forceinline__
#else
#define TROUPE_PHILOX_FUNCTION inline
#endif

namespace troupe::gpu::sampling::internal {

struct Philox4x32 {
  uint32_t x, y, z, w;
};

struct PhiloxKey {
  uint32_t low, high;
};

// The multipliers and Weyl key increments of Philox4x32 (Random123's PHILOX_M4x32_0/1 and
// PHILOX_W32_0/1).
inline constexpr uint32_t kPhiloxMultiplier0 = 0xD2511F53u;
inline constexpr uint32_t kPhiloxMultiplier1 = 0xCD9E8D57u;
inline constexpr uint32_t kPhiloxWeyl0 = 0x9E3779B9u;
inline constexpr uint32_t kPhiloxWeyl1 = 0xBB67AE85u;
inline constexpr int kPhiloxRounds = 10;

TROUPE_PHILOX_FUNCTION uint32_t MultiplyHigh(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

// Philox4x32_10 maps a 128-bit counter and a 64-bit key to 128 random bits.
TROUPE_PHILOX_FUNCTION Philox4x32 Philox4x32_10(Philox4x32 counter, PhiloxKey key) {
  for (int round = 0; round < kPhiloxRounds; ++round) {
    if (round > 0) {
      key.low += kPhiloxWeyl0;
      key.high += kPhiloxWeyl1;
    }
    const uint32_t high0 = MultiplyHigh(kPhiloxMultiplier0, counter.x);
    const uint32_t low0 = kPhiloxMultiplier0 * counter.x;
    const uint32_t high1 = MultiplyHigh(kPhiloxMultiplier1, counter.z);
    const uint32_t low1 = kPhiloxMultiplier1 * counter.z;
    counter = Philox4x32{high1 ^ counter.y ^ key.low, low1, high0 ^ counter.w ^ key.high, low0};
  }
  return counter;
}

// OpenUnitInterval turns 32 random bits into a float uniform on (0, 1), never 0 or 1: the top
// 23 bits pick one of 2^23 cells of width 2^-23 and the result is the cell's midpoint, exact
// in float (so 1 - 2^-24 at most, and -log(u) > 0 always).
TROUPE_PHILOX_FUNCTION float OpenUnitInterval(uint32_t bits) {
  constexpr float kCellWidth = 1.0f / 8388608.0f;  // 2^-23
  return (static_cast<float>(bits >> 9) + 0.5f) * kCellWidth;
}

}  // namespace troupe::gpu::sampling::internal

#undef TROUPE_PHILOX_FUNCTION
