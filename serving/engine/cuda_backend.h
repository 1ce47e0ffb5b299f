// CudaBackend: ForwardBackend on one NVIDIA GPU, for OPT and LLaMA models in fp16 or bf16, built
// from the project's own GPU layer only: gpu/kernels (embeddings, norms, rotary, activations,
// residual adds), gpu/attention (packed var-length prefill attention, paged decode attention,
// the paged KV cache's writes and block moves) and cuBLAS through gpu/cublas.h. No LibTorch: it
// is the backend that runs on the GPU hosts. It computes what CpuBackend computes (cpu_backend.h),
// with the same cache layout and the same ExportKv/ImportKv bytes, in the model's dtype
// (kv_dtype() is that dtype).
//
// Scope: tensor-parallel degree 1 (the whole model on one GPU); the weight sources already give
// tensor-parallel shards for a later multi-GPU backend. Head dimensions 64 and 128, and grouped
// queries of 1, 2, 4 or 8 heads per kv head (what the attention kernels support).
//
// How a step runs (see cuda_backend.cc): all new tokens of the batch are packed, fresh prompts
// first. Fresh prompts (cached_tokens == 0) attend through the FlashAttention-style prefill kernel;
// every other new token (decodes, and chunks of prompts whose beginning is already cached) is a
// row of the paged decode-attention kernel whose context ends at that token, which is exact causal
// attention over the cached prefix. All work goes on one stream; scratch memory is sized at
// creation for steps of up to max_step_tokens tokens and max_step_sequences sequences, so such
// steps allocate nothing; larger steps grow it once.
//
//   std::unique_ptr<model::WeightSource> weights = model::RandomWeights(/*seed=*/1);
//   absl::StatusOr<std::unique_ptr<ForwardBackend>> backend =
//       CreateCudaBackend(*model::ModelPreset("opt-1.3b"), *weights, CudaBackendOptions{});
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "gpu/dtype.h"
#include "serving/engine/forward_backend.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"

namespace troupe::serving::engine {

struct CudaBackendOptions {
  // The weights', activations' and KV cache's element type: kFloat16 or kBFloat16.
  gpu::DType dtype = gpu::DType::kFloat16;
  int device = 0;
  // Physical KV blocks of 16 tokens (per layer, K and V each). 0 sizes the cache from the free
  // device memory after the weights and the scratch memory, times gpu_memory_utilization.
  int num_kv_blocks = 0;
  // The share of the free memory the cache may take when num_kv_blocks is 0. 0.9 as vLLM's
  // gpu_memory_utilization default, leaving room for cuBLAS's workspace and the CUDA context.
  double gpu_memory_utilization = 0.9;
  // Scratch memory is preallocated for steps of up to this many tokens and sequences: vLLM's
  // scheduler defaults (max_num_batched_tokens 2048, max_num_seqs 256), as in BatcherOptions.
  int max_step_tokens = 2048;
  int max_step_sequences = 256;
  // Threads that read (or generate) the weights while uploading them; 0: one per core, at most 16.
  int load_threads = 0;
};

// CreateCudaBackend uploads every tensor of `config` from `weights` (converted to options.dtype)
// and allocates the KV cache and the scratch memory. A missing or misshapen tensor is the weight
// source's error, naming the tensor; an unsupported shape or option is InvalidArgument naming it;
// too little device memory is ResourceExhausted with the sizes.
absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCudaBackend(
    const model::ModelConfig& config, const model::WeightSource& weights,
    const CudaBackendOptions& options);

}  // namespace troupe::serving::engine
