// The paged KV cache's block size and array shape: what CPU code (block managers, references)
// and the CUDA kernels agree on. See paged_kv.h for the layout.
#pragma once

#include <cstdint>

namespace troupe::gpu::attention {

// kBlockSize is the number of tokens per KV block (vLLM's default and DistServe's).
inline constexpr int kBlockSize = 16;

// KvCacheShape describes one layer's K (or V) cache array:
// [num_blocks, num_kv_heads, kBlockSize, head_dim].
struct KvCacheShape {
  int64_t num_blocks = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
};

}  // namespace troupe::gpu::attention
