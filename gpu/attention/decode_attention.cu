#include <cuda_runtime.h>

#include <cfloat>

#include "absl/strings/str_cat.h"
#include "gpu/attention/decode_attention.h"
#include "gpu/attention/internal/device_utils.cuh"
#include "gpu/internal/check.h"

namespace troupe::gpu::attention {
namespace {

using internal::Unpack8;

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
// 16-byte loads each thread keeps in flight; fewer with larger groups, whose per-head state
// takes the registers.
template <int kGroup>
constexpr int kUnroll = kGroup <= 2 ? 8 : 4;

// Reduces `value` over the block with `op`; every thread gets the result.
template <class Op>
__device__ float BlockReduce(float value, float* scratch, Op op) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
  }
  const int warp = threadIdx.x / 32;
  __syncthreads();  // scratch may still be read from a previous reduction.
  if (threadIdx.x % 32 == 0) scratch[warp] = value;
  __syncthreads();
  value = scratch[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) value = op(value, scratch[w]);
  return value;
}

// DecodeArgs are both kernels' arguments (see PagedDecodeAttention); the partial_* arrays are
// the workspace, used when num_partitions > 1. The kernels take it as a __grid_constant__
// parameter: passed as a plain by-value struct, the fp16 streaming kernel ran 1.5-3% slower.
template <class T>
struct DecodeArgs {
  const T* __restrict__ query;
  const T* __restrict__ key_cache;
  const T* __restrict__ value_cache;
  const int32_t* __restrict__ block_tables;
  const int32_t* __restrict__ context_lens;
  int num_heads;
  int num_kv_heads;
  int max_blocks_per_seq;
  float scale;
  int num_partitions;
  float* __restrict__ partial_max;
  float* __restrict__ partial_sum;
  float* __restrict__ partial_out;
  T* __restrict__ output;
};

// PartitionTokens is the token range [begin, end) of this thread block's partition of its
// sequence (grid: x = kv head, y = sequence, z = partition); empty past the sequence's end.
template <int kPartitionTokens, class T>
__device__ __forceinline__ int2 PartitionTokens(const DecodeArgs<T>& a) {
  const int begin = blockIdx.z * kPartitionTokens;
  return make_int2(begin, min(begin + kPartitionTokens, a.context_lens[blockIdx.y]));
}

