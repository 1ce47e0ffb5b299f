// Naive CPU references for the attention kernels, in double precision, for tests and the
// benchmark's spot checks. Inputs are floats already rounded to the kernel's element type.
#pragma once

#include <cstdint>
#include <vector>

#include "gpu/attention/kv_layout.h"

namespace troupe::gpu::attention {

// ReferenceAttention computes softmax(q k^T * scale [causal]) v for one sequence and one head.
// q is [q_len, head_dim], k and v are [kv_len, head_dim]; with `causal`, query i (the last
// q_len of kv_len positions) sees keys 0 .. kv_len - q_len + i.
std::vector<double> ReferenceAttention(const float* q, const float* k, const float* v, int q_len,
                                       int kv_len, int head_dim, int q_stride, int kv_stride,
                                       float scale, bool causal);

// ReferencePagedDecode computes the expected output [batch, num_heads, head_dim] of
// PagedDecodeAttention from host copies of its inputs.
std::vector<double> ReferencePagedDecode(const std::vector<float>& query,
                                         const std::vector<float>& key_cache,
                                         const std::vector<float>& value_cache,
                                         const std::vector<int32_t>& block_tables,
                                         const std::vector<int32_t>& context_lens, int num_heads,
                                         const KvCacheShape& shape, int max_blocks_per_seq,
                                         float scale);

// ReferencePrefill computes the expected output [total_tokens, num_heads, head_dim] of
// PrefillAttention (causal, packed variable-length batch).
std::vector<double> ReferencePrefill(const std::vector<float>& q, const std::vector<float>& k,
                                     const std::vector<float>& v,
                                     const std::vector<int32_t>& cu_seqlens, int num_heads,
                                     int num_kv_heads, int head_dim, float scale);

}  // namespace troupe::gpu::attention
