// The paged KV cache layout and the kernels that move KV in and out of it.
//
// One layer's cache is two device arrays, K and V, of shape
//   [num_blocks, num_kv_heads, kBlockSize, head_dim]
// so that one (block, head) is kBlockSize * head_dim contiguous elements (4 KiB for fp16,
// head_dim 128): decode attention reads them with full-width loads. A sequence owns a list of
// blocks (its row of the block table); its token at position p lives in block
// block_table[p / kBlockSize], slot p % kBlockSize.
//
//   WriteKv(...)        new tokens' K and V ([tokens, num_kv_heads, head_dim]) into their slots;
//   GatherKvBlocks(...) blocks (a head range of them) into a contiguous buffer, for migration;
//   ScatterKvBlocks(...) the inverse, on the receiving side;
//   CopyKvBlocks(...)   blocks straight from one cache to another (another device's or another
//                       process's, mapped into this one), all layers and heads in one launch.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "gpu/attention/kv_layout.h"
#include "gpu/dtype.h"
#include "gpu/stream.h"

namespace troupe::gpu::attention {

// WriteKv stores key/value [num_tokens, num_kv_heads, head_dim] into the caches at
// slot_mapping[t] = block * kBlockSize + slot (int32, device). A negative slot skips the token
// (padding).
absl::Status WriteKv(DType dtype, const void* key, const void* value, const int32_t* slot_mapping,
                     int64_t num_tokens, const KvCacheShape& shape, void* key_cache,
                     void* value_cache, Stream& stream);

// GatherKvBlocks copies heads [head_begin, head_end) of the listed blocks (int32 ids, device) of
// one cache array into `packed` = [num_listed, head_end - head_begin, kBlockSize, head_dim].
absl::Status GatherKvBlocks(DType dtype, const void* cache, const KvCacheShape& shape,
                            const int32_t* block_ids, int64_t num_listed, int head_begin,
                            int head_end, void* packed, Stream& stream);

// ScatterKvBlocks is the inverse of GatherKvBlocks: `packed` into the listed blocks' heads.
absl::Status ScatterKvBlocks(DType dtype, const void* packed, const int32_t* block_ids,
                             int64_t num_listed, int head_begin, int head_end,
                             const KvCacheShape& shape, void* cache, Stream& stream);

// KvShardArrays describes a whole KV cache (or one rank's or stage's part of it) as one device
// allocation of layer arrays: [num_layers][K, V][num_blocks][num_heads][kBlockSize][head_dim],
// holding the model's layers [layer_begin, layer_begin + num_layers) and kv heads
// [head_begin, head_begin + num_heads).
struct KvShardArrays {
  void* base = nullptr;
  int64_t num_blocks = 0;
  int layer_begin = 0;
  int num_layers = 0;
  int head_begin = 0;
  int num_heads = 0;
  int head_dim = 0;
};

// CopyKvBlocks copies, for each i < num_pairs, block block_pairs[2i] of `source` into block
// block_pairs[2i + 1] of `destination` (int32 pairs, device memory), for the model's layers
// [layer_begin, layer_end) and kv heads [head_begin, head_end), which both shards must hold. One
// launch moves every pair, layer, K/V and head: one (pair, layer, K or V) is a contiguous run of
// (head_end - head_begin) * kBlockSize * head_dim elements on both sides. `source` may be on
// another device (peer access enabled) or another process's memory (a CUDA IPC mapping); the
// kernel runs on `stream`'s device.
absl::Status CopyKvBlocks(DType dtype, const KvShardArrays& source,
                          const KvShardArrays& destination, const int32_t* block_pairs,
                          int64_t num_pairs, int layer_begin, int layer_end, int head_begin,
                          int head_end, Stream& stream);

}  // namespace troupe::gpu::attention
