// FlashAttention forward with Hopper warpgroup MMAs (wgmma), causal, variable length, d = 128.
//
// A thread block of one or two warpgroups owns 64 or 128 query rows of one (sequence, head):
// each warpgroup 64 rows, the wgmma M. Key/value tiles of 64 rows stream through double-buffered shared memory
// (cp.async, issued one tile ahead). S = Q·K^T is one 64x64 wgmma chain with both operands in
// shared memory; O += P·V takes P from registers (the S accumulators, rescaled and packed) and V
// from shared memory as an N-major operand. All tiles use the 128-byte swizzle that wgmma reads:
// a tile of R rows is stored as two "slabs" of 64 columns (128 bytes per row), rows 128 bytes
// apart, 16-byte chunks XOR-ed with the row's low three bits; slabs start on 1024-byte
// boundaries.
#include <cuda_runtime.h>

#include <cstdint>

#include "gpu/attention/internal/device_utils.cuh"
#include "gpu/attention/internal/prefill_sm90.h"
#include "gpu/attention/internal/ptx.cuh"
#include "gpu/attention/internal/wgmma.cuh"

namespace troupe::gpu::attention::internal {
namespace {

constexpr int kDim = 128;
constexpr int kCols = 64;           // Keys per tile.
constexpr int kSlabBytes = 128;     // Bytes per row of one slab (64 fp16/bf16 elements).
constexpr int kKvBytes = kCols * kDim * 2;
constexpr float kLog2e = 1.4426950408889634f;

// A block has kGroups warpgroups of 64 query rows. One warpgroup per block lets two blocks
// share a multiprocessor, so one's softmax overlaps the other's matrix products.
// Key/value tiles are prefetched kStages - 1 tiles ahead, through kStages buffers each.
template <int kGroups>
struct Shape {
  static constexpr int kRows = 64 * kGroups;
  static constexpr int kThreads = 128 * kGroups;
  static constexpr int kQBytes = kRows * kDim * 2;
  static constexpr int kStages = 3;
  static constexpr int kSharedBytes = kQBytes + 2 * kStages * kKvBytes + 1024;  // +1024: align.
  static constexpr int kBlocksPerSm = kGroups == 1 ? 2 : 1;
};

// Loads rows [first, first + kTileRows) of one head of a [tokens, heads, 128] tensor into the
// swizzled slab layout at `tile` (shared address); rows past `limit` become zeros.
template <int kTileRows, int kThreads>
__device__ __forceinline__ void LoadSlabTile(uint32_t tile, const void* base, int64_t row_stride,
                                             int first, int limit) {
  constexpr int kChunks = kDim / 8;  // 16-byte chunks per row.
  const char* bytes = static_cast<const char*>(base);
  for (int i = threadIdx.x; i < kTileRows * kChunks; i += kThreads) {
    const int row = i / kChunks;
    const int chunk = i % kChunks;
    const int slab = chunk >> 3;
    const uint32_t destination = tile + slab * (kTileRows * kSlabBytes) + row * kSlabBytes +
                                 (((chunk & 7) ^ (row & 7)) << 4);
    const bool valid = first + row < limit;
    const char* source = bytes + (valid ? ((first + row) * row_stride + chunk * 8) * 2 : 0);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(destination),
                 "l"(source), "r"(valid ? 16 : 0));
  }
}

// Makes this thread's completed cp.async writes visible to the tensor cores' (async) proxy.
__device__ __forceinline__ void FenceProxyAsync() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

template <class T, int kGroups>
__global__ void __launch_bounds__(Shape<kGroups>::kThreads, Shape<kGroups>::kBlocksPerSm)
    PrefillSm90Kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                      const int32_t* __restrict__ cu_seqlens, int num_heads, int num_kv_heads,
                      float scale_log2, T* __restrict__ output) {
  constexpr int kRows = Shape<kGroups>::kRows;
  constexpr int kThreads = Shape<kGroups>::kThreads;
  constexpr int kQBytes = Shape<kGroups>::kQBytes;
  constexpr int kStages = Shape<kGroups>::kStages;
  extern __shared__ unsigned char shared_bytes[];
  const uint32_t shared_base = (SharedAddress(shared_bytes) + 1023) & ~1023u;
  const uint32_t q_tile = shared_base;
  const uint32_t k_tiles = q_tile + kQBytes;              // [kStages] x kKvBytes
  const uint32_t v_tiles = k_tiles + kStages * kKvBytes;  // [kStages] x kKvBytes

  const int seq = blockIdx.z;
  const int head = blockIdx.y;
  const int kv_head = head / (num_heads / num_kv_heads);
  const int seq_start = cu_seqlens[seq];
  const int seq_len = cu_seqlens[seq + 1] - seq_start;
  const int q_first = (gridDim.x - 1 - blockIdx.x) * kRows;  // Longest blocks first.
  if (q_first >= seq_len) return;

  const int64_t q_stride = static_cast<int64_t>(num_heads) * kDim;
  const int64_t kv_stride = static_cast<int64_t>(num_kv_heads) * kDim;
  const T* q_base = q + static_cast<int64_t>(seq_start) * q_stride + head * kDim;
  const T* k_base = k + static_cast<int64_t>(seq_start) * kv_stride + kv_head * kDim;
  const T* v_base = v + static_cast<int64_t>(seq_start) * kv_stride + kv_head * kDim;
  const int kv_end = min(seq_len, q_first + kRows);
  const int num_tiles = (kv_end + kCols - 1) / kCols;

  // Q and the first kStages - 1 key/value tiles, one commit group per tile (Q rides with the
  // first).
  LoadSlabTile<kRows, kThreads>(q_tile, q_base, q_stride, q_first, seq_len);
#pragma unroll
  for (int t = 0; t < kStages - 1; ++t) {
    if (t < num_tiles) {
      LoadSlabTile<kCols, kThreads>(k_tiles + t * kKvBytes, k_base, kv_stride, t * kCols, seq_len);
      LoadSlabTile<kCols, kThreads>(v_tiles + t * kKvBytes, v_base, kv_stride, t * kCols, seq_len);
    }
    CommitGroup();
  }

  const int warpgroup = threadIdx.x / 128;
  const int warp = (threadIdx.x / 32) % 4;  // Within the warpgroup.
  const int lane = threadIdx.x % 32;
  const int group_first = q_first + warpgroup * 64;         // This warpgroup's first row.
  const int row0 = group_first + warp * 16 + lane / 4;      // This thread's rows: row0, +8.

  float o[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0;
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0, 0};

  WaitGroup<kStages - 2>();  // Q and tile 0 have landed.
  FenceProxyAsync();
  __syncthreads();

  for (int tile = 0; tile < num_tiles; ++tile) {
    const uint32_t k_tile = k_tiles + (tile % kStages) * kKvBytes;
    const uint32_t v_tile = v_tiles + (tile % kStages) * kKvBytes;
    // Prefetch tile + kStages - 1 into the buffers of tile - 1, which every thread finished
    // with before the last iteration's closing barrier.
    const int ahead = tile + kStages - 1;
    if (ahead < num_tiles) {
      const int buffer = ahead % kStages;
      LoadSlabTile<kCols, kThreads>(k_tiles + buffer * kKvBytes, k_base, kv_stride,
                                    ahead * kCols, seq_len);
      LoadSlabTile<kCols, kThreads>(v_tiles + buffer * kKvBytes, v_base, kv_stride,
                                    ahead * kCols, seq_len);
    }
    CommitGroup();

    // S = Q · K^T: eight k-steps of 16 over d; each slab holds 64 of the 128 dimensions.
    float s[32];
#pragma unroll
    for (int i = 0; i < 32; ++i) s[i] = 0;
    WgmmaFence();
#pragma unroll
    for (int ks = 0; ks < kDim / 16; ++ks) {
      const uint32_t q_address = q_tile + (ks / 4) * (kRows * kSlabBytes) +
                                 warpgroup * 64 * kSlabBytes + (ks % 4) * 32;
      const uint32_t k_address = k_tile + (ks / 4) * (kCols * kSlabBytes) + (ks % 4) * 32;
      WgmmaSS64x64<T>(s, SmemDescriptor(q_address, 16, 1024), SmemDescriptor(k_address, 16, 1024));
    }
    WgmmaCommit();
    WgmmaWait<0>();

    // Mask and online softmax, as in the mma.sync kernel: s[4n + e] is row row0 + 8 * (e / 2),
    // key tile * 64 + 8n + 2 * (lane % 4) + e % 2.
    const int key0 = tile * kCols + (lane % 4) * 2;
    const bool needs_mask = (tile + 1) * kCols > group_first || (tile + 1) * kCols > seq_len;
    float tile_max[2] = {row_max[0], row_max[1]};
#pragma unroll
    for (int n = 0; n < kCols / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = key0 + n * 8 + (e & 1);
        const int row = row0 + (e >> 1) * 8;
        float x = s[4 * n + e] * scale_log2;
        if (needs_mask && (key > row || key >= seq_len)) x = -INFINITY;
        s[4 * n + e] = x;
        tile_max[e >> 1] = fmaxf(tile_max[e >> 1], x);
      }
    }
    float rescale[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
      const float safe_max = tile_max[r] == -INFINITY ? 0.f : tile_max[r];
      rescale[r] = exp2f((row_max[r] == -INFINITY ? safe_max : row_max[r]) - safe_max);
      row_max[r] = tile_max[r];
      row_sum[r] *= rescale[r];
      tile_max[r] = safe_max;
    }
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      s[i] = exp2f(s[i] - tile_max[(i >> 1) & 1]);
      row_sum[(i >> 1) & 1] += s[i];
    }