// --- Two-phase kernel (group sizes 4 and 8) ------------------------------------------------
//
// One thread block: one (kv head, sequence, partition). kGroup query heads share the kv head.
// Threads are laid out as [token lane][chunk]: kVecs chunks of 8 elements cover head_dim, and
// kLanes = kThreads / kVecs tokens are processed side by side.
template <class T, int kHeadDim, int kGroup, int kPartitionTokens>
__global__ void __launch_bounds__(kThreads)
    DecodeAttentionKernel(const __grid_constant__ DecodeArgs<T> a) {
  constexpr int kVecs = kHeadDim / 8;
  constexpr int kLanes = kThreads / kVecs;
  const int kv_head = blockIdx.x;
  const int seq = blockIdx.y;
  const int partition = blockIdx.z;
  const auto [begin, end] = PartitionTokens<kPartitionTokens>(a);
  if (begin >= end) return;  // The sequence ends before this partition.
  const int count = end - begin;

  // The logits (phases 1-3) and the per-lane outputs (phase 4) share one buffer.
  constexpr int kLogits = kGroup * kPartitionTokens;
  constexpr int kLaneOutputs = kLanes * kGroup * kHeadDim;
  __shared__ float shared[kLogits > kLaneOutputs ? kLogits : kLaneOutputs];
  __shared__ float scratch[kWarps];
  __shared__ float stats_max[kGroup], stats_sum[kGroup];  // Indexed at run time in phase 4.
  auto logits = reinterpret_cast<float (*)[kPartitionTokens]>(shared);
  auto reduce_out = reinterpret_cast<float (*)[kGroup][kHeadDim]>(shared);

  const int chunk = threadIdx.x % kVecs;
  const int lane = threadIdx.x / kVecs;
  const int32_t* table = a.block_tables + static_cast<int64_t>(seq) * a.max_blocks_per_seq;
  const int64_t head_stride = kBlockSize * kHeadDim;  // Elements of one (block, head).

  // This thread's 8 elements of each a.query head in the group, pre-scaled.
  float q[kGroup][8];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    const int head = kv_head * kGroup + g;
    const uint4 bits = reinterpret_cast<const uint4*>(
        a.query + (static_cast<int64_t>(seq) * a.num_heads + head) * kHeadDim)[chunk];
    Unpack8<T>(bits, q[g]);
#pragma unroll
    for (int i = 0; i < 8; ++i) q[g][i] *= a.scale;
  }

  auto address = [&](const T* cache, int token) {
    const int64_t block = table[token / kBlockSize];
    return reinterpret_cast<const uint4*>(cache + (block * a.num_kv_heads + kv_head) * head_stride +
                                          (token % kBlockSize) * kHeadDim) +
           chunk;
  };

  // 1. Logits: each group of kVecs threads computes one token's dot products. The loop bounds
  // are the same for every thread, so the shuffles below always run with the whole warp.
  for (int base = begin; base < end; base += kLanes * kUnroll<kGroup>) {
    uint4 k_bits[kUnroll<kGroup>];
#pragma unroll
    for (int u = 0; u < kUnroll<kGroup>; ++u) {
      const int token = base + lane + u * kLanes;
      k_bits[u] = token < end ? __ldg(address(a.key_cache, token)) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll<kGroup>; ++u) {
      const int token = base + lane + u * kLanes;
      float k[8];
      Unpack8<T>(k_bits[u], k);
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        float dot = 0;
#pragma unroll
        for (int i = 0; i < 8; ++i) dot += q[g][i] * k[i];
#pragma unroll
        for (int offset = kVecs / 2; offset > 0; offset /= 2) {
          dot += __shfl_xor_sync(0xffffffffu, dot, offset);
        }
        if (chunk == 0 && token < end) logits[g][token - begin] = dot;
      }
    }
  }
  __syncthreads();

  // 2. Softmax within the partition (unnormalized: exp(x - max), with the sum kept).
  float group_max[kGroup], group_sum[kGroup];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    float m = -FLT_MAX;
    for (int i = threadIdx.x; i < count; i += kThreads) m = fmaxf(m, logits[g][i]);
    group_max[g] = BlockReduce(m, scratch, [](float a, float b) { return fmaxf(a, b); });
    float s = 0;
    for (int i = threadIdx.x; i < count; i += kThreads) {
      const float e = __expf(logits[g][i] - group_max[g]);
      logits[g][i] = e;
      s += e;
    }
    group_sum[g] = BlockReduce(s, scratch, [](float a, float b) { return a + b; });
    if (threadIdx.x == 0) stats_max[g] = group_max[g], stats_sum[g] = group_sum[g];
  }
  __syncthreads();

  // 3. Weighted sum of V: each thread accumulates its 8 dimensions over its tokens.
  float acc[kGroup][8];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[g][i] = 0;
  }
  for (int base = begin + lane; base < end; base += kLanes * kUnroll<kGroup>) {
    uint4 v_bits[kUnroll<kGroup>];
#pragma unroll
    for (int u = 0; u < kUnroll<kGroup>; ++u) {
      const int token = base + u * kLanes;
      v_bits[u] = token < end ? __ldg(address(a.value_cache, token)) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll<kGroup>; ++u) {
      const int token = base + u * kLanes;
      if (token >= end) break;
      float v[8];
      Unpack8<T>(v_bits[u], v);
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        const float p = logits[g][token - begin];
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[g][i] += p * v[i];
      }
    }
  }
  __syncthreads();  // Every thread is done reading the logits: the buffer becomes reduce_out.
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
#pragma unroll
    for (int i = 0; i < 8; ++i) reduce_out[lane][g][chunk * 8 + i] = acc[g][i];
  }
  __syncthreads();

  // 4. Sum over token lanes; write the result (or this partition's share of it).
  for (int index = threadIdx.x; index < kGroup * kHeadDim; index += kThreads) {
    const int g = index / kHeadDim;
    const int d = index % kHeadDim;
    float total = 0;
#pragma unroll
    for (int l = 0; l < kLanes; ++l) total += reduce_out[l][g][d];
    const int head = kv_head * kGroup + g;
    const int64_t row = static_cast<int64_t>(seq) * a.num_heads + head;
    if (a.num_partitions == 1) {
      a.output[row * kHeadDim + d] = internal::FromFloat<T>(total / stats_sum[g]);
    } else {
      a.partial_out[(row * a.num_partitions + partition) * kHeadDim + d] = total / stats_sum[g];
      if (d == 0) {
        a.partial_max[row * a.num_partitions + partition] = stats_max[g];
        a.partial_sum[row * a.num_partitions + partition] = stats_sum[g];
      }
    }
  }
}

