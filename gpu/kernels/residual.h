// The residual add of a transformer block, with the bias of the projection before it fused in:
// out = x + bias + residual over [rows, cols] in one read of each input and one write.
//
// For a residual add that feeds a norm, ResidualLayerNorm / ResidualRmsNorm in normalization.h
// also produce the normalized rows in the same pass.
//
//   absl::Status s = BiasResidual(DType::kFloat16, attention_out, o_proj_bias, hidden,
//                                 hidden, tokens, 768, stream);
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "gpu/dtype.h"
#include "gpu/stream.h"

namespace troupe::gpu::kernels {

// BiasResidual writes output[r, c] = input[r, c] + bias[c] + residual[r, c] for a row-major
// [rows, cols] tensor, summing in fp32 and rounding once. bias (cols elements) may be null for
// a plain residual add. output may equal input or residual. Only enqueues work on `stream`.
absl::Status BiasResidual(DType dtype, const void* input, const void* bias, const void* residual,
                          void* output, int64_t rows, int64_t cols, Stream& stream);

}  // namespace troupe::gpu::kernels
