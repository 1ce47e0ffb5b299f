// CudaBackend: ForwardBackend on NVIDIA GPUs (one, or several in parallel), for OPT and LLaMA models in fp16 or bf16, built
// from the project's own GPU layer only: gpu/kernels (embeddings, norms, rotary, activations,
// residual adds), gpu/attention (packed var-length prefill attention, paged decode attention,
// the paged KV cache's writes and block moves) and cuBLAS through gpu/cublas.h. No LibTorch: it
// is the backend that runs on the GPU hosts. It computes what CpuBackend computes (cpu_backend.h),
// with the same cache layout and the same ExportKv/ImportKv bytes, in the model's dtype
// (kv_dtype() is that dtype).
//
// Scope: head dimensions 64 and 128, and grouped queries of 1, 2, 4 or 8 heads per kv head (what
// the attention kernels support).
//
// Parallelism (cuda_parallel.cc). CreateCudaStage holds layers [layer_begin, layer_end) only, as
// one stage of a pipeline (pipeline_backend.h chains stages, each in an actor of its own): it
// loads those layers (and the embeddings on the first stage, the final norm and the head on the
// last), takes the previous stage's hidden states (the residual stream, fp32; fp16/bf16 -> fp32
// -> fp16/bf16 is exact) and applies its first layer's input norm itself, since within a model
// that norm is fused into the previous layer's last residual add. A pipeline of CUDA stages
// computes what the whole model does, bit for bit, when a step is not split into micro-batches.
// With tensor_parallel > 1 (CreateCudaBackend, and each stage of CreateCudaStage) the model is
// split the Megatron way over that many ranks: rank r holds column-parallel shards of q, k, v and
// fc1 (LLaMA: gate and up) and row-parallel shards of the out and fc2 (down) projections, its
// heads, and kv heads [r * kv / tp, (r + 1) * kv / tp) of the cache; the partial outputs of the
// out and down projections are all-reduced (gpu/collective.h: NCCL between distinct GPUs, the
// in-process collective for ranks that share one) before the bias, residual add and norm (so the
// bias is added once). The embeddings, the final norm and the head stay whole on every rank
// (the simplest split: every rank computes the same residual stream; rank 0 computes the
// logits). Each rank runs on a thread of its own (cuda_rank_threads.h). CUDA graphs are refused
// with tensor_parallel > 1 (the in-process collective's host barrier cannot be captured); a
// tensor-parallel step is all-reduced in the model's dtype, so it agrees with the one-GPU backend
// to fp16/bf16 precision, not bit for bit. ExportKv/ImportKv take each head range from the ranks
// and each layer range from the stages that hold it, so KV moves between instances of any
// degrees; DeviceKvShards lists every rank's (and stage's) shard.
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
// how steps ran. Pipeline stages of one rank replay graphs the same way (a stage's hidden states
// go in and out through the scratch memory too).
//
//   std::unique_ptr<model::WeightSource> weights = model::RandomWeights(/*seed=*/1);
//   absl::StatusOr<std::unique_ptr<ForwardBackend>> backend =
//       CreateCudaBackend(*model::ModelPreset("opt-1.3b"), *weights, CudaBackendOptions{});
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gpu/dtype.h"
#include "serving/engine/cuda_parallel_plan.h"
#include "serving/engine/forward_backend.h"
#include "serving/engine/stage_backend.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"

namespace troupe::serving::engine {

struct CudaBackendOptions {
  // The weights', activations' and KV cache's element type: kFloat16 or kBFloat16.
  gpu::DType dtype = gpu::DType::kFloat16;
  int device = 0;
  // Megatron tensor parallelism over this many ranks (see above); it must divide the model's
  // heads, kv heads and FFN size. Rank r runs on tensor_parallel_devices[r], or, when that is
  // empty, on `device` like every other rank (the in-process collective sums ranks that share a
  // GPU).
  int tensor_parallel = 1;
  std::vector<int> tensor_parallel_devices;
  // The layers CreateCudaStage holds: [layer_begin, layer_end); -1 is the model's number of
  // layers. CreateCudaBackend holds them all.
  int layer_begin = 0;
  int layer_end = -1;
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
  // Products of at most this many token rows (a decode step of a small batch) run on the skinny
  // GEMM of gpu/kernels/skinny_gemm.h instead of cuBLAS; 0 turns it off, 8 is its most. 1: on an
  // H200 (docs/results/serving_gpu.md, run 5) it beat cuBLAS at one row (OPT-13B step 7.63 vs
  // 7.82 ms, OPT-1.3B 1.44 vs 1.48), tied at two, and lost from four rows on, where its fp32
  // FMAs per weight byte grow with the rows and the kernel stops being bandwidth-bound.
  int skinny_gemm_max_rows = 1;
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

// CreateCudaBackend uploads every tensor of `config` from `weights` (converted to options.dtype;
// each tensor-parallel rank its shards) and allocates the KV cache and the scratch memory. A
// missing or misshapen tensor is the weight source's error, naming the tensor; an unsupported
// shape or option (a tensor_parallel that does not divide the heads, a device that does not
// exist) is an error naming it; too little device memory is ResourceExhausted with the sizes.
absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCudaBackend(
    const model::ModelConfig& config, const model::WeightSource& weights,
    const CudaBackendOptions& options);

// CreateCudaStage is one pipeline stage (stage_backend.h): layers [options.layer_begin,
// options.layer_end) over options.tensor_parallel ranks. A layer range outside the model is
// InvalidArgument naming it. With num_kv_blocks 0, stages that share a GPU and are made one by
// one size their caches differently, which a pipeline refuses: use CreateCudaStages then.
absl::StatusOr<std::unique_ptr<StageBackend>> CreateCudaStage(const model::ModelConfig& config,
                                                              const model::WeightSource& weights,
                                                              const CudaBackendOptions& options);

// CreateCudaStages makes every stage of `plan` (cuda_parallel_plan.h: each stage's layers and
// its ranks' devices; options.device, tensor_parallel, tensor_parallel_devices, layer_begin and
// layer_end are ignored) with one cache size: options.num_kv_blocks, or with 0 the most blocks
// that every GPU's free memory affords for the shards it holds, once all weights are in place.
absl::StatusOr<std::vector<std::unique_ptr<StageBackend>>> CreateCudaStages(
    const model::ModelConfig& config, const model::WeightSource& weights,
    const CudaBackendOptions& options, const CudaParallelPlan& plan);

// GetCudaGraphStats reads the counters of a one-GPU backend made by CreateCudaBackend
// (InvalidArgument for any other backend, tensor-parallel ones included).
absl::StatusOr<CudaGraphStats> GetCudaGraphStats(const ForwardBackend& backend);

// SetCudaGraphsEnabled turns graph replay of a CreateCudaBackend backend on or off from its next
// step, keeping the graphs captured so far: benchmarks time both ways on one backend.
absl::Status SetCudaGraphsEnabled(ForwardBackend& backend, bool enabled);

// SetSkinnyGemmMaxRows sets CudaBackendOptions::skinny_gemm_max_rows of a CreateCudaBackend
// backend from its next step (dropping the graphs captured so far): benchmarks time the skinny
// GEMM against cuBLAS on one backend.
absl::Status SetSkinnyGemmMaxRows(ForwardBackend& backend, int rows);

}  // namespace troupe::serving::engine