// --- Streaming kernel (group sizes 1 and 2) ------------------------------------------------
//
// One thread block: one (kv head, sequence, partition), eight warps. Each warp walks every
// eighth KV block of the partition on its own, with an online softmax: it loads the block's K and V
// together (a warp load covers 512 contiguous bytes), takes the logits, rescales, and adds P·V,
// so loads are always in flight and no block-wide barrier sits between the K and V phases. The
// warps merge (max, sum, output) in shared memory at the end. On an H200 at batch 64 x 1024
// tokens (OPT-13B heads) it reads the cache at 4.4 TB/s, where the kernel above (logits of the
// whole partition, then a block-wide softmax, then V) reaches 4.2; eight warps per block beat
// four and sixteen (docs/results/gpu_kernels.md).
//
// In a load, lane l holds 8 dimensions (kLanesPerToken lanes per token) of token
// kTokensPerLoad * i + l / kLanesPerToken of the block; kLoads loads cover the block's 16 tokens.
// A transposed butterfly sums the per-load partial dot products across the lanes of a token:
// each halving step trades half of a lane's values with its partner, so after log2(lanes) steps
// lane l holds the whole logit of load i = (l >> 1) & (kLoads - 1) (lanes l and l ^ 1 alike).
constexpr int kStreamWarps = 8;

template <int kHeadDim>
struct StreamLayout {
  static constexpr int kLanesPerToken = kHeadDim / 8;                 // 16 or 8
  static constexpr int kTokensPerLoad = 32 / kLanesPerToken;          // 2 or 4
  static constexpr int kLoads = kBlockSize / kTokensPerLoad;          // 8 or 4
  static constexpr int kChunkVectors = kBlockSize * kHeadDim / 8;     // uint4 per (block, head)
};

// TransposedSum: `part[i]` is this lane's share of load i's dot product; returns the full dot
// product of load (lane >> 1) & (kLoads - 1) (see above).
template <int kLoads, int kLanesPerToken>
__device__ __forceinline__ float TransposedSum(float (&part)[kLoads], int lane) {
  static_assert(kLoads * 2 == kLanesPerToken, "one halving step per lane bit above bit 0");
#pragma unroll
  for (int n = kLoads; n > 1; n /= 2) {
    const int offset = n;  // lanes l and l ^ n swap halves of their n values
    const bool upper = lane & offset;
#pragma unroll
    for (int j = 0; j < n / 2; ++j) {
      const float send = upper ? part[j] : part[j + n / 2];
      const float keep = upper ? part[j + n / 2] : part[j];
      part[j] = keep + __shfl_xor_sync(0xffffffffu, send, offset);
    }
  }
  return part[0] + __shfl_xor_sync(0xffffffffu, part[0], 1);
}

