// Activation functions of transformer MLPs, plain, after a bias, and gated (SwiGLU/GeGLU).
//
// Which model uses which: OPT uses ReLU; GPT-2 uses the tanh approximation of GELU ("gelu_new",
// kGeluTanh); BERT, GPT-NeoX and Falcon use the exact erf GELU (kGelu); LLaMA, Mistral and Qwen
// use SwiGLU (SiluAndMul); Gemma uses GeGLU with tanh GELU (GatedActivation with kGeluTanh).
//
// Tensors are device memory of one dtype (fp32, fp16 or bf16), row-major and contiguous; math is
// fp32 and each output is rounded once. The calls only enqueue work on `stream`.
//
//   // LLaMA MLP: gate_up is [tokens, 2 * 14336] = [gate | up]; act is [tokens, 14336].
//   absl::Status s = SiluAndMul(DType::kBFloat16, gate_up, act, tokens, 14336, stream);
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "gpu/dtype.h"
#include "gpu/stream.h"

namespace troupe::gpu::kernels {

enum class ActivationKind {
  kRelu,      // max(x, 0)
  kGelu,      // x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2)))
  kGeluTanh,  // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
  kSilu,      // x * sigmoid(x)
};

// ActivationName returns "relu", "gelu", "gelu_tanh" or "silu".
const char* ActivationName(ActivationKind kind);

// Activation writes output[i] = f(input[i]) for i < count. output may equal input.
absl::Status Activation(DType dtype, ActivationKind kind, const void* input, void* output,
                        int64_t count, Stream& stream);

// BiasActivation writes output[r, c] = f(input[r, c] + bias[c]) over [rows, cols] (the bias of
// the linear layer before the activation, fused). output may equal input.
absl::Status BiasActivation(DType dtype, ActivationKind kind, const void* input,
                            const void* bias, void* output, int64_t rows, int64_t cols,
                            Stream& stream);

// GatedActivation reads input [rows, 2 * cols], each row laid out [gate | up] (vLLM's merged
// gate_up_proj), and writes output[r, c] = f(gate[r, c]) * up[r, c] to [rows, cols]. output must
// not overlap input.
absl::Status GatedActivation(DType dtype, ActivationKind kind, const void* input, void* output,
                             int64_t rows, int64_t cols, Stream& stream);

// SiluAndMul is GatedActivation with SiLU: SwiGLU, as vLLM's SiluAndMul.
absl::Status SiluAndMul(DType dtype, const void* input, void* output, int64_t rows, int64_t cols,
                        Stream& stream);

}  // namespace troupe::gpu::kernels
