// FlashAttention forward for Hopper with warp specialization, causal, variable length, d = 128.
//
// Three warpgroups per block: a producer and two consumers. The producer (one thread of it)
// moves tiles with the tensor memory accelerator (TMA): each work item's 128 query rows into one
// of two Q buffers, then its key and value tiles of 128 rows into two stages of shared memory.
// Every buffer is guarded by a "full" mbarrier (the copy's bytes have landed) and an "empty"
// mbarrier (both consumers are done with it). K and V are released separately: a consumer issues
// the next tile's scores together with this tile's P·V, so with one barrier per stage the
// producer could refill a stage only after the P·V that follows the scores that needed it, and
// the consumer stalled on the copy every tile. Each consumer owns 64 query rows: it waits for a
// stage, issues S = Q·K^T and O += P·V as wgmma chains, and runs the online softmax in between.
// No block-wide barrier sits in the loop, so one consumer's softmax overlaps the other's matrix
// products, and copies overlap both. The producer gives its registers to the consumers
// (setmaxnreg). The kernel is persistent (one block per SM, see "Work items").
//
// Shared-memory tiles use the 128-byte swizzle that both TMA writes and wgmma reads: a tile of
// R rows is two "slabs" of 64 columns (128 bytes per row), rows 128 bytes apart, 16-byte chunks
// XOR-ed with the row's low three bits; slabs start on 1024-byte boundaries. S = Q·K^T is a
// chain of 64x128 wgmmas taking Q from registers (loaded once per item with ldmatrix) and K from
// shared memory; O += P·V takes P from registers and V from shared memory as an N-major operand.
#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <algorithm>
#include <climits>
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
constexpr int kSharedBytes = kStages * kQBytes + 2 * kStages * kTileBytes + 1024 + 96;
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

// --- Work items ---------------------------------------------------------------------------------

// A work item is 128 query rows of one (sequence, head) and every key tile up to the diagonal.
// The kernel is persistent: one block per SM takes items from a counter in global memory (a
// ticket per item, atomicAdd) until none is left, so that the producer loads the next item's Q
// and first key tiles while the consumers finish the current one, no block pays a launch, a
// barrier setup or a pipeline fill per item, and blocks that drew short items take more of them.
// Tickets are numbered sequence by sequence and, within a sequence, longest item first (query
// tile n_q - 1 - t / heads of head t % heads, for the t-th ticket of the sequence): the blocks
// working at any moment share few sequences' keys and values in the L2, and each sequence ends
// with its shortest items. The producer passes each ticket to the consumers in a shared-memory
// slot beside the item's Q buffer, under the same barriers; ticket -1 ends the walk.
struct WorkItem {
  int seq;
  int head;
  int q_first;    // The item's first query row, within its sequence.
  int seq_start;  // The sequence's first token in the packed batch.
  int seq_len;
  int num_tiles;  // Key tiles: those up to the diagonal; 0 for an item past the sequence's end.
};

__device__ __forceinline__ WorkItem DecodeTicket(int ticket, const int32_t* cu_seqlens,
                                                 int num_heads, int q_tiles) {
  WorkItem item;
  const int per_seq = q_tiles * num_heads;
  item.seq = ticket / per_seq;
  const int t = ticket % per_seq;
  item.head = t % num_heads;
  item.q_first = (q_tiles - 1 - t / num_heads) * kRows;
  item.seq_start = cu_seqlens[item.seq];
  item.seq_len = cu_seqlens[item.seq + 1] - item.seq_start;
  item.num_tiles = item.q_first >= item.seq_len
                       ? 0
                       : (min(item.seq_len, item.q_first + kRows) + kCols - 1) / kCols;
  return item;
}

// The workspace: the ticket counter, zeroed before each launch (see Launch).
struct Scheduler {
  int next_ticket;
};
static_assert(sizeof(Scheduler) <= kPrefillSm90WorkspaceBytes);

// Stage and phase of the n-th use of a ring of two buffers: buffer n % 2, and the parity of its
// mbarrier's phase (n / 2) & 1; the previous use of the same buffer completed parity
// ((n / 2) - 1) & 1.
__device__ __forceinline__ int Stage(int n) { return n % kStages; }
__device__ __forceinline__ uint32_t Phase(int n) { return (n / kStages) & 1; }

