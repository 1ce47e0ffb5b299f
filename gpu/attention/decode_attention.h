// Decode attention over a paged KV cache: one new query token per sequence attends to all the
// sequence's cached tokens (including its own, already written by WriteKv).
//
// MHA and GQA (num_heads a multiple of num_kv_heads, group size 1, 2, 4 or 8), head_dim 64 or
// 128, fp16 or bf16. Long contexts are split into partitions processed by separate thread
// blocks and merged by a second kernel (flash-decoding), so a few long sequences still fill the
// GPU. Groups of 1 and 2 run a streaming kernel (each warp walks its KV blocks with an online
// softmax); groups of 4 and 8 a two-phase one that shares each K and V load among the group.
//
//   size_t bytes = DecodeAttentionWorkspaceBytes(params);
//   PagedDecodeAttention(DType::kFloat16, params, query, key_cache, value_cache, block_tables,
//                        context_lens, workspace, bytes, output, stream);
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "gpu/attention/paged_kv.h"
#include "gpu/dtype.h"
#include "gpu/stream.h"

namespace troupe::gpu::attention {

// A thread block handles one partition of a sequence's context. By default (measured, see
// docs/results/gpu_kernels.md): for group sizes 1 and 2, the largest of 1024, 512 and 256 tokens
// that still gives at least 512 thread blocks; for groups of 4 and 8, 256. Each can be forced.
inline constexpr int kTinyPartitionTokens = 256;
inline constexpr int kSmallPartitionTokens = 512;
inline constexpr int kLargePartitionTokens = 1024;

struct DecodeAttentionParams {
  int64_t batch = 0;
  int num_heads = 0;
  KvCacheShape cache;           // num_kv_heads and head_dim of the caches.
  int max_blocks_per_seq = 0;   // Row length of block_tables.
  int max_context_len = 0;      // An upper bound of context_lens (sizes the split).
  float scale = 0;              // Usually 1/sqrt(head_dim).
  // 0 chooses the partition size as above; 256, 512 or 1024 forces one (for benchmarks).
  int partition_tokens = 0;
};

// DecodePartitionTokens is the partition size PagedDecodeAttention will use for `params`.
int DecodePartitionTokens(const DecodeAttentionParams& params);

// DecodeAttentionWorkspaceBytes is the workspace PagedDecodeAttention needs (0 when no
// sequence needs more than one partition).
size_t DecodeAttentionWorkspaceBytes(const DecodeAttentionParams& params);

// PagedDecodeAttention computes output[b, h, :] = softmax(q·K^T * scale) · V over the first
// context_lens[b] tokens of sequence b. query and output are [batch, num_heads, head_dim];
// block_tables is int32 [batch, max_blocks_per_seq]; context_lens is int32 [batch], each in
// [1, max_context_len].
absl::Status PagedDecodeAttention(DType dtype, const DecodeAttentionParams& params,
                                  const void* query, const void* key_cache,
                                  const void* value_cache, const int32_t* block_tables,
                                  const int32_t* context_lens, void* workspace,
                                  size_t workspace_bytes, void* output, Stream& stream);

}  // namespace troupe::gpu::attention
