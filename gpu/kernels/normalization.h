// Row normalizations over the last dimension of a [rows, cols] tensor: LayerNorm (OPT, GPT-2)
// and RMSNorm (LLaMA, Qwen), plain or fused with the residual add that precedes them in a
// transformer block.
//
// All tensors are device memory of one dtype (fp32, fp16 or bf16), row-major and contiguous;
// gamma and beta have `cols` elements. Arithmetic is fp32. Any cols >= 1 works; rows whose
// pointers are 16-byte aligned and whose cols is a multiple of 8 (fp16/bf16) or 4 (fp32) use
// 16-byte accesses, and rows of up to 32768 (fp16/bf16) columns are read once. The calls only
// enqueue work on `stream` (no allocation, no synchronization).
//
//   absl::Status s = RmsNorm(DType::kBFloat16, hidden, weight, normed, tokens, 4096, 1e-5f,
//                            stream);
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "gpu/dtype.h"
#include "gpu/stream.h"

namespace troupe::gpu::kernels {

// LayerNorm writes output[r, :] = (x - mean(x)) / sqrt(var(x) + epsilon) * gamma + beta for
// x = input[r, :], with the biased variance (as torch.nn.LayerNorm). output may equal input.
absl::Status LayerNorm(DType dtype, const void* input, const void* gamma, const void* beta,
                       void* output, int64_t rows, int64_t cols, float epsilon, Stream& stream);

// RmsNorm writes output[r, :] = x / sqrt(mean(x^2) + epsilon) * gamma for x = input[r, :].
// output may equal input.
absl::Status RmsNorm(DType dtype, const void* input, const void* gamma, void* output,
                     int64_t rows, int64_t cols, float epsilon, Stream& stream);

// ResidualLayerNorm fuses the residual add before a LayerNorm:
//   sum_output[r, :] = input[r, :] + bias + residual[r, :]   (rounded to dtype)
//   output[r, :]     = LayerNorm(sum_output[r, :])
// bias (cols elements) may be null. sum_output may equal input or residual (update the residual
// stream in place); output must differ from sum_output.
absl::Status ResidualLayerNorm(DType dtype, const void* input, const void* bias,
                               const void* residual, const void* gamma, const void* beta,
                               void* sum_output, void* output, int64_t rows, int64_t cols,
                               float epsilon, Stream& stream);

// ResidualRmsNorm is ResidualLayerNorm for RMSNorm (vLLM's fused_add_rms_norm, with an optional
// bias).
absl::Status ResidualRmsNorm(DType dtype, const void* input, const void* bias,
                             const void* residual, const void* gamma, void* sum_output,
                             void* output, int64_t rows, int64_t cols, float epsilon,
                             Stream& stream);

}  // namespace troupe::gpu::kernels
