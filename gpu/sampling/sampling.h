// Token sampling from logits: greedy, temperature, top-k and top-p (nucleus), per row, seeded
// and reproducible.
//
// Each row of logits [batch, vocab] (fp32, fp16 or bf16, device memory) gets its own
// SamplingParams and yields one int32 token id. A row with temperature 0 is greedy: the argmax,
// ties to the lowest index. Other rows draw from softmax(logits / temperature) restricted to the
// top_k most likely tokens and then to the smallest set of those whose probability reaches top_p
// (renormalized over the top-k set, as Hugging Face and vLLM apply them). Draws are seeded and
// counter-based (Philox4x32-10): the token depends only on the row's logits, seed and offset,
// so the same request gives the same tokens on every run, in any batch, on any GPU, and on the
// CPU: SampleOnHost (host_sampling.h) draws the same tokens from the same logits.
//
// Edge cases, documented rather than checked on the device: NaN logits count as -inf; a row of
// only -inf/NaN yields token 0; tokens tied with the k-th largest logit (or at the top-p
// boundary) are all kept; +inf logits make the row's result unspecified (still in [0, vocab)).
//
// One block per row does the work: a greedy or plain-temperature row reads its logits once,
// top-k adds 4 passes, top-p 5. No workspace is needed and nothing synchronizes: the call only
// enqueues kernels on `stream` (one per 512 rows; the parameters travel as kernel arguments).
//
//   std::vector<SamplingParams> params(batch, SamplingParams{.temperature = 0.7f, .top_p = 0.9f});
//   for (int64_t r = 0; r < batch; ++r) params[r].seed = request_seed[r], params[r].offset = step;
//   absl::Status s = Sample(DType::kBFloat16, logits, tokens, batch, 128256, params, stream);
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "gpu/dtype.h"
#include "gpu/sampling/sampling_params.h"
#include "gpu/stream.h"

namespace troupe::gpu::sampling {

// Sample writes token_ids[r] (int32, device memory) for each row r < batch of `logits`, with
// params[r]; params has exactly `batch` entries (host memory, read before the call returns).
absl::Status Sample(DType dtype, const void* logits, int32_t* token_ids, int64_t batch,
                    int64_t vocab, absl::Span<const SamplingParams> params, Stream& stream);

// Argmax is Sample with every row greedy.
absl::Status Argmax(DType dtype, const void* logits, int32_t* token_ids, int64_t batch,
                    int64_t vocab, Stream& stream);

}  // namespace troupe::gpu::sampling