#pragma unroll
    for (int i = 0; i < 64; ++i) o[i] *= rescale[(i >> 1) & 1];

    // O += P · V: four k-steps of 16 keys; V is N-major (d contiguous), its two slabs 64 keys
    // x 128 bytes apart.
    // P is packed in full first, so that the four wgmmas issue back to back.
    uint32_t p[kCols / 16][4];
#pragma unroll
    for (int kk = 0; kk < kCols / 16; ++kk) {
#pragma unroll
      for (int j = 0; j < 4; ++j) p[kk][j] = PackPair<T>(s[8 * kk + 2 * j], s[8 * kk + 2 * j + 1]);
    }
    WgmmaFence();
#pragma unroll
    for (int kk = 0; kk < kCols / 16; ++kk) {
      WgmmaRS64x128<T>(o, p[kk], SmemDescriptor(v_tile + kk * 16 * kSlabBytes,
                                                kCols * kSlabBytes, 1024));
    }
    WgmmaCommit();
    WgmmaWait<0>();

    WaitGroup<kStages - 2>();  // Tile + 1 has landed; later ones may still be in flight.
    FenceProxyAsync();
    __syncthreads();
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 1);
    row_sum[r] += __shfl_xor_sync(0xffffffffu, row_sum[r], 2);
  }
  T* out_base = output + static_cast<int64_t>(seq_start) * q_stride + head * kDim;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row0 + r * 8;
    if (row >= seq_len) continue;
    const float inverse = 1.f / row_sum[r];
    T* out_row = out_base + row * q_stride + (lane % 4) * 2;
