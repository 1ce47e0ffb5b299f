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
constexpr int kSlabBytes = 128;     // Bytes per row of one slab (64 fp16/bf16 elements).
constexpr float kLog2e = 1.4426950408889634f;

// A block has kGroups warpgroups of 64 query rows and streams key/value tiles of kCols rows
// through two buffers each. The default, two warpgroups and 128 keys, issues the largest wgmmas
// and the fewest barriers; one warpgroup and 64 keys lets two blocks share a multiprocessor.
template <int kGroups, int kCols>
struct Shape {
  static constexpr int kRows = 64 * kGroups;
  static constexpr int kThreads = 128 * kGroups;
  static constexpr int kQBytes = kRows * kDim * 2;
  static constexpr int kKvBytes = kCols * kDim * 2;
  static constexpr int kSharedBytes = kQBytes + 4 * kKvBytes + 1024;  // +1024: alignment.
  static constexpr int kBlocksPerSm = kGroups == 1 && kCols == 64 ? 2 : 1;
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

// Issues S = Q · K^T for this warpgroup's 64 rows and a tile of kCols keys: eight k-steps of
// 16 dimensions, each slab holding 64 of the 128.
template <class T, int kRows, int kCols>
__device__ __forceinline__ void IssueScores(float (&s)[kCols / 2], uint32_t q_tile,
                                            uint32_t k_tile, int warpgroup) {
#pragma unroll
  for (int i = 0; i < kCols / 2; ++i) s[i] = 0;
  WgmmaFence();
#pragma unroll
  for (int ks = 0; ks < kDim / 16; ++ks) {
    const uint32_t q_address = q_tile + (ks / 4) * (kRows * kSlabBytes) +
                               warpgroup * 64 * kSlabBytes + (ks % 4) * 32;
    const uint32_t k_address = k_tile + (ks / 4) * (kCols * kSlabBytes) + (ks % 4) * 32;
    const uint64_t a = SmemDescriptor(q_address, 16, 1024);
    const uint64_t b = SmemDescriptor(k_address, 16, 1024);
    if constexpr (kCols == 128) {
      WgmmaSS64x128<T>(s, a, b);
    } else {
      WgmmaSS64x64<T>(s, a, b);
    }
  }
  WgmmaCommit();
}

template <class T, int kGroups, int kCols>
__global__ void __launch_bounds__(Shape<kGroups, kCols>::kThreads,
                                  Shape<kGroups, kCols>::kBlocksPerSm)
    PrefillSm90Kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                      const int32_t* __restrict__ cu_seqlens, int num_heads, int num_kv_heads,
                      float scale_log2, T* __restrict__ output) {
  using S = Shape<kGroups, kCols>;
  constexpr int kRows = S::kRows;
  constexpr int kThreads = S::kThreads;
  constexpr int kKvBytes = S::kKvBytes;
  constexpr int kScores = kCols / 2;  // Accumulator registers of a 64 x kCols tile.
  extern __shared__ unsigned char shared_bytes[];
  const uint32_t shared_base = (SharedAddress(shared_bytes) + 1023) & ~1023u;
  const uint32_t q_tile = shared_base;
  const uint32_t k_tiles = q_tile + S::kQBytes;     // [2] x kKvBytes
  const uint32_t v_tiles = k_tiles + 2 * kKvBytes;  // [2] x kKvBytes

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

  auto load_tile = [&](int tile) {
    const int buffer = tile % 2;
    LoadSlabTile<kCols, kThreads>(k_tiles + buffer * kKvBytes, k_base, kv_stride, tile * kCols,
                                  seq_len);
    LoadSlabTile<kCols, kThreads>(v_tiles + buffer * kKvBytes, v_base, kv_stride, tile * kCols,
                                  seq_len);
  };
  // Q rides with tile 0; tile 1 is its own group.
  LoadSlabTile<kRows, kThreads>(q_tile, q_base, q_stride, q_first, seq_len);
  load_tile(0);
  CommitGroup();
  if (num_tiles > 1) load_tile(1);
  CommitGroup();

  const int warpgroup = threadIdx.x / 128;
  const int warp = (threadIdx.x / 32) % 4;  // Within the warpgroup.
  const int lane = threadIdx.x % 32;
  const int group_first = q_first + warpgroup * 64;     // This warpgroup's first row.
  const int row0 = group_first + warp * 16 + lane / 4;  // This thread's rows: row0, row0 + 8.

  float o[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0;
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0, 0};
  float s[kScores];

  WaitGroup<1>();  // Q and tile 0.
  FenceProxyAsync();
  __syncthreads();
  IssueScores<T, kRows, kCols>(s, q_tile, k_tiles, warpgroup);
  WgmmaWait<0>();

  for (int tile = 0; tile < num_tiles; ++tile) {
    const uint32_t v_tile = v_tiles + (tile % 2) * kKvBytes;

    // Mask and online softmax: s[4n + e] is row row0 + 8 * (e / 2), key
    // tile * kCols + 8n + 2 * (lane % 4) + e % 2.
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
    uint32_t p[kCols / 16][4];  // P as wgmma A fragments, one per 16 keys.
#pragma unroll
    for (int kk = 0; kk < kCols / 16; ++kk) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int i = 8 * kk + 2 * j;
        const float a = exp2f(s[i] - tile_max[(i >> 1) & 1]);
        const float b = exp2f(s[i + 1] - tile_max[(i >> 1) & 1]);
        row_sum[(i >> 1) & 1] += a + b;
        p[kk][j] = PackPair<T>(a, b);
      }
    }
