#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "gpu/attention/internal/device_utils.cuh"
#include "gpu/attention/paged_kv.h"
#include "gpu/internal/check.h"

namespace troupe::gpu::attention {
namespace {

using internal::Vec8;

// One thread moves 16 bytes: 8 elements of one (token or block-slot, head) row of head_dim.
constexpr int kThreads = 256;

__global__ void WriteKvKernel(const uint4* __restrict__ key, const uint4* __restrict__ value,
                              const int32_t* __restrict__ slot_mapping, int64_t num_tokens,
                              int num_kv_heads, int vecs_per_head, uint4* __restrict__ key_cache,
                              uint4* __restrict__ value_cache) {
  const int64_t vecs_per_token = static_cast<int64_t>(num_kv_heads) * vecs_per_head;
  const int64_t total = num_tokens * vecs_per_token;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t token = i / vecs_per_token;
    const int slot = slot_mapping[token];
    if (slot < 0) continue;
    const int64_t within = i - token * vecs_per_token;
    const int head = static_cast<int>(within / vecs_per_head);
    const int vec = static_cast<int>(within - static_cast<int64_t>(head) * vecs_per_head);
    const int64_t block = slot / kBlockSize;
    const int offset = slot % kBlockSize;
    const int64_t destination =
        ((block * num_kv_heads + head) * kBlockSize + offset) * vecs_per_head + vec;
    key_cache[destination] = key[i];
    value_cache[destination] = value[i];
  }
}

// Gather (kToPacked) or scatter a head range of listed blocks; one (block, head) is
// kBlockSize * vecs_per_head contiguous 16-byte vectors on both sides.
template <bool kToPacked>
__global__ void MoveBlocksKernel(uint4* __restrict__ cache, uint4* __restrict__ packed,
                                 const int32_t* __restrict__ block_ids, int64_t num_listed,
                                 int num_kv_heads, int head_begin, int num_heads_moved,
                                 int vecs_per_head) {
  const int64_t vecs_per_block_head = static_cast<int64_t>(kBlockSize) * vecs_per_head;
  const int64_t total = num_listed * num_heads_moved * vecs_per_block_head;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t pair = i / vecs_per_block_head;  // (listed block, moved head)
    const int64_t within = i - pair * vecs_per_block_head;
    const int64_t listed = pair / num_heads_moved;
    const int head = head_begin + static_cast<int>(pair - listed * num_heads_moved);
    const int64_t cache_index =
        (static_cast<int64_t>(block_ids[listed]) * num_kv_heads + head) * vecs_per_block_head +
        within;
    if (kToPacked) {
      packed[i] = cache[cache_index];
    } else {
      cache[cache_index] = packed[i];
    }
  }
}

// One CTA per (pair, layer, K or V): a contiguous run of `run_vecs` 16-byte vectors, at
// the same place in both shards' layout but for their own array sizes and offsets.
__global__ void CopyBlocksKernel(const uint4* __restrict__ source, uint4* __restrict__ destination,
                                 const int32_t* __restrict__ block_pairs, int64_t src_array_vecs,
                                 int64_t dst_array_vecs, int64_t src_block_vecs,
                                 int64_t dst_block_vecs, int64_t src_offset_vecs,
                                 int64_t dst_offset_vecs, int src_first_array, int dst_first_array,
                                 int arrays, int64_t run_vecs) {
  const int64_t pair = blockIdx.x / arrays;
  const int array = static_cast<int>(blockIdx.x - pair * arrays);  // 2 * (layer - first) + kv
  const int64_t src_block = block_pairs[2 * pair];
  const int64_t dst_block = block_pairs[2 * pair + 1];
  const uint4* from = source + (src_first_array + array) * src_array_vecs +
                      src_block * src_block_vecs + src_offset_vecs;
  uint4* to = destination + (dst_first_array + array) * dst_array_vecs +
              dst_block * dst_block_vecs + dst_offset_vecs;
  for (int64_t i = threadIdx.x; i < run_vecs; i += blockDim.x) to[i] = from[i];
}

int GridFor(int64_t work) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65536 ? (blocks > 0 ? blocks : 1) : 65536);
}

