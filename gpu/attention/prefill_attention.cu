// FlashAttention-2 forward for sm_80+ tensor cores (mma.sync m16n8k16), causal, variable length.
//
// A thread block owns 64 query rows of one (sequence, head); each of its 4 warps owns 16 rows.
// Key/value tiles of 64 rows stream through double-buffered shared memory with cp.async while
// the warps compute S = Q·K^T and O += P·V in registers. Shared-memory rows are XOR-swizzled in
// 16-byte chunks so that ldmatrix reads 8 rows without bank conflicts.
#include <cuda_runtime.h>

#include <string>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "gpu/attention/internal/device_utils.cuh"
#include "gpu/attention/internal/online_softmax.cuh"
#include "gpu/attention/internal/prefill_sm90.h"
#include "gpu/attention/internal/ptx.cuh"
#include "gpu/attention/prefill_attention.h"
#include "gpu/internal/check.h"

namespace troupe::gpu::attention {
namespace {

using internal::CommitGroup;
using internal::PackProbabilities;
using internal::RescaleRows;
using internal::SoftmaxTile;
using internal::WriteRows;
using internal::CopyAsync16;
using internal::LoadMatrixX4;
using internal::LoadMatrixX4Trans;
using internal::Mma;
using internal::WaitGroup;

constexpr int kRows = 64;     // Query rows per block.
constexpr int kCols = 64;     // Key rows per tile.
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr float kLog2e = 1.4426950408889634f;

// Tile views an 8-column tile n of a flat accumulator array as the 4 floats an mma writes.
__device__ __forceinline__ float (&Tile(float* accumulators, int n))[4] {
  return *reinterpret_cast<float(*)[4]>(accumulators + 4 * n);
}

// --- Shared-memory tiles ----------------------------------------------------------------------

// Element offset of 16-byte chunk `chunk` of row `row` in a [rows][kDim] tile, swizzled.
template <int kDim>
__device__ __forceinline__ int Swizzled(int row, int chunk) {
  return row * kDim + ((chunk ^ (row & 7)) << 3);
}

// Loads rows [first, first + 64) of a [tokens, heads, kDim] tensor's head `head` into a tile;
// rows at or past `limit` become zeros.
template <class T, int kDim>
__device__ __forceinline__ void LoadTile(T* tile, const T* base, int64_t row_stride, int first,
                                         int limit) {
  constexpr int kChunks = kDim / 8;
  for (int i = threadIdx.x; i < kRows * kChunks; i += kThreads) {
    const int row = i / kChunks;
    const int chunk = i % kChunks;
    const bool valid = first + row < limit;
    const T* source = base + (valid ? (first + row) * row_stride + chunk * 8 : 0);
    CopyAsync16(tile + Swizzled<kDim>(row, chunk), source, valid);
  }
}

// --- The kernel --------------------------------------------------------------------------------

template <class T, int kDim>
__global__ void __launch_bounds__(kThreads, 2)
    PrefillAttentionKernel(const T* __restrict__ q, const T* __restrict__ k,
                           const T* __restrict__ v, const int32_t* __restrict__ cu_seqlens,
                           int num_heads, int num_kv_heads, float scale_log2,
                           T* __restrict__ output) {
  constexpr int kKSteps = kDim / 16;  // k-steps of S = Q·K^T.
  constexpr int kDimTiles = kDim / 8; // n-tiles of O.
  extern __shared__ __align__(128) unsigned char shared_bytes[];
  T* q_tile = reinterpret_cast<T*>(shared_bytes);
  T* k_tiles = q_tile + kRows * kDim;      // [2][kCols][kDim]
  T* v_tiles = k_tiles + 2 * kCols * kDim; // [2][kCols][kDim]

  const int seq = blockIdx.z;
  const int head = blockIdx.y;
  const int kv_head = head / (num_heads / num_kv_heads);
  const int seq_start = cu_seqlens[seq];
  const int seq_len = cu_seqlens[seq + 1] - seq_start;
  // Later query tiles see more keys: launch them first.
  const int q_first = (gridDim.x - 1 - blockIdx.x) * kRows;
  if (q_first >= seq_len) return;

  const int64_t q_stride = static_cast<int64_t>(num_heads) * kDim;
  const int64_t kv_stride = static_cast<int64_t>(num_kv_heads) * kDim;
  const T* q_base = q + static_cast<int64_t>(seq_start) * q_stride + head * kDim;
  const T* k_base = k + static_cast<int64_t>(seq_start) * kv_stride + kv_head * kDim;
  const T* v_base = v + static_cast<int64_t>(seq_start) * kv_stride + kv_head * kDim;

  const int kv_end = min(seq_len, q_first + kRows);  // Causal: no key after the last query.
  const int num_tiles = (kv_end + kCols - 1) / kCols;

  LoadTile<T, kDim>(q_tile, q_base, q_stride, q_first, seq_len);
  LoadTile<T, kDim>(k_tiles, k_base, kv_stride, 0, seq_len);
  LoadTile<T, kDim>(v_tiles, v_base, kv_stride, 0, seq_len);
  CommitGroup();

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int row0 = q_first + warp * 16 + lane / 4;  // This thread's two rows: row0, row0 + 8.

  WaitGroup<0>();
  __syncthreads();
  uint32_t q_frag[kKSteps][4];
#pragma unroll
  for (int ks = 0; ks < kKSteps; ++ks) {
    LoadMatrixX4(q_frag[ks], q_tile + Swizzled<kDim>(warp * 16 + lane % 16, ks * 2 + lane / 16));
  }

  float o[kDim / 2];  // o[4t + e], as s.
#pragma unroll
  for (int i = 0; i < kDim / 2; ++i) o[i] = 0;
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0, 0};

