// The CUDA backend's test reference: CpuBackend's forward pass written out in plain C++ (fp32
// storage, double accumulation), with no LibTorch.
//
// Why it exists: cuda_backend_test runs on the GPU hosts, where LibTorch cannot go (Debian's
// LibTorch needs about 500 MB of libraries; ARCHITECTURE.md, "GPU hosts"), so it cannot link
// CpuBackend. This reference can. cuda_backend_reference_test (a CPU test) checks that it
// computes CpuBackend's logits, caches and KV bytes; cuda_backend_test then checks the CUDA
// backend against it. It is slow (loops) and meant for the tiny test models only.
//
// RoundedWeights gives the reference (or CpuBackend) exactly the fp16/bf16 weights the GPU
// holds, so that a comparison measures the kernels' arithmetic, not the weights' rounding.
//
//   std::unique_ptr<model::WeightSource> random = model::RandomWeights(1);
//   std::unique_ptr<model::WeightSource> rounded = RoundedWeights(*random, gpu::DType::kFloat16);
//   absl::StatusOr<std::unique_ptr<ForwardBackend>> reference =
//       CreateReferenceBackend(config, *rounded, /*num_kv_blocks=*/64);
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gpu/dtype.h"
#include "serving/engine/forward_backend.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"

namespace troupe::serving::engine {

// CreateReferenceBackend is a ForwardBackend with CpuBackend's semantics: fp32 KV cache of the
// GPU layout, kv_dtype() kFloat32, the same ExportKv/ImportKv bytes.
absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateReferenceBackend(
    const model::ModelConfig& config, const model::WeightSource& weights, int num_kv_blocks);

// CudaTestModels are the test presets tiny (OPT) and tiny-llama (grouped-query) reshaped to the
// head dimensions the attention kernels support (64, 128; the presets' is 16), and to each
// decode-kernel variant: tiny-d64 and tiny-d128 (OPT, groups of 1), tiny-llama-d64 (groups of
// 2, the streaming decode kernel), tiny-llama-g4 (groups of 4, the two-phase decode kernel).
// Vocabulary, layers, context and norms are the presets'.
std::vector<model::ModelConfig> CudaTestModels();

// TestScript is a fixed sequence of steps over kTestScriptBlocks cache blocks that covers what
// Forward must handle: a prefill batch of odd lengths (1 to 301 tokens, blocks out of order),
// decodes (one context past 256 tokens, so decode attention splits it), a mixed batch (a fresh
// prompt, decodes, a chunk after a cached prefix that crosses a block boundary), and a prompt
// prefilled in three chunks whose boundaries are not block-aligned. Tokens are seeded random.
struct ScriptStep {
  std::string what;
  std::vector<SequenceStep> batch;
};
inline constexpr int kTestScriptBlocks = 64;
std::vector<ScriptStep> TestScript(int vocab_size);

// RelativeError is ||a - b|| / ||b|| (infinity when the sizes differ).
double RelativeError(const std::vector<float>& a, const std::vector<float>& b);

// RoundedWeights wraps `source` (which must outlive it): every tensor is loaded as `dtype` and
// then converted to the dtype asked for.
std::unique_ptr<model::WeightSource> RoundedWeights(const model::WeightSource& source,
                                                    gpu::DType dtype);

}  // namespace troupe::serving::engine