template <class T, int kHeadDim, int kGroup, int kPartitionTokens>
__global__ void __launch_bounds__(kStreamWarps * 32)
    StreamDecodeKernel(const __grid_constant__ DecodeArgs<T> a) {
  using Layout = StreamLayout<kHeadDim>;
  constexpr int kLoads = Layout::kLoads;
  constexpr float kLog2e = 1.4426950408889634f;
  const int kv_head = blockIdx.x;
  const int seq = blockIdx.y;
  const int partition = blockIdx.z;
  const auto [begin, end] = PartitionTokens<kPartitionTokens>(a);
  if (begin >= end) return;  // The sequence ends before this partition.
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int sub = lane / Layout::kLanesPerToken;   // token within a load
  const int dim0 = (lane % Layout::kLanesPerToken) * 8;
  const int32_t* table = a.block_tables + static_cast<int64_t>(seq) * a.max_blocks_per_seq;

  // This lane's 8 dimensions of each a.query head, scaled into the log2 domain.
  float q[kGroup][8];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    const int head = kv_head * kGroup + g;
    Unpack8<T>(*reinterpret_cast<const uint4*>(
                   a.query + (static_cast<int64_t>(seq) * a.num_heads + head) * kHeadDim + dim0),
               q[g]);
#pragma unroll
    for (int i = 0; i < 8; ++i) q[g][i] *= a.scale * kLog2e;
  }
  float running_max[kGroup];
  float running_sum[kGroup];  // Over the tokens whose logit this lane holds, lanes l & 1 == 0.
  float acc[kGroup][8];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    running_max[g] = -INFINITY;
    running_sum[g] = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[g][i] = 0;
  }

  const int token_of_logit = ((lane >> 1) & (kLoads - 1)) * Layout::kTokensPerLoad + sub;
  const int last_block = (end + kBlockSize - 1) / kBlockSize;  // Exclusive.
  for (int b = begin / kBlockSize + warp; b < last_block; b += kStreamWarps) {
    const int64_t offset = (static_cast<int64_t>(table[b]) * a.num_kv_heads + kv_head) *
                           Layout::kChunkVectors + lane;
    const uint4* k_chunk = reinterpret_cast<const uint4*>(a.key_cache) + offset;
    const uint4* v_chunk = reinterpret_cast<const uint4*>(a.value_cache) + offset;
    uint4 k_bits[kLoads];
    uint4 v_bits[kLoads];
#pragma unroll
    for (int i = 0; i < kLoads; ++i) k_bits[i] = __ldg(k_chunk + i * 32);
#pragma unroll
    for (int i = 0; i < kLoads; ++i) v_bits[i] = __ldg(v_chunk + i * 32);
    // Every block of [begin, end) holds at least one valid token (begin is block-aligned), so
    // each block's maximum is finite.
    const bool valid = b * kBlockSize + token_of_logit < end;
    float p[kGroup];
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
      float part[kLoads];
#pragma unroll
      for (int i = 0; i < kLoads; ++i) {
        float k[8];
        Unpack8<T>(k_bits[i], k);
        part[i] = 0;
#pragma unroll
        for (int e = 0; e < 8; ++e) part[i] = fmaf(q[g][e], k[e], part[i]);
      }
      // Every lane takes part in the shuffles; tokens past the end are masked afterwards.
      float logit = TransposedSum<kLoads, Layout::kLanesPerToken>(part, lane);
      if (!valid) logit = -INFINITY;
      float block_max = logit;
#pragma unroll
      for (int o = 16; o > 1; o /= 2) {
        block_max = fmaxf(block_max, __shfl_xor_sync(0xffffffffu, block_max, o));
      }
      const float new_max = fmaxf(running_max[g], block_max);
      const float rescale = exp2f(running_max[g] - new_max);  // 0 on the first block
      running_max[g] = new_max;
      p[g] = exp2f(logit - new_max);
      running_sum[g] = running_sum[g] * rescale + ((lane & 1) == 0 ? p[g] : 0.f);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[g][e] *= rescale;
    }
    const int source = lane - lane % Layout::kLanesPerToken;  // first lane of this token group
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      float v[8];
      Unpack8<T>(v_bits[i], v);
#pragma unroll
      for (int g = 0; g < kGroup; ++g) {
        const float weight = __shfl_sync(0xffffffffu, p[g], source | (i << 1));
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[g][e] = fmaf(weight, v[e], acc[g][e]);
      }
    }
  }

  // Merge the lanes holding other tokens of the same dimensions, then the warps.
  __shared__ float warp_max[kStreamWarps][kGroup];
  __shared__ float warp_sum[kStreamWarps][kGroup];
  __shared__ float warp_out[kStreamWarps][kGroup][kHeadDim];
