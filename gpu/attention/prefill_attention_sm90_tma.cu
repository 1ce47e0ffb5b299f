// FlashAttention forward for Hopper with warp specialization, causal, variable length, d = 128.
//
// Three warpgroups per block: a producer and two consumers. The producer (one thread of it)
// moves tiles with the tensor memory accelerator (TMA): Q once, then key and value tiles of 128
// rows into two stages of shared memory, each stage guarded by "full" mbarriers (the copy's
// bytes have landed) and an "empty" mbarrier (both consumers are done with it). Each consumer
// owns 64 query rows: it waits for a stage, issues S = Q·K^T and O += P·V as wgmma chains, and
// runs the online softmax in between. No block-wide barrier sits in the loop, so one consumer's
// softmax overlaps the other's matrix products, and copies overlap both. The producer gives its
// registers to the consumers (setmaxnreg).
//
// Shared-memory tiles use the 128-byte swizzle that both TMA writes and wgmma reads: a tile of
// R rows is two "slabs" of 64 columns (128 bytes per row), rows 128 bytes apart, 16-byte chunks
// XOR-ed with the row's low three bits; slabs start on 1024-byte boundaries. S = Q·K^T is a
// chain of 64x128 wgmmas with both operands in shared memory; O += P·V takes P from registers
// and V from shared memory as an N-major operand.
#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <cstdint>

#include "gpu/attention/internal/device_utils.cuh"
#include "gpu/attention/internal/online_softmax.cuh"
#include "gpu/attention/internal/prefill_sm90.h"
#include "gpu/attention/internal/ptx.cuh"
#include "gpu/attention/internal/wgmma.cuh"

namespace troupe::gpu::attention::internal {
namespace {

constexpr int kDim = 128;
constexpr int kRows = 128;       // Query rows per block: two consumers of 64.
constexpr int kCols = 128;       // Keys per tile.
constexpr int kStages = 2;
constexpr int kThreads = 384;    // Producer warpgroup + two consumer warpgroups.
constexpr int kSlabBytes = 128;  // One row of one slab: 64 elements.
constexpr int kTileBytes = kCols * kDim * 2;   // A key or value tile (both slabs).
constexpr int kQBytes = kRows * kDim * 2;
constexpr int kSharedBytes = kQBytes + 2 * kStages * kTileBytes + 1024 + 64;
constexpr float kLog2e = 1.4426950408889634f;

// --- mbarriers and TMA ------------------------------------------------------------------------

__device__ __forceinline__ void BarrierInit(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}
__device__ __forceinline__ void BarrierExpectBytes(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar),
               "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void BarrierArrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void BarrierWait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n"
        ".reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n"
        "}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}

// Copies a box of the 3D tensor map at coordinates (dim, head, token) to shared memory, and
// counts its bytes against `bar`.
__device__ __forceinline__ void TmaLoad(uint32_t destination, const CUtensorMap* map, int dim,
                                        int head, int token, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes "
      "[%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(destination),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(dim), "r"(head), "r"(token), "r"(bar)
      : "memory");
}

// Loads rows [token, token + rows) of one head: two boxes of 64 dimensions, one per slab.
__device__ __forceinline__ void TmaLoadTile(uint32_t tile, int rows, const CUtensorMap* map,
                                            int head, int token, uint32_t bar) {
  TmaLoad(tile, map, 0, head, token, bar);
  TmaLoad(tile + rows * kSlabBytes, map, 64, head, token, bar);
}

// Named barriers for the consumers' turns on the tensor cores (0 is __syncthreads').
__device__ __forceinline__ void NamedBarrierSync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void NamedBarrierArrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

template <int kRegisters>
__device__ __forceinline__ void IncreaseRegisters() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegisters));
}
template <int kRegisters>
__device__ __forceinline__ void DecreaseRegisters() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegisters));
}

// --- The kernel --------------------------------------------------------------------------------