absl::Status CheckShape(DType dtype, const KvCacheShape& shape) {
  if (dtype == DType::kFloat32) {
    return absl::InvalidArgumentError("the KV cache holds fp16 or bf16, not fp32");
  }
  if (shape.num_blocks <= 0 || shape.num_kv_heads <= 0 || shape.head_dim <= 0 ||
      shape.head_dim % 8 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV cache shape [num_blocks=", shape.num_blocks, ", num_kv_heads=", shape.num_kv_heads,
        ", head_dim=", shape.head_dim,
        "] is invalid: all must be positive and head_dim a multiple of 8"));
  }
  return absl::OkStatus();
}

absl::Status CheckHeadRange(const KvCacheShape& shape, int head_begin, int head_end) {
  if (head_begin < 0 || head_end > shape.num_kv_heads || head_begin >= head_end) {
    return absl::InvalidArgumentError(absl::StrCat("head range [", head_begin, ", ", head_end,
                                                   ") is not a non-empty range within [0, ",
                                                   shape.num_kv_heads, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteKv(DType dtype, const void* key, const void* value, const int32_t* slot_mapping,
                     int64_t num_tokens, const KvCacheShape& shape, void* key_cache,
                     void* value_cache, Stream& stream) {
  if (absl::Status status = CheckShape(dtype, shape); !status.ok()) return status;
  if (num_tokens < 0) return absl::InvalidArgumentError("WriteKv: num_tokens < 0");
  if (num_tokens == 0) return absl::OkStatus();
  if (key == nullptr || value == nullptr || slot_mapping == nullptr || key_cache == nullptr ||
      value_cache == nullptr) {
    return absl::InvalidArgumentError("WriteKv: a device pointer is null");
  }
  const int vecs_per_head = shape.head_dim / 8;
  WriteKvKernel<<<GridFor(num_tokens * shape.num_kv_heads * vecs_per_head), kThreads, 0,
                  static_cast<cudaStream_t>(stream.raw())>>>(
      static_cast<const uint4*>(key), static_cast<const uint4*>(value), slot_mapping, num_tokens,
      shape.num_kv_heads, vecs_per_head, static_cast<uint4*>(key_cache),
      static_cast<uint4*>(value_cache));
  return gpu::internal::CudaStatus(cudaGetLastError(), "WriteKvKernel launch", stream.device());
}

absl::Status GatherKvBlocks(DType dtype, const void* cache, const KvCacheShape& shape,
                            const int32_t* block_ids, int64_t num_listed, int head_begin,
                            int head_end, void* packed, Stream& stream) {
  if (absl::Status status = CheckShape(dtype, shape); !status.ok()) return status;
  if (absl::Status status = CheckHeadRange(shape, head_begin, head_end); !status.ok()) {
    return status;
  }
  if (num_listed <= 0) return num_listed == 0 ? absl::OkStatus()
                                              : absl::InvalidArgumentError("num_listed < 0");
  if (cache == nullptr || block_ids == nullptr || packed == nullptr) {
    return absl::InvalidArgumentError("GatherKvBlocks: a device pointer is null");
  }
  const int vecs_per_head = shape.head_dim / 8;
  const int moved = head_end - head_begin;
  MoveBlocksKernel<true><<<GridFor(num_listed * moved * kBlockSize * vecs_per_head), kThreads, 0,
                           static_cast<cudaStream_t>(stream.raw())>>>(
      const_cast<uint4*>(static_cast<const uint4*>(cache)), static_cast<uint4*>(packed),
      block_ids, num_listed, shape.num_kv_heads, head_begin, moved, vecs_per_head);
  return gpu::internal::CudaStatus(cudaGetLastError(), "GatherKvBlocks launch", stream.device());
}

absl::Status ScatterKvBlocks(DType dtype, const void* packed, const int32_t* block_ids,
                             int64_t num_listed, int head_begin, int head_end,
                             const KvCacheShape& shape, void* cache, Stream& stream) {
  if (absl::Status status = CheckShape(dtype, shape); !status.ok()) return status;
  if (absl::Status status = CheckHeadRange(shape, head_begin, head_end); !status.ok()) {
    return status;
  }
  if (num_listed <= 0) return num_listed == 0 ? absl::OkStatus()
                                              : absl::InvalidArgumentError("num_listed < 0");
  if (cache == nullptr || block_ids == nullptr || packed == nullptr) {
    return absl::InvalidArgumentError("ScatterKvBlocks: a device pointer is null");
  }
  const int vecs_per_head = shape.head_dim / 8;
  const int moved = head_end - head_begin;
  MoveBlocksKernel<false><<<GridFor(num_listed * moved * kBlockSize * vecs_per_head), kThreads,
                            0, static_cast<cudaStream_t>(stream.raw())>>>(
      static_cast<uint4*>(cache), const_cast<uint4*>(static_cast<const uint4*>(packed)),
      block_ids, num_listed, shape.num_kv_heads, head_begin, moved, vecs_per_head);
  return gpu::internal::CudaStatus(cudaGetLastError(), "ScatterKvBlocks launch", stream.device());
}

absl::Status CopyKvBlocks(DType dtype, const KvShardArrays& source,
                          const KvShardArrays& destination, const int32_t* block_pairs,
                          int64_t num_pairs, int layer_begin, int layer_end, int head_begin,
                          int head_end, Stream& stream) {
  if (dtype == DType::kFloat32) {
    return absl::InvalidArgumentError("the KV cache holds fp16 or bf16, not fp32");
  }
  for (const KvShardArrays* shard : {&source, &destination}) {
    const char* which = shard == &source ? "source" : "destination";
    if (shard->base == nullptr || shard->num_blocks <= 0 || shard->num_layers <= 0 ||
        shard->num_heads <= 0 || shard->head_dim <= 0 || shard->head_dim % 8 != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CopyKvBlocks: the ", which, " shard [base ", shard->base == nullptr ? "null" : "set",
          ", ", shard->num_blocks, " blocks, ", shard->num_layers, " layers, ", shard->num_heads,
          " heads, head_dim ", shard->head_dim, "] is invalid"));
    }
    if (layer_begin < shard->layer_begin || layer_end > shard->layer_begin + shard->num_layers ||
        head_begin < shard->head_begin || head_end > shard->head_begin + shard->num_heads) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CopyKvBlocks: layers [", layer_begin, ", ", layer_end, ") and heads [", head_begin,
          ", ", head_end, ") are not all in the ", which, " shard (layers [", shard->layer_begin,
          ", ", shard->layer_begin + shard->num_layers, "), heads [", shard->head_begin, ", ",
          shard->head_begin + shard->num_heads, "))"));
    }
  }
  if (source.head_dim != destination.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat("CopyKvBlocks: head_dim ", source.head_dim,
                                                   " (source) != ", destination.head_dim));
  }
  if (layer_begin >= layer_end || head_begin >= head_end) {
    return absl::InvalidArgumentError("CopyKvBlocks: an empty layer or head range");
  }
  if (num_pairs < 0) return absl::InvalidArgumentError("CopyKvBlocks: num_pairs < 0");
  if (num_pairs == 0) return absl::OkStatus();
  if (block_pairs == nullptr) return absl::InvalidArgumentError("CopyKvBlocks: null block pairs");
  const int arrays = 2 * (layer_end - layer_begin);
  if (num_pairs > (int64_t{1} << 31) / arrays) {
    return absl::InvalidArgumentError(
        absl::StrCat("CopyKvBlocks: ", num_pairs, " block pairs are too many for one launch"));
  }
  const int64_t head_vecs = static_cast<int64_t>(kBlockSize) * source.head_dim / 8;
  const auto block_vecs = [&](const KvShardArrays& s) { return s.num_heads * head_vecs; };
  CopyBlocksKernel<<<static_cast<unsigned>(num_pairs * arrays), kThreads, 0,
                     static_cast<cudaStream_t>(stream.raw())>>>(
      static_cast<const uint4*>(source.base), static_cast<uint4*>(destination.base), block_pairs,
      source.num_blocks * block_vecs(source), destination.num_blocks * block_vecs(destination),
      block_vecs(source), block_vecs(destination), (head_begin - source.head_begin) * head_vecs,
      (head_begin - destination.head_begin) * head_vecs,
      2 * (layer_begin - source.layer_begin), 2 * (layer_begin - destination.layer_begin), arrays,
      (head_end - head_begin) * head_vecs);
  return gpu::internal::CudaStatus(cudaGetLastError(), "CopyKvBlocks launch", stream.device());
}

}  // namespace troupe::gpu::attention