#pragma unroll
  for (int g = 0; g < kGroup; ++g) {
    float sum = running_sum[g];
#pragma unroll
    for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
#pragma unroll
    for (int o = 16; o >= Layout::kLanesPerToken; o /= 2) {
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[g][e] += __shfl_xor_sync(0xffffffffu, acc[g][e], o);
    }
    if (lane < Layout::kLanesPerToken) {
#pragma unroll
      for (int e = 0; e < 8; ++e) warp_out[warp][g][dim0 + e] = acc[g][e];
    }
    if (lane == 0) {
      warp_max[warp][g] = running_max[g];
      warp_sum[warp][g] = sum;
    }
  }
  __syncthreads();
  for (int index = threadIdx.x; index < kGroup * kHeadDim; index += kStreamWarps * 32) {
    const int g = index / kHeadDim;
    const int d = index % kHeadDim;
    float max = -INFINITY;
#pragma unroll
    for (int w = 0; w < kStreamWarps; ++w) max = fmaxf(max, warp_max[w][g]);
    float total = 0;
    float weight = 0;
#pragma unroll
    for (int w = 0; w < kStreamWarps; ++w) {
      if (warp_max[w][g] == -INFINITY) continue;  // A warp that had no block.
      const float factor = exp2f(warp_max[w][g] - max);
      total += factor * warp_out[w][g][d];
      weight += factor * warp_sum[w][g];
    }
    const int64_t row = static_cast<int64_t>(seq) * a.num_heads + kv_head * kGroup + g;
    if (a.num_partitions == 1) {
      a.output[row * kHeadDim + d] = internal::FromFloat<T>(total / weight);
    } else {
      a.partial_out[(row * a.num_partitions + partition) * kHeadDim + d] = total / weight;
      if (d == 0) {  // MergePartitionsKernel takes maxima in natural-log units.
        a.partial_max[row * a.num_partitions + partition] = max / kLog2e;
        a.partial_sum[row * a.num_partitions + partition] = weight;
      }
    }
  }
}

// Merges the partitions of one (sequence, head): weights each partition's normalized output by
// its share of the total softmax mass.
template <class T, int kHeadDim>
__global__ void __launch_bounds__(kHeadDim)
    MergePartitionsKernel(const float* __restrict__ partial_max,
                          const float* __restrict__ partial_sum,
                          const float* __restrict__ partial_out,
                          const int32_t* __restrict__ context_lens, int num_heads,
                          int num_partitions, int partition_tokens, T* __restrict__ output) {
  const int64_t row = blockIdx.x;  // seq * num_heads + head
  const int seq = static_cast<int>(row / num_heads);
  const int used = (context_lens[seq] + partition_tokens - 1) / partition_tokens;
  const float* maxes = partial_max + row * num_partitions;
  const float* sums = partial_sum + row * num_partitions;
  float global_max = -FLT_MAX;
  for (int p = 0; p < used; ++p) global_max = fmaxf(global_max, maxes[p]);
  float total_weight = 0, value = 0;
  for (int p = 0; p < used; ++p) {
    const float weight = sums[p] * __expf(maxes[p] - global_max);
    total_weight += weight;
    value += weight * partial_out[(row * num_partitions + p) * kHeadDim + threadIdx.x];
  }
  output[row * kHeadDim + threadIdx.x] = internal::FromFloat<T>(value / total_weight);
}

int NumPartitions(const DecodeAttentionParams& params) {
  const int tokens = DecodePartitionTokens(params);
  return (params.max_context_len + tokens - 1) / tokens;
}

template <class T, int kHeadDim, int kGroup, int kPartitionTokens>
cudaError_t Launch(const DecodeAttentionParams& p, const void* query, const void* key_cache,
                   const void* value_cache, const int32_t* block_tables,
                   const int32_t* context_lens, void* workspace, void* output,
                   cudaStream_t stream) {
  const int partitions = NumPartitions(p);
  const int64_t rows = p.batch * p.num_heads;
  float* partial_max = static_cast<float*>(workspace);
  float* partial_sum = partial_max + rows * partitions;
  float* partial_out = partial_sum + rows * partitions;
  const dim3 grid(p.cache.num_kv_heads, static_cast<unsigned>(p.batch), partitions);
  const DecodeArgs<T> args{static_cast<const T*>(query),
                           static_cast<const T*>(key_cache),
                           static_cast<const T*>(value_cache),
                           block_tables,
                           context_lens,
                           p.num_heads,
                           p.cache.num_kv_heads,
                           p.max_blocks_per_seq,
                           p.scale,
                           partitions,
                           partial_max,
                           partial_sum,
                           partial_out,
                           static_cast<T*>(output)};
  if constexpr (kGroup <= 2) {  // Larger groups would spill: see StreamDecodeKernel.
    StreamDecodeKernel<T, kHeadDim, kGroup, kPartitionTokens>
        <<<grid, kStreamWarps * 32, 0, stream>>>(args);
  } else {
    DecodeAttentionKernel<T, kHeadDim, kGroup, kPartitionTokens>
        <<<grid, kThreads, 0, stream>>>(args);
  }
  if (partitions > 1) {
    MergePartitionsKernel<T, kHeadDim><<<static_cast<unsigned>(rows), kHeadDim, 0, stream>>>(
        partial_max, partial_sum, partial_out, context_lens, p.num_heads, partitions,
        kPartitionTokens, static_cast<T*>(output));
  }
  return cudaGetLastError();
}

