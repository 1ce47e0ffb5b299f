// Token sampling on the CPU with the GPU sampler's semantics and draws: for the same logits and
// SamplingParams, SampleOnHost returns exactly the tokens that Sample (sampling.h) writes, so a
// seeded request decodes the same text on the CPU backend as on a GPU. No CUDA needed.
//
// Semantics, as in sampling.h: temperature 0 (or top_k 1) is greedy, the argmax with ties to the
// lowest index; otherwise the token is drawn from softmax(logits / temperature) restricted to the
// top_k largest logits, then to the smallest most-likely set of those whose probability
// (renormalized over the top-k set) reaches top_p. NaN logits count as -inf, a row of only
// -inf/NaN yields token 0, tokens tied at the top-k or top-p boundary are all kept, and +inf
// logits make the row's result unspecified (still in [0, vocab), and still the GPU's).
//
// How the draws match: both samplers run the same algorithm (thresholds on order-preserving
// keys found by an 8-bit radix select, top-p masses summed exactly in 32.32 fixed point, then
// the Gumbel-max trick with Philox4x32-10 keyed by (seed, offset)) through the same per-token
// arithmetic, internal/draw_math.h, which uses only correctly rounded float operations.
//
// fp16 and bf16 logits: pass them converted to float (HalfToFloat, BFloat16ToFloat in
// gpu/dtype.h); the conversion is exact, as on the GPU.
//
//   std::vector<SamplingParams> params(batch, SamplingParams{.temperature = 0.7f, .top_p = 0.9f});
//   for (int64_t r = 0; r < batch; ++r) params[r].seed = request_seed[r], params[r].offset = step;
//   absl::StatusOr<std::vector<int32_t>> tokens = SampleOnHost(logits, batch, vocab, params);
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "gpu/sampling/sampling_params.h"

namespace troupe::gpu::sampling {

// SampleOnHost returns one token id per row of `logits` [batch, vocab] (row-major, batch * vocab
// floats), row r drawn with params[r]; params has exactly `batch` entries. It accepts the
// arguments Sample accepts and rejects the others with InvalidArgument.
absl::StatusOr<std::vector<int32_t>> SampleOnHost(absl::Span<const float> logits, int64_t batch,
                                                  int64_t vocab,
                                                  absl::Span<const SamplingParams> params);

// ArgmaxOnHost is SampleOnHost with every row greedy.
absl::StatusOr<std::vector<int32_t>> ArgmaxOnHost(absl::Span<const float> logits, int64_t batch,
                                                  int64_t vocab);

}  // namespace troupe::gpu::sampling
