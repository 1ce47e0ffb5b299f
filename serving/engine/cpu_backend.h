// CpuBackend: ForwardBackend on the CPU through LibTorch (fp32), for OPT and LLaMA models. It is
// the backend of the CPU tests and the embedded default server, and the reference the CUDA
// backend is compared with. The paged KV cache has the GPU layout, one K and one V tensor per
// layer of [num_kv_blocks, num_kv_heads, 16, head_dim].
//
//   std::unique_ptr<model::WeightSource> weights = model::RandomWeights(/*seed=*/1);
//   absl::StatusOr<std::unique_ptr<ForwardBackend>> backend =
//       CreateCpuBackend(*model::ModelPreset("tiny"), *weights, CpuBackendOptions{});
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "serving/engine/forward_backend.h"
#include "serving/engine/stage_backend.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"

namespace troupe::serving::engine {

struct CpuBackendOptions {
  // Physical KV blocks of 16 tokens (per layer, K and V each).
  int num_kv_blocks = 256;
  // The layers a stage holds (CreateCpuStage): [layer_begin, layer_end); -1 is the model's
  // number of layers. CreateCpuBackend holds them all.
  int layer_begin = 0;
  int layer_end = -1;
  // Megatron-style tensor parallelism over this many ranks (column-parallel q/k/v and FFN-in,
  // row-parallel out and FFN-out projections, each rank holding its heads' KV cache), computed
  // one rank after another in this process with the all-reduce as a sum: the layout and the KV
  // head ranges of a tensor-parallel instance, on the CPU. It must divide the heads and KV heads.
  int tensor_parallel = 1;
};

// CreateCpuBackend loads every tensor of `config` from `weights` (as fp32) and allocates the
// cache. A missing or misshapen tensor is the weight source's error, naming the tensor.
absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCpuBackend(const model::ModelConfig& config,
                                                                 const model::WeightSource& weights,
                                                                 const CpuBackendOptions& options);

// CreateCpuStage loads only what layers [options.layer_begin, options.layer_end) need (and the
// embedding on the first stage, the final norm and output head on the last) for a pipeline stage
// (stage_backend.h). A layer range outside the model is an error naming it.
absl::StatusOr<std::unique_ptr<StageBackend>> CreateCpuStage(const model::ModelConfig& config,
                                                             const model::WeightSource& weights,
                                                             const CpuBackendOptions& options);

}  // namespace troupe::serving::engine
