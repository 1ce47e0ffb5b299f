// Prefill attention: causal self-attention over a packed batch of variable-length prompts,
// FlashAttention style (tiles of queries and keys in shared memory, tensor-core matrix products,
// online softmax; the score matrix never reaches device memory). On H100/H200 with head_dim 128
// the products use Hopper's warpgroup MMAs (wgmma); elsewhere mma.sync.
//
// q is [total_tokens, num_heads, head_dim]; k and v are [total_tokens, num_kv_heads, head_dim];
// output is [total_tokens, num_heads, head_dim]. cu_seqlens (int32, device, batch + 1 entries)
// holds each sequence's first token: sequence b is tokens [cu_seqlens[b], cu_seqlens[b + 1]).
// MHA and GQA (num_heads a multiple of num_kv_heads); head_dim 64 or 128; fp16 or bf16.
//
// The workspace holds the counter that hands out work to the persistent Hopper kernel; each call
// resets it, so one workspace serves any number of calls that do not run concurrently.
//
//   size_t bytes = PrefillAttentionWorkspaceBytes(params);
//   PrefillAttention(DType::kBFloat16, params, q, k, v, cu_seqlens, workspace, bytes, output,
//                    stream);
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "gpu/dtype.h"
#include "gpu/stream.h"

namespace troupe::gpu::attention {

// PrefillKernel picks the implementation. kAuto takes kWgmma for head_dim 128 on compute
// capability 9.0 and kMmaSync otherwise; the others force one (tests and benchmarks run both):
//   kWgmma    warp-specialized: a TMA producer warpgroup, two wgmma consumer warpgroups;
//   kMmaSync  FlashAttention-2 with mma.sync, for any sm_80+ GPU and head_dim 64.
enum class PrefillKernel { kAuto, kMmaSync, kWgmma };

struct PrefillAttentionParams {
  int64_t batch = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int max_seqlen = 0;  // An upper bound of the sequence lengths (sizes the grid).
  int64_t total_tokens = 0;  // cu_seqlens[batch]: the rows of q, k, v and output.
  float scale = 0;     // Usually 1/sqrt(head_dim).
  PrefillKernel kernel = PrefillKernel::kAuto;
};

// PrefillAttentionWorkspaceBytes is the device workspace PrefillAttention needs (a few bytes).
size_t PrefillAttentionWorkspaceBytes(const PrefillAttentionParams& params);

absl::Status PrefillAttention(DType dtype, const PrefillAttentionParams& params, const void* q,
                              const void* k, const void* v, const int32_t* cu_seqlens,
                              void* workspace, size_t workspace_bytes, void* output,
                              Stream& stream);

}  // namespace troupe::gpu::attention
