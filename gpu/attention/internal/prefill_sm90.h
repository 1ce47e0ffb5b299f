// The Hopper (sm_90a) prefill attention kernel, launched by PrefillAttention for head_dim 128
// on H100/H200. Compiled in its own library with -gencode=arch=compute_90a,code=sm_90a.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace troupe::gpu::attention::internal {

// LaunchPrefillSm90Tma runs causal varlen attention with head_dim 128 in the warp-specialized
// kernel (TMA producer, two wgmma consumers); see prefill_attention.h for the layouts.
// total_tokens is cu_seqlens[batch], the rows of q, k and v; `bf16` selects bfloat16, else fp16.
// The kernel is persistent: it runs min(sm_count, work items) blocks of one per SM, which take
// work from a counter in `workspace` (kPrefillSm90WorkspaceBytes, reset by the launch).
cudaError_t LaunchPrefillSm90Tma(bool bf16, const void* q, const void* k, const void* v,
                                 const int32_t* cu_seqlens, int64_t batch, int64_t total_tokens,
                                 int num_heads, int num_kv_heads, int max_seqlen, float scale,
                                 int sm_count, void* workspace, void* output,
                                 cudaStream_t stream);

inline constexpr size_t kPrefillSm90WorkspaceBytes = 16;

}  // namespace troupe::gpu::attention::internal