#pragma unroll
    for (int i = 0; i < 64; ++i) o[i] *= rescale[(i >> 1) & 1];

    // O += P · V_tile (V is N-major: d contiguous, its two slabs kCols x 128 bytes apart), and
    // right behind it on the tensor cores S for the next tile, so the two chains run back to
    // back.
    WgmmaFence();
#pragma unroll
    for (int kk = 0; kk < kCols / 16; ++kk) {
      WgmmaRS64x128<T>(o, p[kk], SmemDescriptor(v_tile + kk * 16 * kSlabBytes,
                                                kCols * kSlabBytes, 1024));
    }
    WgmmaCommit();
    if (tile + 1 < num_tiles) {
      WaitGroup<0>();  // Tile + 1 has landed (this thread's copies)...
      FenceProxyAsync();
      __syncthreads();  // ...and everyone's.
      IssueScores<T, kRows, kCols>(s, q_tile, k_tiles + ((tile + 1) % 2) * kKvBytes, warpgroup);
    }
    WgmmaWait<0>();
    __syncthreads();  // Every warpgroup is done with this tile's buffers: refill them.
    if (tile + 2 < num_tiles) load_tile(tile + 2);
    CommitGroup();
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

template <class T, int kGroups, int kCols>
cudaError_t Launch(const void* q, const void* k, const void* v, const int32_t* cu_seqlens,
                   int64_t batch, int num_heads, int num_kv_heads, int max_seqlen, float scale,
                   void* output, cudaStream_t stream) {
  using S = Shape<kGroups, kCols>;
  auto kernel = PrefillSm90Kernel<T, kGroups, kCols>;
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

template <class T>
cudaError_t LaunchVariant(bool narrow, const void* q, const void* k, const void* v,
                          const int32_t* cu_seqlens, int64_t batch, int num_heads,
                          int num_kv_heads, int max_seqlen, float scale, void* output,
                          cudaStream_t stream) {
  return narrow ? Launch<T, 1, 64>(q, k, v, cu_seqlens, batch, num_heads, num_kv_heads,
                                   max_seqlen, scale, output, stream)
                : Launch<T, 2, 128>(q, k, v, cu_seqlens, batch, num_heads, num_kv_heads,
                                    max_seqlen, scale, output, stream);
}

}  // namespace

cudaError_t LaunchPrefillSm90(bool bf16, bool narrow, const void* q, const void* k,
                              const void* v, const int32_t* cu_seqlens, int64_t batch,
                              int num_heads, int num_kv_heads, int max_seqlen, float scale,
                              void* output, cudaStream_t stream) {
  return bf16 ? LaunchVariant<__nv_bfloat16>(narrow, q, k, v, cu_seqlens, batch, num_heads,
                                             num_kv_heads, max_seqlen, scale, output, stream)
              : LaunchVariant<__half>(narrow, q, k, v, cu_seqlens, batch, num_heads,
                                      num_kv_heads, max_seqlen, scale, output, stream);
}

}  // namespace troupe::gpu::attention::internal
