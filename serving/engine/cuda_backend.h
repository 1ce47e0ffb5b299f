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
// With CudaBackendOptions::cuda_graphs, pure-decode steps (every sequence one new token after a
// cached prefix, at most min(max_step_sequences, max_step_tokens) sequences) replay a CUDA graph
// of the step's kernels and cuBLAS calls instead of launching them one by one from the host, as
// vLLM does: the host launch overhead, not the kernels, is most of a small decode step. A graph
// is captured after the first step of its key (batch size and decode-attention split) has run
// eagerly, and replays the same launches on the step metadata uploaded before each replay: the
// eager step's kernels on the same inputs. Every other step runs eagerly. CudaGraphStats tells
// how steps ran.
//
//   std::unique_ptr<model::WeightSource> weights = model::RandomWeights(/*seed=*/1);
//   absl::StatusOr<std::unique_ptr<ForwardBackend>> backend =
//       CreateCudaBackend(*model::ModelPreset("opt-1.3b"), *weights, CudaBackendOptions{});
#pragma once

#include <cstdint>
#include <memory>
#include <string>

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
  // Replay pure-decode steps from captured CUDA graphs (see above). Off until validated on a GPU.
  bool cuda_graphs = false;
  // Captured graphs kept, least recently used dropped first. vLLM keeps one graph per batch
  // size it pads to (a few dozen); here a key is a batch size and a decode-attention split (a
  // partition of 256 to 1024 context tokens), and 64 covers a batch-size sweep at a few context
  // lengths. A graph holds launch parameters, not activations: those stay in the scratch memory.
  int max_cuda_graphs = 64;
};

// CudaGraphStats: how a CudaBackend's steps ran, for tests and benchmarks.
struct CudaGraphStats {
  bool enabled = false;       // Whether pure-decode steps use graphs now.
  int64_t graph_steps = 0;    // Steps replayed from a captured graph.
  int64_t eager_steps = 0;    // Steps launched kernel by kernel (a key's first step included).
  int64_t captures = 0;       // Graphs captured and instantiated.
  int64_t failed_keys = 0;    // Keys whose capture, instantiation or launch failed: eager for good.
  int64_t evictions = 0;      // Graphs dropped to stay within max_cuda_graphs.
  int64_t invalidations = 0;  // Times every graph was dropped because the scratch memory moved.
  int64_t cached_graphs = 0;  // Graphs held now.
  std::string last_failure;   // Why the last failed key failed; empty if none did.
};

// CreateCudaBackend uploads every tensor of `config` from `weights` (converted to options.dtype)
// and allocates the KV cache and the scratch memory. A missing or misshapen tensor is the weight
// source's error, naming the tensor; an unsupported shape or option is InvalidArgument naming it;
// too little device memory is ResourceExhausted with the sizes.
absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCudaBackend(
    const model::ModelConfig& config, const model::WeightSource& weights,
    const CudaBackendOptions& options);

// GetCudaGraphStats reads the counters of a backend made by CreateCudaBackend (InvalidArgument
// for any other backend).
absl::StatusOr<CudaGraphStats> GetCudaGraphStats(const ForwardBackend& backend);

// SetCudaGraphsEnabled turns graph replay of a CreateCudaBackend backend on or off from its next
// step, keeping the graphs captured so far: benchmarks time both ways on one backend.
absl::Status SetCudaGraphsEnabled(ForwardBackend& backend, bool enabled);

}  // namespace troupe::serving::engine