template <class T, int kHeadDim, int kGroup>
cudaError_t LaunchForPartition(const DecodeAttentionParams& p, const void* query,
                               const void* key_cache, const void* value_cache,
                               const int32_t* block_tables, const int32_t* context_lens,
                               void* workspace, void* output, cudaStream_t stream) {
  switch (DecodePartitionTokens(p)) {
    case kLargePartitionTokens:
      return Launch<T, kHeadDim, kGroup, kLargePartitionTokens>(
          p, query, key_cache, value_cache, block_tables, context_lens, workspace, output, stream);
    case kTinyPartitionTokens:
      return Launch<T, kHeadDim, kGroup, kTinyPartitionTokens>(
          p, query, key_cache, value_cache, block_tables, context_lens, workspace, output, stream);
    default:
      return Launch<T, kHeadDim, kGroup, kSmallPartitionTokens>(
          p, query, key_cache, value_cache, block_tables, context_lens, workspace, output, stream);
  }
}

template <class T, int kHeadDim>
cudaError_t LaunchForGroup(int group, const DecodeAttentionParams& p, const void* query,
                           const void* key_cache, const void* value_cache,
                           const int32_t* block_tables, const int32_t* context_lens,
                           void* workspace, void* output, cudaStream_t stream) {
  switch (group) {
    case 1: return LaunchForPartition<T, kHeadDim, 1>(p, query, key_cache, value_cache,
                                                      block_tables, context_lens, workspace,
                                                      output, stream);
    case 2: return LaunchForPartition<T, kHeadDim, 2>(p, query, key_cache, value_cache,
                                                      block_tables, context_lens, workspace,
                                                      output, stream);
    case 4: return LaunchForPartition<T, kHeadDim, 4>(p, query, key_cache, value_cache,
                                                      block_tables, context_lens, workspace,
                                                      output, stream);
    default: return LaunchForPartition<T, kHeadDim, 8>(p, query, key_cache, value_cache,
                                                       block_tables, context_lens, workspace,
                                                       output, stream);
  }
}

template <class T>
cudaError_t LaunchForType(int group, const DecodeAttentionParams& p, const void* query,
                          const void* key_cache, const void* value_cache,
                          const int32_t* block_tables, const int32_t* context_lens,
                          void* workspace, void* output, cudaStream_t stream) {
  if (p.cache.head_dim == 64) {
    return LaunchForGroup<T, 64>(group, p, query, key_cache, value_cache, block_tables,
                                 context_lens, workspace, output, stream);
  }
  return LaunchForGroup<T, 128>(group, p, query, key_cache, value_cache, block_tables,
                                context_lens, workspace, output, stream);
}

}  // namespace

int DecodePartitionTokens(const DecodeAttentionParams& params) {
  if (params.partition_tokens == kTinyPartitionTokens ||
      params.partition_tokens == kSmallPartitionTokens ||
      params.partition_tokens == kLargePartitionTokens) {
    return params.partition_tokens;
  }
  // Measured on an H200 (docs/results/gpu_kernels.md). The streaming kernel (groups 1 and 2)
  // is fastest with whole contexts of up to 1024 tokens per block, no merge step, as long as
  // there are enough blocks to fill the GPU (kMinStreamBlocks, about four per SM of an H100);
  // with fewer (small batches) it splits the context further. The two-phase kernel of larger
  // groups was fastest with 256-token partitions.
  constexpr int64_t kMinStreamBlocks = 512;
  const int group = params.cache.num_kv_heads > 0 ? params.num_heads / params.cache.num_kv_heads
                                                  : 1;
  if (group > 2) return kTinyPartitionTokens;
  for (int tokens : {kLargePartitionTokens, kSmallPartitionTokens}) {
    const int64_t partitions = (params.max_context_len + tokens - 1) / tokens;
    if (static_cast<int64_t>(params.cache.num_kv_heads) * params.batch * partitions >=
        kMinStreamBlocks) {
      return tokens;
    }
  }
  return kTinyPartitionTokens;
}