#pragma unroll
    for (int t = 0; t < kDim / 8; ++t) {
      *reinterpret_cast<uint32_t*>(out_row + t * 8) =
          PackPair<T>(o[4 * t + 2 * r] * inverse, o[4 * t + 2 * r + 1] * inverse);
    }
  }
}

template <class T, int kGroups>
cudaError_t Launch(const void* q, const void* k, const void* v, const int32_t* cu_seqlens,
                   int64_t batch, int num_heads, int num_kv_heads, int max_seqlen, float scale,
                   void* output, cudaStream_t stream) {
  using S = Shape<kGroups>;
  auto kernel = PrefillSm90Kernel<T, kGroups>;
  if (cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           S::kSharedBytes);
      e != cudaSuccess) {
    return e;
  }
  const dim3 grid((max_seqlen + S::kRows - 1) / S::kRows, num_heads,
                  static_cast<unsigned>(batch));
  kernel<<<grid, S::kThreads, S::kSharedBytes, stream>>>(
      static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), cu_seqlens,
      num_heads, num_kv_heads, scale * kLog2e, static_cast<T*>(output));
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchPrefillSm90(bool bf16, int warpgroups, const void* q, const void* k,
                              const void* v, const int32_t* cu_seqlens, int64_t batch,
                              int num_heads, int num_kv_heads, int max_seqlen, float scale,
                              void* output, cudaStream_t stream) {
  if (warpgroups == 2) {
    return bf16 ? Launch<__nv_bfloat16, 2>(q, k, v, cu_seqlens, batch, num_heads, num_kv_heads,
                                           max_seqlen, scale, output, stream)
                : Launch<__half, 2>(q, k, v, cu_seqlens, batch, num_heads, num_kv_heads,
                                    max_seqlen, scale, output, stream);
  }
  return bf16 ? Launch<__nv_bfloat16, 1>(q, k, v, cu_seqlens, batch, num_heads, num_kv_heads,
                                         max_seqlen, scale, output, stream)
              : Launch<__half, 1>(q, k, v, cu_seqlens, batch, num_heads, num_kv_heads,
                                  max_seqlen, scale, output, stream);
}

}  // namespace troupe::gpu::attention::internal