template <class T>
__global__ void __launch_bounds__(kThreads, 1)
    PrefillTmaKernel(const __grid_constant__ CUtensorMap q_map,
                     const __grid_constant__ CUtensorMap k_map,
                     const __grid_constant__ CUtensorMap v_map,
                     const int32_t* __restrict__ cu_seqlens, int num_heads, int num_kv_heads,
                     float scale_log2, T* __restrict__ output) {
  extern __shared__ unsigned char shared_bytes[];
  const uint32_t base = (SharedAddress(shared_bytes) + 1023) & ~1023u;
  const uint32_t q_tile = base;
  const uint32_t k_tiles = q_tile + kQBytes;                 // [kStages] x kTileBytes
  const uint32_t v_tiles = k_tiles + kStages * kTileBytes;   // [kStages] x kTileBytes
  const uint32_t bars = v_tiles + kStages * kTileBytes;      // 8-byte mbarriers:
  const uint32_t q_full = bars;                              //   Q landed
  auto k_full = [&](int s) { return bars + 8 * (1 + s); };   //   K of stage s landed
  auto v_full = [&](int s) { return bars + 8 * (3 + s); };   //   V of stage s landed
  auto empty = [&](int s) { return bars + 8 * (5 + s); };    //   stage s free again

  const int seq = blockIdx.z;
  const int head = blockIdx.y;
  const int kv_head = head / (num_heads / num_kv_heads);
  const int seq_start = cu_seqlens[seq];
  const int seq_len = cu_seqlens[seq + 1] - seq_start;
  const int q_first = (gridDim.x - 1 - blockIdx.x) * kRows;  // Longest blocks first.
  if (q_first >= seq_len) return;
  const int num_tiles = (min(seq_len, q_first + kRows) + kCols - 1) / kCols;

  if (threadIdx.x == 0) {
    BarrierInit(q_full, 1);
    for (int s = 0; s < kStages; ++s) {
      BarrierInit(k_full(s), 1);
      BarrierInit(v_full(s), 1);
      BarrierInit(empty(s), 8);  // Lane 0 of each consumer warp.
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  const int warpgroup = threadIdx.x / 128;
  if (warpgroup == 0) {
    // Producer: one thread issues every copy; the rest of the warpgroup only lends registers.
    DecreaseRegisters<24>();
    if (threadIdx.x == 0) {
      BarrierExpectBytes(q_full, kQBytes);
      TmaLoadTile(q_tile, kRows, &q_map, head, seq_start + q_first, q_full);
      for (int tile = 0; tile < num_tiles; ++tile) {
        const int stage = tile % kStages;
        const int use = tile / kStages;  // How many times this stage was filled before.
        if (use > 0) BarrierWait(empty(stage), (use - 1) & 1);
        const int token = seq_start + tile * kCols;
        BarrierExpectBytes(k_full(stage), kTileBytes);
        TmaLoadTile(k_tiles + stage * kTileBytes, kCols, &k_map, kv_head, token, k_full(stage));
        BarrierExpectBytes(v_full(stage), kTileBytes);
        TmaLoadTile(v_tiles + stage * kTileBytes, kCols, &v_map, kv_head, token, v_full(stage));
      }
    }
    return;
  }

  // Consumers.
  IncreaseRegisters<240>();
  const int consumer = warpgroup - 1;
  const int warp = (threadIdx.x / 32) % 4;
  const int lane = threadIdx.x % 32;
  const int group_first = q_first + consumer * 64;
  const int row0 = group_first + warp * 16 + lane / 4;  // This thread's rows: row0, row0 + 8.

  float o[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0;
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0, 0};
  float s[64];

  auto issue_scores = [&](int tile) {
    const uint32_t k_tile = k_tiles + (tile % kStages) * kTileBytes;
#pragma unroll
    for (int i = 0; i < 64; ++i) s[i] = 0;
    WgmmaFence();
#pragma unroll
    for (int ks = 0; ks < kDim / 16; ++ks) {
      const uint32_t q_address =
          q_tile + (ks / 4) * (kRows * kSlabBytes) + consumer * 64 * kSlabBytes + (ks % 4) * 32;
      const uint32_t k_address = k_tile + (ks / 4) * (kCols * kSlabBytes) + (ks % 4) * 32;
      WgmmaSS64x128<T>(s, SmemDescriptor(q_address, 16, 1024),
                       SmemDescriptor(k_address, 16, 1024));
    }
    WgmmaCommit();
  };

  // The two consumers take turns issuing their matrix products (ping-pong): while one's wgmmas
  // run, the other computes its softmax. Consumer c waits on named barrier 1 + c, which the
  // other consumer releases after issuing; consumer 1 releases consumer 0's first turn.
  const int my_turn = 1 + consumer;
  const int their_turn = 2 - consumer;
  BarrierWait(q_full, 0);
  BarrierWait(k_full(0), 0);
  issue_scores(0);
  WgmmaWait<0>();
  if (consumer == 1) NamedBarrierArrive(their_turn, 256);

  for (int tile = 0; tile < num_tiles; ++tile) {
    const int stage = tile % kStages;
    const int use = tile / kStages;

    float rescale[2];
    const bool needs_mask = (tile + 1) * kCols > group_first || (tile + 1) * kCols > seq_len;
    SoftmaxTile(s, tile * kCols + (lane % 4) * 2, row0, needs_mask, seq_len, scale_log2, row_max,
                row_sum, rescale);
    uint32_t p[kCols / 16][4];
#pragma unroll
    for (int kk = 0; kk < kCols / 16; ++kk) PackProbabilities<T>(s + 8 * kk, p[kk]);
    RescaleRows(o, rescale);

    // O += P · V, then the next tile's scores right behind it, in this consumer's turn.
    BarrierWait(v_full(stage), use & 1);
    if (tile + 1 < num_tiles) {
      BarrierWait(k_full((tile + 1) % kStages), ((tile + 1) / kStages) & 1);
    }
    NamedBarrierSync(my_turn, 256);
    const uint32_t v_tile = v_tiles + stage * kTileBytes;
    WgmmaFence();
#pragma unroll
    for (int kk = 0; kk < kCols / 16; ++kk) {
      WgmmaRS64x128<T>(o, p[kk], SmemDescriptor(v_tile + kk * 16 * kSlabBytes,
                                                kCols * kSlabBytes, 1024));
    }
    WgmmaCommit();
    if (tile + 1 < num_tiles) issue_scores(tile + 1);
    // Consumer 1 already released consumer 0 once up front, so it skips its last release.
    if (consumer == 0 || tile + 1 < num_tiles) NamedBarrierArrive(their_turn, 256);
    WgmmaWait<0>();
    if (lane == 0) BarrierArrive(empty(stage));  // This warp is done with the stage.
  }

  const int64_t q_stride = static_cast<int64_t>(num_heads) * kDim;
  WriteRows<T, kDim>(o, row_sum, row0, seq_len,
                     output + static_cast<int64_t>(seq_start) * q_stride + head * kDim, q_stride,
                     lane);
}

// The 3D map of a [tokens, heads, 128] tensor: boxes of 64 dimensions x 1 head x `rows` tokens,
// 128-byte swizzled; tokens past the end read as zeros.
cudaError_t EncodeMap(CUtensorMap* map, const void* data, bool bf16, int heads, int64_t tokens,
                      int rows) {
  static PFN_cuTensorMapEncodeTiled_v12000 encode = nullptr;
  if (encode == nullptr) {
    cudaDriverEntryPointQueryResult found;
    if (cudaError_t e = cudaGetDriverEntryPointByVersion(
            "cuTensorMapEncodeTiled", reinterpret_cast<void**>(&encode), 12000, cudaEnableDefault,
            &found);
        e != cudaSuccess || found != cudaDriverEntryPointSuccess) {
      return e != cudaSuccess ? e : cudaErrorNotSupported;
    }
  }
  const cuuint64_t dims[3] = {kDim, static_cast<cuuint64_t>(heads),
                              static_cast<cuuint64_t>(tokens)};
  const cuuint64_t strides[2] = {kDim * 2, static_cast<cuuint64_t>(heads) * kDim * 2};
  const cuuint32_t box[3] = {64, 1, static_cast<cuuint32_t>(rows)};
  const cuuint32_t element_strides[3] = {1, 1, 1};
  const CUresult result = encode(
      map, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 3,
      const_cast<void*>(data), dims, strides, box, element_strides,
      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return result == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

template <class T>
cudaError_t Launch(const void* q, const void* k, const void* v, const int32_t* cu_seqlens,
                   int64_t batch, int64_t total_tokens, int num_heads, int num_kv_heads,
                   int max_seqlen, float scale, void* output, cudaStream_t stream) {
  constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
  CUtensorMap q_map, k_map, v_map;
  for (cudaError_t e : {EncodeMap(&q_map, q, kBf16, num_heads, total_tokens, kRows),
                        EncodeMap(&k_map, k, kBf16, num_kv_heads, total_tokens, kCols),
                        EncodeMap(&v_map, v, kBf16, num_kv_heads, total_tokens, kCols)}) {
    if (e != cudaSuccess) return e;
  }
  auto kernel = PrefillTmaKernel<T>;
  if (cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           kSharedBytes);
      e != cudaSuccess) {
    return e;
  }
  const dim3 grid((max_seqlen + kRows - 1) / kRows, num_heads, static_cast<unsigned>(batch));
  kernel<<<grid, kThreads, kSharedBytes, stream>>>(q_map, k_map, v_map, cu_seqlens, num_heads,
                                                   num_kv_heads, scale * kLog2e,
                                                   static_cast<T*>(output));
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchPrefillSm90Tma(bool bf16, const void* q, const void* k, const void* v,
                                 const int32_t* cu_seqlens, int64_t batch, int64_t total_tokens,
                                 int num_heads, int num_kv_heads, int max_seqlen, float scale,
                                 void* output, cudaStream_t stream) {
  return bf16 ? Launch<__nv_bfloat16>(q, k, v, cu_seqlens, batch, total_tokens, num_heads,
                                      num_kv_heads, max_seqlen, scale, output, stream)
              : Launch<__half>(q, k, v, cu_seqlens, batch, total_tokens, num_heads, num_kv_heads,
                               max_seqlen, scale, output, stream);
}

}  // namespace troupe::gpu::attention::internal
