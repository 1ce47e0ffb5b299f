// Rotary position embedding (RoPE, Su et al. 2021) applied in place to the query and key heads
// of each token, before attention.
//
// Two layouts of the rotated pairs are supported:
//   kNeox (default): "rotate half" as in GPT-NeoX, LLaMA, Mistral, Qwen (Hugging Face
//     rotate_half, vLLM is_neox_style=True): element i pairs with i + rotary_dim / 2.
//   kGptj: interleaved as in GPT-J (vLLM is_neox_style=False): element 2i pairs with 2i + 1.
// Pair i turns by angle position * theta^(-2i / rotary_dim); the elements of a head from
// rotary_dim on are left alone (partial rotary, e.g. GPT-NeoX rotary_pct = 0.25).
//
// The angle is computed in double and reduced to [-pi, pi] before sin/cos in fp32, so it stays
// exact at large positions; Hugging Face and vLLM form it in fp32 (error ~ position * 6e-8 rad),
// so results differ from theirs by that much at long context, and agree closely below ~4096.
//
//   absl::Status s = RotaryEmbedding(DType::kBFloat16, positions, q, k, tokens, 32, 8, 128, 128,
//                                    RotaryOptions{.theta = 500000.0f}, stream);   // LLaMA-3
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "gpu/dtype.h"
#include "gpu/stream.h"

namespace troupe::gpu::kernels {

enum class RotaryStyle { kNeox, kGptj };

struct RotaryOptions {
  // theta: the frequency base. 10000 in the RoPE paper and LLaMA-1/2; LLaMA-3 uses 500000,
  // Qwen2 1000000.
  float theta = 10000.0f;
  RotaryStyle style = RotaryStyle::kNeox;
  // Elements between consecutive tokens of query / key; 0 means packed (num_heads * head_dim,
  // num_kv_heads * head_dim). Set them when q and k are views into a fused qkv buffer.
  int64_t query_stride = 0;
  int64_t key_stride = 0;
};

// kMaxRotaryDim is the largest rotary_dim supported (head sizes in use are <= 256).
inline constexpr int64_t kMaxRotaryDim = 512;

// RotaryEmbedding rotates query [num_tokens, num_heads, head_dim] and key
// [num_tokens, num_kv_heads, head_dim] in place, token t by positions[t] (int32 on the device,
// any value). rotary_dim must be even and at most head_dim; num_kv_heads must divide num_heads
// (grouped-query attention). Only enqueues work on `stream`.
absl::Status RotaryEmbedding(DType dtype, const int32_t* positions, void* query, void* key,
                             int64_t num_tokens, int64_t num_heads, int64_t num_kv_heads,
                             int64_t head_dim, int64_t rotary_dim, const RotaryOptions& options,
                             Stream& stream);

}  // namespace troupe::gpu::kernels
