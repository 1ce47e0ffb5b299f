// Token embedding lookup, with the learned position embeddings of OPT (and GPT-2) as an option.
//
// Tables are device memory, row-major [rows, hidden], of one dtype (fp32, fp16 or bf16); ids
// and positions are int32 device arrays. The output is [num_tokens, hidden] of the same dtype.
// Ids cannot be checked on the host (they live on the device), so the kernel checks each one:
// a token id outside [0, vocab_size) yields a zero token embedding, and a position whose row
// (position + position_offset) is outside [0, num_positions) adds nothing. Nothing is clamped
// and nothing outside a table is read. Zeros for foreign ids are also what a vocabulary-parallel
// shard wants before the all-reduce. The calls only enqueue work on `stream`.
//
//   absl::Status s = Embedding(DType::kFloat16, ids, wte, hidden_states, tokens, 50272, 768,
//                              stream);
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "gpu/dtype.h"
#include "gpu/stream.h"

namespace troupe::gpu::kernels {

// kOptPositionOffset is the row offset of OPT's learned positions: OPTLearnedPositionalEmbedding
// in Hugging Face transformers adds 2 to every position (its table has max_positions + 2 rows).
// GPT-2's offset is 0.
inline constexpr int64_t kOptPositionOffset = 2;

// Embedding writes output[t, :] = table[token_ids[t], :] for t < num_tokens.
absl::Status Embedding(DType dtype, const int32_t* token_ids, const void* table, void* output,
                       int64_t num_tokens, int64_t vocab_size, int64_t hidden, Stream& stream);

// EmbeddingWithPositions also adds the position row (in fp32, rounded once):
//   output[t, :] = table[token_ids[t], :] + position_table[positions[t] + position_offset, :]
// position_table has num_positions rows of `hidden` elements.
absl::Status EmbeddingWithPositions(DType dtype, const int32_t* token_ids, const void* table,
                                    const int32_t* positions, const void* position_table,
                                    void* output, int64_t num_tokens, int64_t vocab_size,
                                    int64_t hidden, int64_t num_positions,
                                    int64_t position_offset, Stream& stream);

}  // namespace troupe::gpu::kernels
