// SkinnyGemm: y = x · wᵀ (+ bias) for a handful of rows of x, the shape of a decode step's
// projections (a batch of 1 to 8 new tokens against a [cols, depth] weight).
//
// At such shapes a GEMM reads every weight once and does almost no arithmetic per byte, so its
// time is the weights' bytes over the bandwidth it sustains. A general GEMM library tiles for
// reuse that is not there; this kernel streams each weight row with 16-byte loads, several in
// flight per thread, and keeps one fp32 accumulator per (row, column) in registers. The bias,
// a batched weight ([count, cols, depth], each block of `cols` rows written to its own output)
// and accumulation onto y are fused.
//
//   SkinnyGemmArgs qkv{.dtype = DType::kFloat16, .x = normed, .w = qkv_w, .bias = qkv_b,
//                      .y = qkv, .rows = batch, .cols = hidden, .depth = hidden, .count = 3};
//   if (SkinnyGemmFits(qkv)) TROUPE_RETURN_IF_ERROR(SkinnyGemm(qkv, stream));
//
// The math is fp32; each output is rounded once to output_dtype. The call only enqueues.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "gpu/dtype.h"
#include "gpu/stream.h"

namespace troupe::gpu::kernels {

// kMaxSkinnyRows is the most rows of x one SkinnyGemm takes.
inline constexpr int64_t kMaxSkinnyRows = 8;

struct SkinnyGemmArgs {
  // x's and w's element type (kFloat16 or kBFloat16), and y's (the same, or kFloat32).
  DType dtype = DType::kFloat16;
  DType output_dtype = DType::kFloat16;
  const void* x = nullptr;     // [rows, depth], 16-byte aligned
  const void* w = nullptr;     // [count * cols, depth], 16-byte aligned
  const void* bias = nullptr;  // [count * cols] of dtype, or null
  void* y = nullptr;           // [count, rows, cols] of output_dtype
  int64_t rows = 0;            // 1 to kMaxSkinnyRows
  int64_t cols = 0;
  int64_t depth = 0;  // a multiple of 8 (one 16-byte load)
  int64_t count = 1;
  // When true, y += the product (a residual or a partial sum) instead of y = the product.
  bool accumulate = false;
};

// SkinnyGemmFits is whether SkinnyGemm takes these arguments (shape, types and alignment; not the
// stream): callers use it to choose between this kernel and a general GEMM.
bool SkinnyGemmFits(const SkinnyGemmArgs& args);

// SkinnyGemm enqueues y[c, r, j] = Σ_k x[r, k] · w[c·cols + j, k] + bias[c·cols + j] (+ y[c, r, j]
// when accumulating). Arguments SkinnyGemmFits refuses are InvalidArgument, naming the argument.
absl::Status SkinnyGemm(const SkinnyGemmArgs& args, Stream& stream);

}  // namespace troupe::gpu::kernels
