// The online-softmax step and the epilogue shared by the prefill attention kernels.
//
// Both kernels hold a 16-row slice of scores and outputs per warp in the mma/wgmma accumulator
// layout: for each 8-column tile n, thread `lane` holds rows row0 and row0 + 8 (row0 = the
// warp's first row + lane / 4) and columns 8n + 2 * (lane % 4) + {0, 1}, as elements
// s[4n + e]: e = 0, 1 on row0, e = 2, 3 on row0 + 8.
#pragma once

#include <cstdint>

#include "gpu/attention/internal/device_utils.cuh"

namespace troupe::gpu::attention::internal {

// Exp2 is 2^x by the SFU (ex2.approx.ftz: about 2 ulp; results below 2^-126 flush to 0, which
// for probabilities against the running maximum is harmless). exp2f would add a range fix-up of
// three instructions to each of the 64 exponentials a thread computes per tile.
__device__ __forceinline__ float Exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// SoftmaxTileImpl is SoftmaxTile for a tile that needs the mask (kMask) or not. Maxima are kept
// in raw score units (scale_log2 > 0 preserves order), so each probability is one FFMA and one
// exponential: 2^(s * scale_log2 - max * scale_log2).
template <bool kMask, int kScores>
__device__ __forceinline__ void SoftmaxTileImpl(float (&s)[kScores], int key0, int row0,
                                                int seq_len, float scale_log2,
                                                float (&row_max)[2], float (&row_sum)[2],
                                                float (&rescale)[2]) {
  float tile_max[2] = {row_max[0], row_max[1]};
#pragma unroll
  for (int i = 0; i < kScores; ++i) {
    if constexpr (kMask) {
      const int key = key0 + (i / 4) * 8 + (i & 1);
      const int row = row0 + ((i >> 1) & 1) * 8;
      if (key > row || key >= seq_len) s[i] = -INFINITY;
    }
    tile_max[(i >> 1) & 1] = fmaxf(tile_max[(i >> 1) & 1], s[i]);
  }
  float offset[2];  // -max * scale_log2
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    // The four threads of a row hold its columns.
    tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
    tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
    // A row that has seen only masked keys so far keeps max -inf: use 0 to avoid inf - inf.
    // Its output and sum are still 0, so any finite rescale factor (here 0) is right.
    const float safe_max = tile_max[r] == -INFINITY ? 0.f : tile_max[r];
    rescale[r] = Exp2((row_max[r] - safe_max) * scale_log2);
    row_max[r] = tile_max[r];
    row_sum[r] *= rescale[r];
    offset[r] = -safe_max * scale_log2;
  }
#pragma unroll
  for (int i = 0; i < kScores; ++i) {
    s[i] = Exp2(fmaf(s[i], scale_log2, offset[(i >> 1) & 1]));
    row_sum[(i >> 1) & 1] += s[i];
  }
}

// SoftmaxTile turns one tile of raw scores into unnormalized probabilities, in place: it masks
// keys after the row (causal) or past the sequence where needs_mask says the tile has any, scales
// the scores into the log2 domain and exponentiates against the running maximum. It updates each
// row's running max and sum, and returns in `rescale` the factor the rows' accumulated outputs
// must be multiplied by. Only the tiles on the diagonal or the sequence's end take the masking
// code: compiled branch-free into every tile, it cost five instructions per score.
template <int kScores>
__device__ __forceinline__ void SoftmaxTile(float (&s)[kScores], int key0, int row0,
                                            bool needs_mask, int seq_len, float scale_log2,
                                            float (&row_max)[2], float (&row_sum)[2],
                                            float (&rescale)[2]) {
  if (needs_mask) {
    SoftmaxTileImpl<true>(s, key0, row0, seq_len, scale_log2, row_max, row_sum, rescale);
  } else {
    SoftmaxTileImpl<false>(s, key0, row0, seq_len, scale_log2, row_max, row_sum, rescale);
  }
}

// RescaleRows multiplies the accumulated output rows by SoftmaxTile's factors; it skips the
// multiplications when no row of the warp changed its maximum (most tiles after the first few).
template <int kOut>
__device__ __forceinline__ void RescaleRows(float (&o)[kOut], const float (&rescale)[2]) {
  if (!__any_sync(0xffffffffu, rescale[0] != 1.f || rescale[1] != 1.f)) return;
#pragma unroll
  for (int i = 0; i < kOut; ++i) o[i] *= rescale[(i >> 1) & 1];
}

// PackProbabilities packs the probabilities of 16 keys (two 8-column tiles: s[8k .. 8k + 7])
// as one A fragment of the P · V product.
template <class T>
__device__ __forceinline__ void PackProbabilities(const float* s, uint32_t (&p)[4]) {
#pragma unroll
  for (int j = 0; j < 4; ++j) p[j] = PackPair<T>(s[2 * j], s[2 * j + 1]);
}

// WriteRows normalizes this thread's two output rows by their sums (completed across the four
// threads of each row) and stores them; rows at or past seq_len are not written.
template <class T, int kDim>
__device__ __forceinline__ void WriteRows(const float (&o)[kDim / 2], float (&row_sum)[2],
                                          int row0, int seq_len, T* out_base, int64_t row_stride,
                                          int lane) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row0 + r * 8;
    if (row >= seq_len) continue;
    const float inverse = 1.f / row_sum[r];
    T* out_row = out_base + row * row_stride + (lane % 4) * 2;
#pragma unroll
    for (int t = 0; t < kDim / 8; ++t) {
      *reinterpret_cast<uint32_t*>(out_row + t * 8) =
          PackPair<T>(o[4 * t + 2 * r] * inverse, o[4 * t + 2 * r + 1] * inverse);
    }
  }
}

}  // namespace troupe::gpu::attention::internal