  for (int tile = 0; tile < num_tiles; ++tile) {
    const T* k_tile = k_tiles + (tile % 2) * kCols * kDim;
    const T* v_tile = v_tiles + (tile % 2) * kCols * kDim;
    // Prefetch the next tile into the other buffers, which the last iteration finished with
    // before its closing barrier; it lands while this tile is computed.
    if (tile + 1 < num_tiles) {
      const int next = (tile + 1) % 2;
      LoadTile<T, kDim>(k_tiles + next * kCols * kDim, k_base, kv_stride, (tile + 1) * kCols,
                        seq_len);
      LoadTile<T, kDim>(v_tiles + next * kCols * kDim, v_base, kv_stride, (tile + 1) * kCols,
                        seq_len);
    }
    CommitGroup();

    // S = Q · K^T for this warp's 16 rows and the tile's 64 keys.
    float s[kCols / 2];  // s[4n + e]: see internal/online_softmax.cuh.
#pragma unroll
    for (int i = 0; i < kCols / 2; ++i) s[i] = 0;
#pragma unroll
    for (int ks = 0; ks < kKSteps; ++ks) {
#pragma unroll
      for (int pair = 0; pair < kCols / 16; ++pair) {
        uint32_t b[4];
        const int key_row = pair * 16 + (lane & 7) + ((lane >> 4) << 3);
        LoadMatrixX4(b, k_tile + Swizzled<kDim>(key_row, ks * 2 + ((lane >> 3) & 1)));
        Mma<T>(Tile(s, 2 * pair), q_frag[ks], b[0], b[1]);
        Mma<T>(Tile(s, 2 * pair + 1), q_frag[ks], b[2], b[3]);
      }
    }

    float rescale[2];
    const bool needs_mask = (tile + 1) * kCols > q_first || (tile + 1) * kCols > seq_len;
    SoftmaxTile(s, tile * kCols + (lane % 4) * 2, row0, needs_mask, seq_len, scale_log2, row_max,
                row_sum, rescale);
    RescaleRows(o, rescale);

    // O += P · V_tile, with P repacked from the S accumulators as A fragments.
#pragma unroll
    for (int kk = 0; kk < kCols / 16; ++kk) {
      uint32_t p[4];
      PackProbabilities<T>(s + 8 * kk, p);
#pragma unroll
      for (int dp = 0; dp < kDimTiles / 2; ++dp) {
        uint32_t b[4];
        const int value_row = kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
        LoadMatrixX4Trans(b, v_tile + Swizzled<kDim>(value_row, dp * 2 + (lane >> 4)));
        Mma<T>(Tile(o, 2 * dp), p, b[0], b[1]);
        Mma<T>(Tile(o, 2 * dp + 1), p, b[2], b[3]);
      }
    }
    WaitGroup<0>();   // The next tile has landed...
    __syncthreads();  // ...for every thread, and nobody reads this tile's buffers any more.
  }

  WriteRows<T, kDim>(o, row_sum, row0, seq_len,
                     output + static_cast<int64_t>(seq_start) * q_stride + head * kDim, q_stride,
                     lane);
}

template <class T, int kDim>
cudaError_t Launch(const PrefillAttentionParams& p, const void* q, const void* k, const void* v,
                   const int32_t* cu_seqlens, void* output, cudaStream_t stream) {
  constexpr size_t kSharedBytes = (kRows + 4 * kCols) * kDim * sizeof(T);
  auto kernel = PrefillAttentionKernel<T, kDim>;
  if (cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(kSharedBytes));
      e != cudaSuccess) {
    return e;
  }
  const dim3 grid((p.max_seqlen + kRows - 1) / kRows, p.num_heads, static_cast<unsigned>(p.batch));
  kernel<<<grid, kThreads, kSharedBytes, stream>>>(
      static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v), cu_seqlens,
      p.num_heads, p.num_kv_heads, p.scale * kLog2e, static_cast<T*>(output));
  return cudaGetLastError();
}

