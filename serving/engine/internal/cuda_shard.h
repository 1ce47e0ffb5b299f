// CudaShard: what one GPU runs of a model in the CUDA backends. A shard holds layers
// [layer_begin, layer_end) (all of them for a whole model) and, under tensor parallelism, rank r
// of `world`'s Megatron shards of those layers and its kv heads' part of the cache. The one-GPU
// backend is a shard of everything (cuda_backend.cc); cuda_parallel.cc runs the ranks of a
// tensor-parallel group on their threads and wraps groups into backends and pipeline stages.
//
// A shard is a ForwardBackend for its cache (ExportKv/ImportKv of the layers and heads it holds,
// in the model's numbering; DeviceKvShards; CopyKvFromDevice); its Forward works only when it
// is the whole model on one rank. Steps go through Run.
//
//   CudaShardSpec spec{/*layer_begin=*/0, /*layer_end=*/12, /*rank=*/1, /*world=*/2,
//                      /*device=*/0, collective};
//   std::unique_ptr<CudaShard> shard = *CreateCudaShard(config, weights, options, spec);
//   ... AllocateCudaCaches({shard.get(), ...}, options) ...
//   absl::StatusOr<std::vector<float>> out = shard->Run(batch, hidden);
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gpu/collective.h"
#include "serving/engine/cuda_backend.h"
#include "serving/engine/forward_backend.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"

namespace troupe::serving::engine::internal {

struct CudaShardSpec {
  int layer_begin = 0;
  int layer_end = 0;
  int rank = 0;
  int world = 1;
  int device = 0;
  // This rank's all-reduce when world > 1; it outlives the shard.
  gpu::Collective* collective = nullptr;
};

class CudaShard : public ForwardBackend {
 public:
  virtual const CudaShardSpec& spec() const = 0;
  bool first() const { return spec().layer_begin == 0; }
  bool last() const { return spec().layer_end == config().num_layers; }

  // Prepare grows the scratch memory for `batch` if it must. A tensor-parallel group prepares
  // every rank before any rank runs, so that an allocation that fails on one rank cannot leave
  // the others waiting in an all-reduce.
  virtual absl::Status Prepare(const std::vector<SequenceStep>& batch) = 0;

  // Run runs the shard's layers over `batch` (already validated). `hidden` is the previous
  // stage's [new tokens, hidden_size] floats, empty on the first stage. Rank 0 returns the
  // logits of each sequence's last new token ([batch, vocab_size]) when the shard ends the model
  // and the hidden states for the next stage otherwise; the other ranks return nothing (they
  // compute the same residual stream).
  virtual absl::StatusOr<std::vector<float>> Run(const std::vector<SequenceStep>& batch,
                                                 const std::vector<float>& hidden) = 0;

  // KvBlockBytes is one block of this shard's cache: its layers' K and V of its kv heads.
  virtual size_t KvBlockBytes() const = 0;
  // AllocateCache allocates the cache (zeroed): num_kv_blocks blocks. Once, before any step.
  virtual absl::Status AllocateCache(int num_kv_blocks) = 0;
  // WeightBytes is what the shard's weights take on its device.
  virtual size_t WeightBytes() const = 0;
};

// CheckCudaOptions checks the model and the options that every CUDA backend shares (dtype, head
// dimension, grouping, sizes, tensor_parallel); the error names the option and the fix.
absl::Status CheckCudaOptions(const model::ModelConfig& config, const CudaBackendOptions& options);

// CreateCudaShard loads the weights `spec` holds onto spec.device and preallocates the scratch
// memory; the cache comes later (AllocateCudaCaches), so that shards that share a GPU can size
// their caches together. options.device is replaced by spec.device.
absl::StatusOr<std::unique_ptr<CudaShard>> CreateCudaShard(const model::ModelConfig& config,
                                                           const model::WeightSource& weights,
                                                           const CudaBackendOptions& options,
                                                           const CudaShardSpec& spec);

// AllocateCudaCaches gives every shard a cache of one size: options.num_kv_blocks, or with 0
// the most blocks every GPU's free memory (times gpu_memory_utilization) affords for all the
// shards on it. Too little memory is ResourceExhausted naming the GPU and the sizes.
absl::Status AllocateCudaCaches(const std::vector<CudaShard*>& shards,
                                const CudaBackendOptions& options);

// CreateCudaTensorParallelBackend is CreateCudaBackend for options.tensor_parallel > 1
// (cuda_parallel.cc).
absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCudaTensorParallelBackend(
    const model::ModelConfig& config, const model::WeightSource& weights,
    const CudaBackendOptions& options);

}  // namespace troupe::serving::engine::internal