size_t DecodeAttentionWorkspaceBytes(const DecodeAttentionParams& params) {
  const int partitions = NumPartitions(params);
  if (partitions <= 1) return 0;
  const size_t rows = static_cast<size_t>(params.batch) * params.num_heads * partitions;
  return rows * (2 + params.cache.head_dim) * sizeof(float);
}

absl::Status PagedDecodeAttention(DType dtype, const DecodeAttentionParams& params,
                                  const void* query, const void* key_cache,
                                  const void* value_cache, const int32_t* block_tables,
                                  const int32_t* context_lens, void* workspace,
                                  size_t workspace_bytes, void* output, Stream& stream) {
  const DecodeAttentionParams& p = params;
  if (dtype == DType::kFloat32) {
    return absl::InvalidArgumentError("PagedDecodeAttention supports fp16 and bf16, not fp32");
  }
  if (p.cache.head_dim != 64 && p.cache.head_dim != 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("PagedDecodeAttention: head_dim ", p.cache.head_dim, " is not 64 or 128"));
  }
  if (p.batch <= 0 || p.num_heads <= 0 || p.cache.num_kv_heads <= 0 ||
      p.max_blocks_per_seq <= 0 || p.max_context_len <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PagedDecodeAttention: batch (", p.batch, "), num_heads (", p.num_heads,
        "), num_kv_heads (", p.cache.num_kv_heads, "), max_blocks_per_seq (",
        p.max_blocks_per_seq, ") and max_context_len (", p.max_context_len,
        ") must be positive"));
  }
  const int group = p.num_heads / p.cache.num_kv_heads;
  if (p.num_heads % p.cache.num_kv_heads != 0 ||
      (group != 1 && group != 2 && group != 4 && group != 8)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PagedDecodeAttention: num_heads (", p.num_heads, ") / num_kv_heads (",
        p.cache.num_kv_heads, ") must be 1, 2, 4 or 8"));
  }
  if (static_cast<int64_t>(p.max_blocks_per_seq) * kBlockSize < p.max_context_len) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PagedDecodeAttention: max_context_len ", p.max_context_len, " needs ",
        (p.max_context_len + kBlockSize - 1) / kBlockSize, " blocks per sequence, but block "
        "tables have ", p.max_blocks_per_seq));
  }
  if (p.partition_tokens != 0 && p.partition_tokens != kTinyPartitionTokens &&
      p.partition_tokens != kSmallPartitionTokens &&
      p.partition_tokens != kLargePartitionTokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PagedDecodeAttention: partition_tokens ", p.partition_tokens, " is not 0, ",
        kTinyPartitionTokens, ", ", kSmallPartitionTokens, " or ", kLargePartitionTokens));
  }
  if (p.batch > 65535) {
    return absl::InvalidArgumentError("PagedDecodeAttention: batch above 65535");
  }
  if (query == nullptr || key_cache == nullptr || value_cache == nullptr ||
      block_tables == nullptr || context_lens == nullptr || output == nullptr) {
    return absl::InvalidArgumentError("PagedDecodeAttention: a device pointer is null");
  }
  const size_t needed = DecodeAttentionWorkspaceBytes(p);
  if (workspace_bytes < needed || (needed > 0 && workspace == nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PagedDecodeAttention needs a workspace of ", needed, " bytes (", workspace_bytes,
        " given); size it with DecodeAttentionWorkspaceBytes"));
  }
  cudaStream_t raw = static_cast<cudaStream_t>(stream.raw());
  const cudaError_t launched =
      dtype == DType::kFloat16
          ? LaunchForType<__half>(group, p, query, key_cache, value_cache, block_tables,
                                  context_lens, workspace, output, raw)
          : LaunchForType<__nv_bfloat16>(group, p, query, key_cache, value_cache, block_tables,
                                         context_lens, workspace, output, raw);
  return gpu::internal::CudaStatus(launched, "PagedDecodeAttention launch", stream.device());
}

}  // namespace troupe::gpu::attention