template <class T>
cudaError_t LaunchForType(const PrefillAttentionParams& p, const void* q, const void* k,
                          const void* v, const int32_t* cu_seqlens, void* output,
                          cudaStream_t stream) {
  return p.head_dim == 64 ? Launch<T, 64>(p, q, k, v, cu_seqlens, output, stream)
                          : Launch<T, 128>(p, q, k, v, cu_seqlens, output, stream);
}

}  // namespace

size_t PrefillAttentionWorkspaceBytes(const PrefillAttentionParams&) {
  return internal::kPrefillSm90WorkspaceBytes;
}

absl::Status PrefillAttention(DType dtype, const PrefillAttentionParams& params, const void* q,
                              const void* k, const void* v, const int32_t* cu_seqlens,
                              void* workspace, size_t workspace_bytes, void* output,
                              Stream& stream) {
  const PrefillAttentionParams& p = params;
  if (dtype == DType::kFloat32) {
    return absl::InvalidArgumentError("PrefillAttention supports fp16 and bf16, not fp32");
  }
  if (p.head_dim != 64 && p.head_dim != 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("PrefillAttention: head_dim ", p.head_dim, " is not 64 or 128"));
  }
  if (p.batch <= 0 || p.num_heads <= 0 || p.num_kv_heads <= 0 || p.max_seqlen <= 0 ||
      p.total_tokens <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PrefillAttention: batch (", p.batch, "), num_heads (", p.num_heads, "), num_kv_heads (",
        p.num_kv_heads, "), max_seqlen (", p.max_seqlen, ") and total_tokens (", p.total_tokens,
        ") must be positive"));
  }
  if (p.total_tokens > p.batch * p.max_seqlen) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PrefillAttention: total_tokens ", p.total_tokens, " exceeds batch * max_seqlen (",
        p.batch * p.max_seqlen, "); pass cu_seqlens[batch] and the longest sequence"));
  }
  if (p.num_heads % p.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("PrefillAttention: num_heads (", p.num_heads,
                                                   ") is not a multiple of num_kv_heads (",
                                                   p.num_kv_heads, ")"));
  }
  if (p.batch > 65535 || p.num_heads > 65535) {
    return absl::InvalidArgumentError("PrefillAttention: batch or num_heads above 65535");
  }
  if (workspace == nullptr || workspace_bytes < PrefillAttentionWorkspaceBytes(p)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PrefillAttention needs a workspace of ", PrefillAttentionWorkspaceBytes(p), " bytes (",
        workspace == nullptr ? std::string("none") : absl::StrCat(workspace_bytes),
        " given); size it with PrefillAttentionWorkspaceBytes"));
  }
  if (q == nullptr || k == nullptr || v == nullptr || cu_seqlens == nullptr || output == nullptr) {
    return absl::InvalidArgumentError("PrefillAttention: a device pointer is null");
  }
  cudaStream_t raw = static_cast<cudaStream_t>(stream.raw());
  int major = 0;
  if (cudaError_t e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor,
                                             stream.device());
      e != cudaSuccess) {
    return gpu::internal::CudaStatus(e, "cudaDeviceGetAttribute", stream.device());
  }
  const bool hopper = major == 9;
  int sm_count = 0;
  if (cudaError_t e = cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount,
                                             stream.device());
      e != cudaSuccess) {
    return gpu::internal::CudaStatus(e, "cudaDeviceGetAttribute", stream.device());
  }
  if (p.kernel == PrefillKernel::kWgmma && (!hopper || p.head_dim != 128)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PrefillAttention: the wgmma kernel needs head_dim 128 on a compute capability 9.0 GPU "
        "(this is head_dim ", p.head_dim, " on compute capability ", major, ".x); use kAuto"));
  }
  const bool wgmma = p.kernel == PrefillKernel::kWgmma ||
                     (p.kernel == PrefillKernel::kAuto && hopper && p.head_dim == 128);
  const cudaError_t launched =
      wgmma ? internal::LaunchPrefillSm90Tma(dtype == DType::kBFloat16, q, k, v, cu_seqlens,
                                             p.batch, p.total_tokens, p.num_heads,
                                             p.num_kv_heads, p.max_seqlen, p.scale, sm_count,
                                             workspace, output, raw)
      : dtype == DType::kFloat16
          ? LaunchForType<__half>(p, q, k, v, cu_seqlens, output, raw)
          : LaunchForType<__nv_bfloat16>(p, q, k, v, cu_seqlens, output, raw);
  return gpu::internal::CudaStatus(launched, "PrefillAttention launch", stream.device());
}

}  // namespace troupe::gpu::attention
