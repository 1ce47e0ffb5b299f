// The seam between the host functions of gpu/kernels (.cc: validation, absl::Status) and their
// kernels (.cu: templates per element type). The .cu files see neither Abseil nor gpu/dtype.h,
// so the element type crosses as ElementType and every launcher returns the cudaError_t of its
// launch. Arguments arrive validated.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace troupe::gpu::kernels::internal {

// ElementType mirrors troupe::gpu::DType (see host_checks.h for the conversion).
enum class ElementType { kFloat32, kFloat16, kBFloat16 };

// --- embedding_kernel.cu ---------------------------------------------------------------------

struct EmbeddingLaunch {
  const int32_t* token_ids;
  const void* table;
  const int32_t* positions;     // null: no position embedding
  const void* position_table;   // with positions
  void* output;
  int64_t num_tokens;
  int64_t vocab_size;
  int64_t hidden;
  int64_t num_positions;
  int64_t position_offset;
};
cudaError_t LaunchEmbedding(ElementType type, const EmbeddingLaunch& args, cudaStream_t stream);

// --- normalization_kernel.cu -----------------------------------------------------------------

enum class NormKind { kLayerNorm, kRmsNorm };

struct NormLaunch {
  NormKind kind;
  const void* input;
  const void* bias;        // residual form only; may be null
  const void* residual;    // null: plain norm of `input`
  const void* gamma;
  const void* beta;        // LayerNorm only
  void* sum_output;        // residual form only
  void* output;
  int64_t rows;
  int64_t cols;
  float epsilon;
};
cudaError_t LaunchNorm(ElementType type, const NormLaunch& args, cudaStream_t stream);

// --- rotary_kernel.cu ------------------------------------------------------------------------

// kMaxRotaryDim bounds rotary_dim so that the inverse frequencies travel as a kernel parameter
// (rotary_dim / 2 doubles), computed once on the host in double precision.
inline constexpr int kMaxRotaryDim = 512;

struct RotaryLaunch {
  const int32_t* positions;
  void* query;
  void* key;
  int64_t num_tokens;
  int64_t num_heads;
  int64_t num_kv_heads;
  int64_t head_dim;
  int64_t rotary_dim;
  int64_t query_stride;   // elements between tokens
  int64_t key_stride;
  bool interleaved;       // GPT-J pairs (2i, 2i+1); else NeoX halves (i, i + rotary_dim / 2)
  double inverse_frequencies[kMaxRotaryDim / 2];
};
cudaError_t LaunchRotary(ElementType type, const RotaryLaunch& args, cudaStream_t stream);

// --- activation_kernel.cu and residual_kernel.cu ---------------------------------------------

enum class ActivationFunction { kRelu, kGelu, kGeluTanh, kSilu };

// Flat: output[i] = f(input[i]) for i < count.
cudaError_t LaunchActivation(ElementType type, ActivationFunction function, const void* input,
                             void* output, int64_t count, cudaStream_t stream);
// Rows: output[r, c] = f(input[r, c] + bias[c]).
cudaError_t LaunchBiasActivation(ElementType type, ActivationFunction function, const void* input,
                                 const void* bias, void* output, int64_t rows, int64_t cols,
                                 cudaStream_t stream);
// Gated: output[r, c] = f(input[r, c]) * input[r, cols + c]; input is [rows, 2 * cols].
cudaError_t LaunchGatedActivation(ElementType type, ActivationFunction function,
                                  const void* input, void* output, int64_t rows, int64_t cols,
                                  cudaStream_t stream);
// output[r, c] = input[r, c] + bias[c] + residual[r, c]; bias may be null.
cudaError_t LaunchBiasResidual(ElementType type, const void* input, const void* bias,
                               const void* residual, void* output, int64_t rows, int64_t cols,
                               cudaStream_t stream);

// --- skinny_gemm_kernel.cu -------------------------------------------------------------------

// y[c, r, j] = sum_k x[r, k] w[c * cols + j, k] + bias[c * cols + j] (+ y): see skinny_gemm.h.
struct SkinnyGemmLaunch {
  const void* x;
  const void* w;
  const void* bias;  // may be null
  void* y;
  int rows;          // 1 to 8
  int cols;          // per output block
  int total_cols;    // count * cols
  int64_t depth;     // a multiple of 8
  bool accumulate;
  bool float_output;
};
cudaError_t LaunchSkinnyGemm(ElementType type, const SkinnyGemmLaunch& args, cudaStream_t stream);

}  // namespace troupe::gpu::kernels::internal