// --- The kernel --------------------------------------------------------------------------------

template <class T>
__global__ void __launch_bounds__(kThreads, 1)
    PrefillTmaKernel(const __grid_constant__ CUtensorMap q_map,
                     const __grid_constant__ CUtensorMap k_map,
                     const __grid_constant__ CUtensorMap v_map,
                     const int32_t* __restrict__ cu_seqlens, int batch, int num_heads,
                     int num_kv_heads, int q_tiles, float scale_log2, Scheduler* scheduler,
                     T* __restrict__ output) {
  extern __shared__ unsigned char shared_bytes[];
  const uint32_t base = (SharedAddress(shared_bytes) + 1023) & ~1023u;
  const uint32_t q_tiles_smem = base;                            // [kStages] x kQBytes
  const uint32_t k_tiles = q_tiles_smem + kStages * kQBytes;    // [kStages] x kTileBytes
  const uint32_t v_tiles = k_tiles + kStages * kTileBytes;      // [kStages] x kTileBytes
  const uint32_t bars = v_tiles + kStages * kTileBytes;         // 8-byte mbarriers:
  auto q_full = [&](int s) { return bars + 8 * s; };            //   Q buffer s landed
  auto q_empty = [&](int s) { return bars + 8 * (2 + s); };     //   Q buffer s free again
  auto k_full = [&](int s) { return bars + 8 * (4 + s); };      //   K of stage s landed
  auto v_full = [&](int s) { return bars + 8 * (6 + s); };      //   V of stage s landed
  auto k_empty = [&](int s) { return bars + 8 * (8 + s); };     //   K of stage s free again
  auto v_empty = [&](int s) { return bars + 8 * (10 + s); };    //   V of stage s free again
  const int group = num_heads / num_kv_heads;
  __shared__ int tickets[kStages];  // The ticket of the item in each Q buffer; -1: no more.

  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) {
      BarrierInit(q_full(s), 1);
      BarrierInit(q_empty(s), 8);  // Lane 0 of each consumer warp.
      BarrierInit(k_full(s), 1);
      BarrierInit(v_full(s), 1);
      BarrierInit(k_empty(s), 8);
      BarrierInit(v_empty(s), 8);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  const int total_tickets = batch * q_tiles * num_heads;
  const int warpgroup = threadIdx.x / 128;
  if (warpgroup == 0) {
    // Producer: one thread issues every copy; the rest of the warpgroup only lends registers.
    // Q buffers and key/value stages are rings over the whole walk, not per item, so the copies
    // for the next item start as soon as the consumers release a buffer.
    DecreaseRegisters<24>();
    if (threadIdx.x == 0) {
      int items = 0;
      int tiles = 0;
      while (true) {
        int ticket;
        WorkItem item;
        do {  // Skip items past the end of a shorter sequence.
          ticket = atomicAdd(&scheduler->next_ticket, 1);
          if (ticket < total_tickets) item = DecodeTicket(ticket, cu_seqlens, num_heads, q_tiles);
        } while (ticket < total_tickets && item.num_tiles == 0);
        if (items >= kStages) BarrierWait(q_empty(Stage(items)), Phase(items) ^ 1);
        if (ticket >= total_tickets) {  // No more: tell the consumers (no copy to wait for).
          tickets[Stage(items)] = -1;
          BarrierArrive(q_full(Stage(items)));
          break;
        }
        tickets[Stage(items)] = ticket;
        BarrierExpectBytes(q_full(Stage(items)), kQBytes);
        TmaLoadTile(q_tiles_smem + Stage(items) * kQBytes, kRows, &q_map, item.head,
                    item.seq_start + item.q_first, q_full(Stage(items)));
        ++items;
        for (int tile = 0; tile < item.num_tiles; ++tile, ++tiles) {
          const int stage = Stage(tiles);
          const int token = item.seq_start + tile * kCols;
          const int kv_head = item.head / group;
          if (tiles >= kStages) BarrierWait(k_empty(stage), Phase(tiles) ^ 1);
          BarrierExpectBytes(k_full(stage), kTileBytes);
          TmaLoadTile(k_tiles + stage * kTileBytes, kCols, &k_map, kv_head, token,
                      k_full(stage));
          if (tiles >= kStages) BarrierWait(v_empty(stage), Phase(tiles) ^ 1);
          BarrierExpectBytes(v_full(stage), kTileBytes);
          TmaLoadTile(v_tiles + stage * kTileBytes, kCols, &v_map, kv_head, token,
                      v_full(stage));
        }
      }
    }
    return;
  }

  // Consumers.
  IncreaseRegisters<240>();
  const int consumer = warpgroup - 1;
  const int warp = (threadIdx.x / 32) % 4;
  const int lane = threadIdx.x % 32;
  const int64_t q_stride = static_cast<int64_t>(num_heads) * kDim;

  float o[64];
  float s[64];
  // This warp's 16 query rows, as the A operand of the score products: held in registers for the
  // whole item, so that S = Q·K^T reads only K from shared memory (1-2% faster than reading both
  // operands there, where the TMA also writes).
  uint32_t q[kDim / 16][4];
  auto load_q = [&](uint32_t q_tile) {
    const int row = consumer * 64 + warp * 16 + lane % 16;
#pragma unroll
    for (int ks = 0; ks < kDim / 16; ++ks) {
      const int chunk = (ks % 4) * 2 + lane / 16;  // 16-byte chunk of the row within its slab
      LoadMatrixX4(q[ks], q_tile + (ks / 4) * (kRows * kSlabBytes) + row * kSlabBytes +
                              ((chunk ^ (row % 8)) * 16));
    }
  };
  auto issue_scores = [&](int tiles) {
    const uint32_t k_tile = k_tiles + Stage(tiles) * kTileBytes;
    WgmmaFence();
#pragma unroll
    for (int ks = 0; ks < kDim / 16; ++ks) {
      const uint32_t k_address = k_tile + (ks / 4) * (kCols * kSlabBytes) + (ks % 4) * 32;
      WgmmaRS64x128<T, false>(s, q[ks], SmemDescriptor(k_address, 16, 1024),
                              /*accumulate=*/ks > 0);
    }
    WgmmaCommit();
  };

  // The two consumers take turns issuing their matrix products (ping-pong): while one's wgmmas
  // run, the other computes its softmax. Consumer c waits on named barrier 1 + c, which the
  // other consumer releases after issuing; consumer 1 releases consumer 0's first turn up front,
  // so it skips its very last release. Items follow each other without a bubble: the turn that
  // issues an item's last P·V also issues the next item's first scores, and only the block's
  // first scores are issued outside the turns.
  const int my_turn = 1 + consumer;
  const int their_turn = 2 - consumer;
  int items = 0;  // Items begun, over the walk: their Q buffers form a ring.
  int tiles = 0;  // Key/value tiles begun, over the walk.
  // next_item waits for the producer's next item (number `items`): false at the end of the walk;
  // else it decodes the item into `item` and loads its Q into registers.
  auto next_item = [&](WorkItem& item) {
    BarrierWait(q_full(Stage(items)), Phase(items));
    const int ticket = tickets[Stage(items)];
    if (ticket < 0) return false;
    item = DecodeTicket(ticket, cu_seqlens, num_heads, q_tiles);
    load_q(q_tiles_smem + Stage(items) * kQBytes);
    if (lane == 0) BarrierArrive(q_empty(Stage(items)));
    return true;
  };
  WorkItem current;
  if (!next_item(current)) return;
  WorkItem following;
  bool more = true;  // Whether an item follows the current one: known at its last tile.
  BarrierWait(k_full(Stage(tiles)), Phase(tiles));
  issue_scores(tiles);
  WgmmaWait<0>();
  if (lane == 0) BarrierArrive(k_empty(Stage(tiles)));
  if (consumer == 1) NamedBarrierArrive(their_turn, 256);

  while (true) {
    const int group_first = current.q_first + consumer * 64;
    const int row0 = group_first + warp * 16 + lane / 4;  // This thread's rows: row0, row0 + 8.
#pragma unroll
    for (int i = 0; i < 64; ++i) o[i] = 0;
    float row_max[2] = {-INFINITY, -INFINITY};
    float row_sum[2] = {0, 0};

    for (int tile = 0; tile < current.num_tiles; ++tile, ++tiles) {
      const bool last_tile = tile + 1 == current.num_tiles;
      float rescale[2];
      const bool needs_mask =
          (tile + 1) * kCols > group_first || (tile + 1) * kCols > current.seq_len;
      SoftmaxTile(s, tile * kCols + (lane % 4) * 2, row0, needs_mask, current.seq_len,
                  scale_log2, row_max, row_sum, rescale);
      uint32_t p[kCols / 16][4];
#pragma unroll
      for (int kk = 0; kk < kCols / 16; ++kk) PackProbabilities<T>(s + 8 * kk, p[kk]);
      RescaleRows(o, rescale);
      if (last_tile) {  // The Q registers are free: this item's scores are all done.
        ++items;
        more = next_item(following);
      }
      const bool next_scores = !last_tile || more;  // Scores follow: this item's or the next's.

      // O += P · V, then the next scores right behind it, in this consumer's turn.
      BarrierWait(v_full(Stage(tiles)), Phase(tiles));
      if (next_scores) BarrierWait(k_full(Stage(tiles + 1)), Phase(tiles + 1));
      NamedBarrierSync(my_turn, 256);
      const uint32_t v_tile = v_tiles + Stage(tiles) * kTileBytes;
      WgmmaFence();
#pragma unroll
      for (int kk = 0; kk < kCols / 16; ++kk) {
        WgmmaRS64x128<T, true>(
            o, p[kk], SmemDescriptor(v_tile + kk * 16 * kSlabBytes, kCols * kSlabBytes, 1024),
            /*accumulate=*/1);
      }
      WgmmaCommit();
      if (next_scores) issue_scores(tiles + 1);
      if (consumer == 0 || next_scores) NamedBarrierArrive(their_turn, 256);
      WgmmaWait<0>();
      if (lane == 0) {  // This warp is done with this tile's V and the next tile's K.
        BarrierArrive(v_empty(Stage(tiles)));
        if (next_scores) BarrierArrive(k_empty(Stage(tiles + 1)));
      }
    }
    WriteRows<T, kDim>(
        o, row_sum, row0, current.seq_len,
        output + static_cast<int64_t>(current.seq_start) * q_stride + current.head * kDim,
        q_stride, lane);
    if (!more) return;
    current = following;
  }
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
                   int max_seqlen, float scale, int sm_count, void* workspace, void* output,
                   cudaStream_t stream) {
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
  const int q_tiles = (max_seqlen + kRows - 1) / kRows;
  const int64_t items = static_cast<int64_t>(q_tiles) * batch * num_heads;
  if (items > INT32_MAX) return cudaErrorInvalidValue;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(items, std::max(sm_count, 1)));
  // The ticket counter starts at 0 on every launch (as cuDNN's attention does before its own).
  if (cudaError_t e = cudaMemsetAsync(workspace, 0, sizeof(Scheduler), stream); e != cudaSuccess) {
    return e;
  }
  kernel<<<blocks, kThreads, kSharedBytes, stream>>>(
      q_map, k_map, v_map, cu_seqlens, static_cast<int>(batch), num_heads, num_kv_heads, q_tiles,
      scale * kLog2e, static_cast<Scheduler*>(workspace), static_cast<T*>(output));
  return cudaGetLastError();
}

}  // namespace

cudaError_t LaunchPrefillSm90Tma(bool bf16, const void* q, const void* k, const void* v,
                                 const int32_t* cu_seqlens, int64_t batch, int64_t total_tokens,
                                 int num_heads, int num_kv_heads, int max_seqlen, float scale,
                                 int sm_count, void* workspace, void* output,
                                 cudaStream_t stream) {
  return bf16 ? Launch<__nv_bfloat16>(q, k, v, cu_seqlens, batch, total_tokens, num_heads,
                                      num_kv_heads, max_seqlen, scale, sm_count, workspace, output,
                                      stream)
              : Launch<__half>(q, k, v, cu_seqlens, batch, total_tokens, num_heads, num_kv_heads,
                               max_seqlen, scale, sm_count, workspace, output, stream);
}

}  // namespace troupe::gpu::attention::internal
