// The forward pass of cuda_backend.h, step by step against CpuBackend (cpu_backend.cc):
//
//   x      = embed[ids] (+ positions[pos + 2] for OPT)                     [T, hidden]
//   per layer:
//     h    = Norm1(x)              (fused with the previous layer's residual add)
//     q,k,v= h·Wqᵀ+bq, h·Wkᵀ+bk, h·Wvᵀ+bv  (one batched GEMM; rotary on q, k for LLaMA)
//     cache[slot(t)] = k, v        (WriteKv, every new token, before attention)
//     a    = attention(q, cache)   (prefill kernel for fresh prompts, paged decode otherwise)
//     x    = x + a·Woᵀ + bo ; h = Norm2(x)            (ResidualLayerNorm / ResidualRmsNorm)
//     x    = x + MLP(h)            (OPT: relu(h·W1ᵀ+b1)·W2ᵀ+b2; LLaMA: (silu(h·Gᵀ)*(h·Uᵀ))·Dᵀ)
//   logits = FinalNorm(x)[last rows] · headᵀ   (fp32 output; OPT's head is the token embedding)
//
// Row-major everywhere; a Linear weight is [out, in], so every projection is a GEMM with
// transpose_b (gpu/gemm_args.h).
//
// A CudaBackend is one shard (internal/cuda_shard.h): layers [layer_begin, layer_end) of rank r
// of `world`. What changes for a shard that is not the whole model on one rank:
//   - a stage after the first starts from the previous stage's hidden states (fp32, uploaded
//     with the step's metadata and converted by SumBuffers) instead of the embeddings, and
//     applies its first layer's Norm1 itself;
//   - a stage before the last ends with the plain residual add x += MLP(h) + b (BiasResidual):
//     the next layer's Norm1, which a whole model fuses here, is the next stage's. Both kernels
//     round x + b + input the same way, and Norm1 of the rounded x is what the fused kernel
//     computes, so a pipeline is bit-exact with the whole model;
//   - a rank holds heads_ = heads / world query heads, kv_heads_ kv heads (its cache's) and
//     ffn_ = ffn / world FFN columns; the outputs of the out and down projections are partial
//     sums, all-reduced (gpu::Collective) before ResidualNorm adds the bias, once.
//
// CUDA graphs (CudaBackendOptions::cuda_graphs). EnqueueStep, everything between the metadata
// upload and the logits download, reads the step only through device memory (ids, positions,
// slots, context lengths, block tables in the scratch arena) except for host scalars: the row
// count T (= B for a pure decode), and the decode-attention launch's max_context_len and
// max_blocks_per_seq. max_context_len sets the grid: the partition size P (DecodePartitionTokens:
// 256, 512 or 1024 tokens, from the batch and the context) and the partition count N =
// ceil(max_context / P). A graph's key is (B, P, N), and it is captured with max_context_len =
// N * P and block tables N * P / 16 blocks wide, the top of the bucket: for every max context
// in (P (N - 1), N P] the kernel then picks the same P and N (checked in GraphKeyFor), so the
// replay launches exactly what the eager step would, and the kernel reads the real context
// lengths from device memory (partitions past a sequence's end return at once, the merge walks
// only the partitions a context uses). Bucketing wider (several N per graph) would also be
// correct, but N = 1 writes the output directly where N > 1 merges, and P itself may change with
// the context, so the replay would round differently from the eager step. The graph's layout in
// the scratch arena is a function of the key, so each replay uploads the step's metadata to the
// same offsets first; if the scratch or the column of ones moves (a larger step grew it), every
// graph is dropped and recaptured on its next use.
#include "serving/engine/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "actors/status_macros.h"
#include "gpu/attention/decode_attention.h"
#include "gpu/attention/paged_kv.h"
#include "gpu/attention/prefill_attention.h"
#include "gpu/buffer.h"
#include "gpu/collective.h"
#include "gpu/collective_kernels.h"
#include "gpu/cublas.h"
#include "gpu/cuda_allocator.h"
#include "gpu/device.h"
#include "gpu/kernels/activation.h"
#include "gpu/kernels/embedding.h"
#include "gpu/kernels/normalization.h"
#include "gpu/kernels/residual.h"
#include "gpu/kernels/rotary.h"
#include "gpu/kernels/skinny_gemm.h"
#include "gpu/memory_pool.h"
#include "gpu/sampling/sampling.h"
#include "gpu/stream.h"
#include "serving/engine/cuda_parallel_plan.h"
#include "serving/engine/internal/cuda_kv_copy.h"
#include "serving/engine/internal/cuda_shard.h"

namespace troupe::serving::engine {
namespace {

using gpu::DType;
using model::ModelConfig;
using model::ModelFamily;

// Every region of the scratch and weight arenas starts on a 256-byte boundary (cudaMalloc's
// alignment, which the vectorized kernels, TMA and cuBLAS's fast paths want).
constexpr size_t kAlignment = 256;
size_t AlignUp(size_t bytes) { return (bytes + kAlignment - 1) / kAlignment * kAlignment; }

// The decode-attention kernel's grid holds at most this many sequences (rows) per launch.
constexpr int64_t kMaxDecodeRowsPerLaunch = 65535;
// Upper bound of load_threads = 0 (one per core).
constexpr int kMaxLoadThreads = 16;

absl::Status CudaCall(cudaError_t code, const char* call, int device) {
  if (code == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("CudaBackend: ", call, " failed on cuda:", device, ": ",
                                          cudaGetErrorName(code), " (", cudaGetErrorString(code),
                                          ")"));
}

// In prefixes a failure with where it happened; OK passes through.
absl::Status In(absl::Status status, const std::string& where) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat("CudaBackend: ", where, ": ", status.message()));
}

int64_t NumElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Device pointers of one layer's weights. Fused tensors are adjacent in memory: q, k, v weights
// (and biases) as [q; k; v], LLaMA's gate and up as [gate; up].
struct LayerWeights {
  const void* norm1_w = nullptr;
  const void* norm1_b = nullptr;  // OPT
  const void* qkv_w = nullptr;
  const void* qkv_b = nullptr;  // OPT
  const void* o_w = nullptr;
  const void* o_b = nullptr;  // OPT
  const void* norm2_w = nullptr;
  const void* norm2_b = nullptr;  // OPT
  const void* up_w = nullptr;     // OPT fc1 [ffn, h]; LLaMA [gate; up] [2 ffn, h]
  const void* up_b = nullptr;     // OPT fc1 bias
  const void* down_w = nullptr;   // OPT fc2; LLaMA down
  const void* down_b = nullptr;   // OPT fc2 bias
};

// The packed rows of one step and what the kernels need to know about them (host side).
struct StepPlan {
  int64_t tokens = 0;        // T: all new tokens
  int64_t sequences = 0;     // B
  int64_t prefill_seqs = 0;  // P: sequences with cached_tokens == 0 (rows [0, prefill_rows))
  int64_t prefill_rows = 0;
  int max_prefill_len = 0;
  int64_t paged_rows = 0;  // rows [prefill_rows, T): one decode-attention row each
  int max_blocks = 0;      // row length of the paged rows' block tables
  int max_context = 0;
  bool last_rows_identity = false;  // last_rows[b] == b and T == B: no gather needed
  size_t decode_workspace = 0;
  std::vector<int32_t> ids, positions, slots, cu_seqlens, context_lens, block_tables, last_rows;
};

// Byte offsets of one step's regions in the scratch arena.
struct StepLayout {
  size_t ids, positions, slots, cu_seqlens, context_lens, block_tables, last_rows;
  size_t ints_end;
  // A stage's hidden states in fp32 [T, hidden]: the previous stage's (uploaded), or this one's
  // for the next (downloaded). Empty for a whole model.
  size_t hidden;
  size_t upload_end;  // [0, upload_end) is uploaded from the host in one copy
  size_t x, normed, qkv, attn, proj, mlp, act, gathered, logits, prefill_ws, decode_ws;
  size_t total;
};

// GraphKey identifies a pure-decode step's graph: B sequences, decode attention split into
// `partitions` partitions of `partition_tokens` tokens (see the file comment).
struct GraphKey {
  int64_t batch = 0;
  int partition_tokens = 0;
  int partitions = 0;

  // context is the largest max context of the bucket, which the graph is captured with.
  int context() const { return partition_tokens * partitions; }
  int blocks() const { return (context() + kKvBlockTokens - 1) / kKvBlockTokens; }
  bool operator<(const GraphKey& other) const {
    return std::tie(batch, partition_tokens, partitions) <
           std::tie(other.batch, other.partition_tokens, other.partitions);
  }
};

// GraphExec owns an instantiated CUDA graph.
class GraphExec {
 public:
  explicit GraphExec(cudaGraphExec_t exec) : exec_(exec) {}
  GraphExec(GraphExec&& other) noexcept : exec_(std::exchange(other.exec_, nullptr)) {}
  GraphExec& operator=(GraphExec&&) = delete;
  GraphExec(const GraphExec&) = delete;
  GraphExec& operator=(const GraphExec&) = delete;
  ~GraphExec() {
    if (exec_ != nullptr) cudaGraphExecDestroy(exec_);  // A destructor cannot report its error.
  }
  cudaGraphExec_t get() const { return exec_; }

 private:
  cudaGraphExec_t exec_ = nullptr;
};

class CudaBackend : public internal::CudaShard {
 public:
  CudaBackend(ModelConfig config, CudaBackendOptions options, internal::CudaShardSpec spec,
              gpu::Stream stream, gpu::Blas blas, std::shared_ptr<gpu::MemoryPool> pool)
      : config_(std::move(config)),
        options_(options),
        spec_(spec),
        dtype_(options.dtype),
        element_(gpu::SizeOf(options.dtype)),
        heads_(config_.num_heads / spec.world),
        kv_heads_(config_.num_kv_heads / spec.world),
        ffn_(config_.ffn_size / spec.world),
        layer_begin_(spec.layer_begin),
        layer_end_(spec.layer_end),
        head_begin_(spec.rank * kv_heads_),
        head_end_((spec.rank + 1) * kv_heads_),
        stream_(std::move(stream)),
        blas_(std::move(blas)),
        pool_(std::move(pool)),
        graphs_enabled_(options.cuda_graphs),
        skinny_gemm_max_rows_(options.skinny_gemm_max_rows) {}

  ~CudaBackend() override {
    // cudaGraphExecDestroy wants the graphs' device current; every step has finished (Forward
    // synchronizes), so no replay is in flight.
    if (absl::StatusOr<gpu::ScopedDevice> scoped = gpu::ScopedDevice::Enter(options_.device);
        scoped.ok()) {
      graphs_.clear();
    }
  }

  absl::Status Init(const model::WeightSource& weights) {
    TROUPE_RETURN_IF_ERROR(LoadWeights(weights));
    // Scratch for the largest step the options promise without allocation: up to
    // max_step_tokens tokens and max_step_sequences sequences, decoding at the full context.
    // (Long chunks of prompts after a cached prefix, which run as many decode-attention rows,
    // may grow the decode workspace beyond this once.)
    {
      StepPlan worst;
      worst.tokens = options_.max_step_tokens;
      worst.sequences = options_.max_step_sequences;
      worst.prefill_seqs = options_.max_step_sequences;
      worst.paged_rows = options_.max_step_tokens;
      worst.max_blocks = (config_.max_position_embeddings + kKvBlockTokens - 1) / kKvBlockTokens;
      worst.max_context = config_.max_position_embeddings;
      worst.decode_workspace =
          DecodeWorkspace(options_.max_step_sequences, worst.max_blocks, worst.max_context);
      TROUPE_RETURN_IF_ERROR(EnsureScratch(Layout(worst), worst));
    }
    return absl::OkStatus();
  }

  absl::Status AllocateCache(int blocks) override {
    absl::StatusOr<gpu::ScopedDevice> scoped = gpu::ScopedDevice::Enter(options_.device);
    if (!scoped.ok()) return scoped.status();
    num_kv_blocks_ = blocks;
    absl::StatusOr<gpu::DeviceBuffer> cache =
        gpu::DeviceBuffer::Allocate(static_cast<size_t>(blocks) * KvBlockBytes(), options_.device);
    if (!cache.ok()) return In(cache.status(), absl::StrCat("the KV cache of ", blocks, " blocks"));
    kv_cache_ = *std::move(cache);
    // Zeros, as CpuBackend's cache starts: exported blocks that were never written agree.
    TROUPE_RETURN_IF_ERROR(
        CudaCall(cudaMemsetAsync(kv_cache_.data(), 0, kv_cache_.bytes(), RawStream()),
                 "cudaMemsetAsync", options_.device));
    return In(stream_.Synchronize(), "clearing the KV cache");
  }

  const ModelConfig& config() const override { return config_; }
  int num_kv_blocks() const override { return num_kv_blocks_; }
  DType kv_dtype() const override { return dtype_; }
  const internal::CudaShardSpec& spec() const override { return spec_; }
  size_t WeightBytes() const override { return weight_bytes_; }

  absl::StatusOr<std::vector<std::vector<float>>> Forward(
      const std::vector<SequenceStep>& batch) override {
    if (absl::Status s = CheckWholeStep(batch); !s.ok()) return s;
    if (batch.empty()) return std::vector<std::vector<float>>{};
    absl::StatusOr<StepResult> result = RunStep(batch, {}, Output::kRows, nullptr);
    if (!result.ok()) return result.status();
    return std::move(result->rows);
  }

  absl::StatusOr<std::vector<int32_t>> ForwardAndSample(
      const std::vector<SequenceStep>& batch,
      const std::vector<gpu::sampling::SamplingParams>& params) override {
    if (absl::Status s = CheckSamplingParams(batch.size(), params.size()); !s.ok()) return s;
    if (absl::Status s = CheckWholeStep(batch); !s.ok()) return s;
    if (batch.empty()) return std::vector<int32_t>{};
    absl::StatusOr<StepResult> result = RunStep(batch, {}, Output::kTokens, &params);
    if (!result.ok()) return result.status();
    return std::move(result->tokens);
  }

  absl::Status Prepare(const std::vector<SequenceStep>& batch) override {
    if (batch.empty()) return absl::OkStatus();
    absl::StatusOr<gpu::ScopedDevice> scoped = gpu::ScopedDevice::Enter(options_.device);
    if (!scoped.ok()) return scoped.status();
    const StepPlan plan = Plan(batch, nullptr);
    return EnsureScratch(Layout(plan), plan);
  }

  absl::StatusOr<std::vector<float>> Run(const std::vector<SequenceStep>& batch,
                                         const std::vector<float>& hidden) override {
    if (batch.empty()) return std::vector<float>{};
    absl::StatusOr<StepResult> result = RunStep(batch, hidden, Output::kFlat, nullptr);
    if (!result.ok()) return result.status();
    return std::move(result->flat);
  }

 private:
  // CheckWholeStep: Forward and ForwardAndSample run a whole model (a shard runs through its
  // pipeline or tensor-parallel backend), on valid steps only.
  absl::Status CheckWholeStep(const std::vector<SequenceStep>& batch) const {
    if (!first() || !last() || spec_.world != 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("CudaBackend: Forward on a shard (layers [", layer_begin_, ", ", layer_end_,
                       "), rank ", spec_.rank, " of ", spec_.world,
                       "); run it through its pipeline or tensor-parallel backend"));
    }
    for (const SequenceStep& step : batch) {
      if (absl::Status valid = ValidateStep(step, config_, num_kv_blocks_); !valid.ok()) {
        return valid;
      }
    }
    return absl::OkStatus();
  }

  // What a step hands back to the host (rank 0 only): its output (the logits at the model's
  // end, the hidden states before it) as one array (kFlat), the logits as one vector per
  // sequence (kRows, Forward's), or one token per sequence sampled on the device (kTokens).
  // Each is copied once from the pinned download buffer.
  enum class Output { kFlat, kRows, kTokens };
  struct StepResult {
    std::vector<float> flat;
    std::vector<std::vector<float>> rows;
    std::vector<int32_t> tokens;
  };

  absl::StatusOr<StepResult> RunStep(const std::vector<SequenceStep>& batch,
                                     const std::vector<float>& hidden, Output output,
                                     const std::vector<gpu::sampling::SamplingParams>* params) {
    absl::StatusOr<gpu::ScopedDevice> scoped = gpu::ScopedDevice::Enter(options_.device);
    if (!scoped.ok()) return scoped.status();

    std::optional<GraphKey> key = GraphKeyFor(batch);
    const StepPlan plan = Plan(batch, key ? &*key : nullptr);
    const int64_t T = plan.tokens;
    const int64_t B = plan.sequences;
    const int64_t h = config_.hidden_size;
    if (!first() && static_cast<int64_t>(hidden.size()) != T * h) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CudaBackend stage [", layer_begin_, ", ", layer_end_, "): ", hidden.size(),
          " hidden values for ", T, " tokens of width ", h, "; pass the previous stage's output"));
    }
    const StepLayout layout = Layout(plan);
    TROUPE_RETURN_IF_ERROR(EnsureScratch(layout, plan));
    auto* base = static_cast<uint8_t*>(scratch_.data());
    auto* host = static_cast<uint8_t*>(host_staging_.data());
    const auto copy_ints = [&](size_t offset, const std::vector<int32_t>& values) {
      if (!values.empty()) std::memcpy(host + offset, values.data(), values.size() * 4);
    };
    copy_ints(layout.ids, plan.ids);
    copy_ints(layout.positions, plan.positions);
    copy_ints(layout.slots, plan.slots);
    copy_ints(layout.cu_seqlens, plan.cu_seqlens);
    copy_ints(layout.context_lens, plan.context_lens);
    copy_ints(layout.block_tables, plan.block_tables);
    copy_ints(layout.last_rows, plan.last_rows);
    if (!first()) std::memcpy(host + layout.hidden, hidden.data(), hidden.size() * sizeof(float));
    TROUPE_RETURN_IF_ERROR(
        In(gpu::CopyToDeviceAsync(base, host, layout.upload_end, stream_), "step metadata upload"));

    bool replayed = false;
    if (key) {
      auto cached = graphs_.find(*key);
      if (cached != graphs_.end()) {
        lru_.splice(lru_.begin(), lru_, cached->second.recency);
        const cudaError_t launched = cudaGraphLaunch(cached->second.exec.get(), RawStream());
        if (launched == cudaSuccess) {
          replayed = true;
        } else {
          cudaGetLastError();  // Not sticky: the eager launches below must not see it.
          GraphFailed(*key, absl::StrCat("cudaGraphLaunch: ", cudaGetErrorName(launched), " (",
                                         cudaGetErrorString(launched), ")"));
          lru_.erase(cached->second.recency);
          graphs_.erase(cached);
          key.reset();
        }
      }
    }
    if (replayed) {
      ++graph_stats_.graph_steps;
    } else {
      TROUPE_RETURN_IF_ERROR(EnqueueStep(plan, layout));
      ++graph_stats_.eager_steps;
    }
    // Rank 0 hands the output on: the logits at the model's end, the hidden states before it,
    // or the tokens sampled from the logits.
    const int64_t vocab = config_.vocab_size;
    const bool tokens = output == Output::kTokens && HasOutput() && last();
    const size_t outputs = !HasOutput() ? 0 : tokens ? 0 : last() ? B * vocab : T * h;
    if (tokens) {
      if (sampled_.bytes() < static_cast<size_t>(B) * sizeof(int32_t)) {
        absl::StatusOr<gpu::DeviceBuffer> grown =
            gpu::DeviceBuffer::Allocate(B * sizeof(int32_t), options_.device);
        if (!grown.ok()) return In(grown.status(), "the sampled tokens");
        sampled_ = *std::move(grown);
      }
      auto* drawn = static_cast<int32_t*>(sampled_.data());
      TROUPE_RETURN_IF_ERROR(In(gpu::sampling::Sample(DType::kFloat32, base + layout.logits, drawn,
                                                      B, vocab, *params, stream_),
                                "sampling"));
      TROUPE_RETURN_IF_ERROR(
          In(gpu::CopyToHostAsync(host_output_.data(), drawn, B * sizeof(int32_t), stream_),
             "sampled tokens download"));
    } else if (outputs > 0) {
      TROUPE_RETURN_IF_ERROR(In(
          gpu::CopyToHostAsync(host_output_.data(), base + (last() ? layout.logits : layout.hidden),
                               outputs * sizeof(float), stream_),
          last() ? "logits download" : "hidden states download"));
    }
    TROUPE_RETURN_IF_ERROR(In(stream_.Synchronize(), "the step"));
    StepResult result;
    const auto* floats = static_cast<const float*>(host_output_.data());
    if (tokens) {
      const auto* drawn = static_cast<const int32_t*>(host_output_.data());
      result.tokens.assign(drawn, drawn + B);
    } else if (output == Output::kRows && last()) {
      result.rows = LogitRows(floats, outputs > 0 ? B : 0, vocab);
    } else {
      result.flat.assign(floats, floats + outputs);
    }
    // The key's first step ran eagerly (which also loads every kernel and settles cuBLAS's
    // choices outside the capture); capture it now for the next ones. The stream is idle.
    if (key && !replayed) CaptureGraph(*key, plan, layout);
    return result;
  }

 public:
  absl::StatusOr<std::vector<uint8_t>> ExportKv(const std::vector<int32_t>& blocks,
                                                const KvRange& range) const override {
    if (absl::Status valid = CheckBlocks(blocks); !valid.ok()) return valid;
    absl::StatusOr<KvRange> r = ShardRange(range);
    if (!r.ok()) return r.status();
    const int64_t total = KvBytes(config_, dtype_, blocks.size(), *r);
    std::vector<uint8_t> bytes(total);
    if (blocks.empty()) return bytes;
    absl::StatusOr<gpu::ScopedDevice> scoped = gpu::ScopedDevice::Enter(options_.device);
    if (!scoped.ok()) return scoped.status();
    absl::StatusOr<gpu::PooledBuffer> staging = Gather(blocks, *r, total);
    if (!staging.ok()) return staging.status();
    TROUPE_RETURN_IF_ERROR(
        In(gpu::CopyToHostAsync(bytes.data(), staging->data(), total, stream_), "ExportKv copy"));
    TROUPE_RETURN_IF_ERROR(In(stream_.Synchronize(), "ExportKv"));
    return bytes;
  }

  absl::Status ImportKv(const std::vector<int32_t>& blocks, const KvRange& range,
                        const std::vector<uint8_t>& bytes) override {
    if (absl::Status valid = CheckBlocks(blocks); !valid.ok()) return valid;
    absl::StatusOr<KvRange> r = ShardRange(range);
    if (!r.ok()) return r.status();
    const int64_t expected = KvBytes(config_, dtype_, blocks.size(), *r);
    if (static_cast<int64_t>(bytes.size()) != expected) {
      return absl::InvalidArgumentError(absl::StrCat("ImportKv: ", bytes.size(), " bytes for ",
                                                     blocks.size(), " blocks of this range; ",
                                                     expected, " expected"));
    }
    if (blocks.empty()) return absl::OkStatus();
    absl::StatusOr<gpu::ScopedDevice> scoped = gpu::ScopedDevice::Enter(options_.device);
    if (!scoped.ok()) return scoped.status();
    absl::StatusOr<gpu::PooledBuffer> staging = pool_->Allocate(expected, options_.device);
    if (!staging.ok()) return In(staging.status(), "ImportKv staging");
    TROUPE_RETURN_IF_ERROR(In(
        gpu::CopyToDeviceAsync(staging->data(), bytes.data(), expected, stream_), "ImportKv copy"));
    return Scatter(blocks, *r, *staging);
  }

  // A swap pool of a one-GPU backend is pinned memory, and swaps copy between the cache and its
  // slots with one 2-D DMA per block (the planes of a block are strided in the staging buffer,
  // adjacent in the slot).
  absl::StatusOr<HostMemory> AllocateHostMemory(size_t bytes) const override {
    absl::StatusOr<gpu::PinnedHostBuffer> pinned = gpu::PinnedHostBuffer::Allocate(bytes);
    if (!pinned.ok()) {
      return In(pinned.status(), absl::StrCat(bytes, " bytes of pinned host memory"));
    }
    auto owner = std::make_shared<gpu::PinnedHostBuffer>(*std::move(pinned));
    HostMemory host;
    host.data = static_cast<uint8_t*>(owner->data());
    host.owner = std::move(owner);
    host.pinned = true;
    return host;
  }

  absl::Status ExportKvToSlots(const std::vector<int32_t>& blocks,
                               const std::vector<uint8_t*>& slots) override {
    if (!WholeModel()) return ForwardBackend::ExportKvToSlots(blocks, slots);
    TROUPE_RETURN_IF_ERROR(CheckSlotCount("ExportKvToSlots", blocks, slots.size()));
    if (blocks.empty()) return absl::OkStatus();
    absl::StatusOr<gpu::ScopedDevice> scoped = gpu::ScopedDevice::Enter(options_.device);
    if (!scoped.ok()) return scoped.status();
    const SlotLayout layout = SlotLayoutOf(blocks.size());
    absl::StatusOr<gpu::PooledBuffer> staging = Gather(blocks, layout.all, layout.total);
    if (!staging.ok()) return staging.status();
    TROUPE_RETURN_IF_ERROR(CopySlots(layout, static_cast<uint8_t*>(staging->data()), slots,
                                     cudaMemcpyDeviceToHost, "ExportKvToSlots copy"));
    return In(stream_.Synchronize(), "ExportKvToSlots");
  }

  absl::Status ImportKvFromSlots(const std::vector<int32_t>& blocks,
                                 const std::vector<const uint8_t*>& slots) override {
    if (!WholeModel()) return ForwardBackend::ImportKvFromSlots(blocks, slots);
    TROUPE_RETURN_IF_ERROR(CheckSlotCount("ImportKvFromSlots", blocks, slots.size()));
    if (blocks.empty()) return absl::OkStatus();
    absl::StatusOr<gpu::ScopedDevice> scoped = gpu::ScopedDevice::Enter(options_.device);
    if (!scoped.ok()) return scoped.status();
    const SlotLayout layout = SlotLayoutOf(blocks.size());
    absl::StatusOr<gpu::PooledBuffer> staging = pool_->Allocate(layout.total, options_.device);
    if (!staging.ok()) return In(staging.status(), "ImportKvFromSlots staging");
    TROUPE_RETURN_IF_ERROR(CopySlots(layout, static_cast<uint8_t*>(staging->data()), slots,
                                     cudaMemcpyHostToDevice, "ImportKvFromSlots copy"));
    return Scatter(blocks, layout.all, *staging);
  }

  std::vector<DeviceKvShard> DeviceKvShards() const override {
    return {{options_.device, kv_cache_.data(), num_kv_blocks_, layer_begin_, layer_end_,
             head_begin_, head_end_}};
  }

  absl::StatusOr<std::unique_ptr<PendingKvCopy>> CopyKvFromDevice(
      const std::vector<DeviceKvShard>& sources, const std::vector<int32_t>& src_blocks,
      const std::vector<int32_t>& dst_blocks) override {
    // Copies run on a stream of their own, so that a pull overlaps the steps (DistServe's
    // released code copies on the compute stream and stalls decoding meanwhile).
    if (!transfer_stream_) {
      absl::StatusOr<gpu::Stream> stream = gpu::Stream::Create(options_.device);
      if (!stream.ok()) return In(stream.status(), "the KV transfer stream");
      transfer_stream_.emplace(*std::move(stream));
    }
    return internal::CopyKvBetweenShards(config_, dtype_, sources, DeviceKvShards(), src_blocks,
                                         dst_blocks, *transfer_stream_, *pool_);
  }

  CudaGraphStats GraphStats() const {
    CudaGraphStats stats = graph_stats_;
    stats.enabled = graphs_enabled_;
    stats.cached_graphs = static_cast<int64_t>(graphs_.size());
    return stats;
  }

  void EnableGraphs(bool enabled) { graphs_enabled_ = enabled; }

  // SetSkinnyGemmMaxRows changes which products use the skinny GEMM from the next step; the
  // graphs captured so far hold the other kernels, so they go.
  void SetSkinnyGemmMaxRows(int rows) {
    if (rows == skinny_gemm_max_rows_) return;
    skinny_gemm_max_rows_ = rows;
    DropGraphs();
  }

 private:
  // --- Weights ------------------------------------------------------------------------------

  // Groups lists the tensors this shard holds, in upload order; each group's tensors are
  // adjacent on the device. The embedding is the first stage's, and for OPT, whose output head it
  // is, the last stage's too.
  std::vector<std::vector<std::string>> Groups() const {
    const bool opt = config_.family == ModelFamily::kOpt;
    const std::string root = opt ? "model.decoder." : "model.";
    std::vector<std::vector<std::string>> groups;
    if (first() || (last() && opt)) groups.push_back({root + "embed_tokens.weight"});
    if (opt && first()) groups.push_back({"model.decoder.embed_positions.weight"});
    if (opt && last()) {
      groups.push_back({"model.decoder.final_layer_norm.weight"});
      groups.push_back({"model.decoder.final_layer_norm.bias"});
    } else if (last()) {
      groups.push_back({"model.norm.weight"});
      groups.push_back({"lm_head.weight"});
    }
    for (int l = layer_begin_; l < layer_end_; ++l) {
      const std::string p = absl::StrCat(root, "layers.", l, ".");
      groups.push_back({p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight",
                        p + "self_attn.v_proj.weight"});
      if (opt) {
        groups.push_back({p + "self_attn.q_proj.bias", p + "self_attn.k_proj.bias",
                          p + "self_attn.v_proj.bias"});
        for (const char* name :
             {"self_attn.out_proj.weight", "self_attn.out_proj.bias", "self_attn_layer_norm.weight",
              "self_attn_layer_norm.bias", "final_layer_norm.weight", "final_layer_norm.bias",
              "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}) {
          groups.push_back({p + name});
        }
      } else {
        for (const char* name : {"self_attn.o_proj.weight", "input_layernorm.weight",
                                 "post_attention_layernorm.weight", "mlp.down_proj.weight"}) {
          groups.push_back({p + name});
        }
        groups.push_back({p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"});
      }
    }
    return groups;
  }

  absl::Status LoadWeights(const model::WeightSource& weights) {
    std::map<std::string, model::TensorSpec> specs;
    for (model::TensorSpec& spec : model::ExpectedTensors(config_)) {
      specs[spec.name] = std::move(spec);
    }
    // Place every tensor: groups start aligned, a group's tensors follow each other.
    struct Placed {
      model::TensorSpec spec;
      size_t offset;
      size_t bytes;
    };
    std::vector<Placed> placed;
    size_t offset = 0;
    for (const std::vector<std::string>& group : Groups()) {
      offset = AlignUp(offset);
      for (const std::string& name : group) {
        auto it = specs.find(name);
        if (it == specs.end()) {
          return absl::InternalError(absl::StrCat("CudaBackend: tensor ", name,
                                                  " is not among the model's expected tensors"));
        }
        // This rank's shard of the tensor (all of it when the tensor is replicated).
        absl::StatusOr<std::vector<int64_t>> shape = model::ShardShape(it->second, spec_.world);
        if (!shape.ok()) return shape.status();
        const size_t bytes = NumElements(*shape) * element_;
        placed.push_back({it->second, offset, bytes});
        offset += bytes;
        specs.erase(it);
      }
    }
    if (first() && last() && !specs.empty()) {
      return absl::InternalError(absl::StrCat("CudaBackend: tensor ", specs.begin()->first,
                                              " of the model has no place on the device"));
    }
    weight_bytes_ = offset;
    absl::StatusOr<gpu::DeviceBuffer> buffer =
        gpu::DeviceBuffer::Allocate(weight_bytes_, options_.device);
    if (!buffer.ok()) return In(buffer.status(), absl::StrCat("the weights of ", config_.name));
    weights_ = *std::move(buffer);
    auto* base = static_cast<uint8_t*>(weights_.data());

    // Loading converts (and for random weights generates) on the host: spread it over threads.
    int threads = options_.load_threads;
    if (threads <= 0) {
      threads =
          std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, kMaxLoadThreads);
    }
    threads = std::min<int>(threads, placed.size());
    std::atomic<size_t> next{0};
    absl::Mutex mutex;
    absl::Status first_error;
    const auto work = [&] {
      for (size_t i = next++; i < placed.size(); i = next++) {
        {
          absl::MutexLock lock(&mutex);
          if (!first_error.ok()) return;
        }
        const Placed& p = placed[i];
        absl::Status status;
        absl::StatusOr<std::vector<uint8_t>> bytes =
            weights.Load(p.spec, dtype_, spec_.rank, spec_.world);
        if (!bytes.ok()) {
          status = bytes.status();
        } else if (bytes->size() != p.bytes) {
          status = absl::InternalError(absl::StrCat("weight source ", weights.Describe(), " gave ",
                                                    bytes->size(), " bytes for ", p.spec.name, "; ",
                                                    p.bytes, " expected"));
        } else {
          status = In(gpu::CopyToDevice(base + p.offset, bytes->data(), p.bytes, options_.device),
                      absl::StrCat("uploading ", p.spec.name));
        }
        if (!status.ok()) {
          absl::MutexLock lock(&mutex);
          if (first_error.ok()) first_error = status;
          return;
        }
      }
    };
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(work);
    for (std::thread& thread : pool) thread.join();
    if (!first_error.ok()) return first_error;

    std::map<std::string, const void*> at;
    for (const Placed& p : placed) at[p.spec.name] = base + p.offset;
    const bool opt = config_.family == ModelFamily::kOpt;
    const std::string root = opt ? "model.decoder." : "model.";
    if (first() || (last() && opt)) embed_ = at.at(root + "embed_tokens.weight");
    if (opt && first()) positions_table_ = at.at("model.decoder.embed_positions.weight");
    if (opt && last()) {
      final_w_ = at.at("model.decoder.final_layer_norm.weight");
      final_b_ = at.at("model.decoder.final_layer_norm.bias");
      head_ = embed_;  // OPT ties the output head to the token embedding.
    } else if (last()) {
      final_w_ = at.at("model.norm.weight");
      head_ = at.at("lm_head.weight");
    }
    for (int l = layer_begin_; l < layer_end_; ++l) {
      const std::string p = absl::StrCat(root, "layers.", l, ".");
      LayerWeights w;
      w.qkv_w = at.at(p + "self_attn.q_proj.weight");  // [q; k; v] follow each other
      if (opt) {
        w.qkv_b = at.at(p + "self_attn.q_proj.bias");
        w.o_w = at.at(p + "self_attn.out_proj.weight");
        w.o_b = at.at(p + "self_attn.out_proj.bias");
        w.norm1_w = at.at(p + "self_attn_layer_norm.weight");
        w.norm1_b = at.at(p + "self_attn_layer_norm.bias");
        w.norm2_w = at.at(p + "final_layer_norm.weight");
        w.norm2_b = at.at(p + "final_layer_norm.bias");
        w.up_w = at.at(p + "fc1.weight");
        w.up_b = at.at(p + "fc1.bias");
        w.down_w = at.at(p + "fc2.weight");
        w.down_b = at.at(p + "fc2.bias");
      } else {
        w.o_w = at.at(p + "self_attn.o_proj.weight");
        w.norm1_w = at.at(p + "input_layernorm.weight");
        w.norm2_w = at.at(p + "post_attention_layernorm.weight");
        w.up_w = at.at(p + "mlp.gate_proj.weight");  // [gate; up]
        w.down_w = at.at(p + "mlp.down_proj.weight");
      }
      layers_.push_back(w);
    }
    return absl::OkStatus();
  }

  // --- One step -----------------------------------------------------------------------------

  // Plan packs the batch: fresh prompts' tokens first (the prefill kernel's packed batch), then
  // every other sequence's new tokens (rows of the paged decode kernel).
  // With a graph key (a pure decode), the paged rows' block tables and the decode-attention
  // launch take the key's bucket, so that the step's launches are the graph's.
  StepPlan Plan(const std::vector<SequenceStep>& batch, const GraphKey* key) const {
    StepPlan plan;
    plan.sequences = static_cast<int64_t>(batch.size());
    plan.last_rows.assign(batch.size(), 0);
    plan.cu_seqlens.push_back(0);
    for (int pass = 0; pass < 2; ++pass) {
      const bool prefill_pass = pass == 0;
      for (size_t s = 0; s < batch.size(); ++s) {
        const SequenceStep& step = batch[s];
        if ((step.cached_tokens == 0) != prefill_pass) continue;
        const int n = static_cast<int>(step.tokens.size());
        for (int i = 0; i < n; ++i) {
          const int position = step.cached_tokens + i;
          plan.ids.push_back(step.tokens[i]);
          plan.positions.push_back(position);
          plan.slots.push_back(step.block_table[position / kKvBlockTokens] * kKvBlockTokens +
                               position % kKvBlockTokens);
        }
        plan.last_rows[s] = static_cast<int32_t>(plan.ids.size()) - 1;
        if (prefill_pass) {
          ++plan.prefill_seqs;
          plan.cu_seqlens.push_back(static_cast<int32_t>(plan.ids.size()));
          plan.max_prefill_len = std::max(plan.max_prefill_len, n);
        } else {
          const int length = step.cached_tokens + n;
          plan.max_blocks =
              std::max(plan.max_blocks, (length + kKvBlockTokens - 1) / kKvBlockTokens);
          plan.max_context = std::max(plan.max_context, length);
        }
      }
      if (prefill_pass) plan.prefill_rows = static_cast<int64_t>(plan.ids.size());
    }
    plan.tokens = static_cast<int64_t>(plan.ids.size());
    plan.paged_rows = plan.tokens - plan.prefill_rows;
    if (key != nullptr) {
      plan.max_blocks = std::max(plan.max_blocks, key->blocks());
      plan.max_context = std::max(plan.max_context, key->context());
    }
    // Row r of the paged part attends to the first cached + i + 1 tokens of its sequence.
    for (const SequenceStep& step : batch) {
      if (step.cached_tokens == 0) continue;
      for (size_t i = 0; i < step.tokens.size(); ++i) {
        plan.context_lens.push_back(step.cached_tokens + static_cast<int>(i) + 1);
        for (int b = 0; b < plan.max_blocks; ++b) {
          plan.block_tables.push_back(
              b < static_cast<int>(step.block_table.size()) ? step.block_table[b] : 0);
        }
      }
    }
    plan.last_rows_identity = plan.tokens == plan.sequences;
    for (int64_t s = 0; s < plan.sequences && plan.last_rows_identity; ++s) {
      plan.last_rows_identity = plan.last_rows[s] == s;
    }
    plan.decode_workspace = DecodeWorkspace(plan.paged_rows, plan.max_blocks, plan.max_context);
    return plan;
  }

  // EnqueueStep enqueues the step's kernels and cuBLAS calls, from the embedding (or the previous
  // stage's hidden states) to the logits (or this stage's hidden states) in the scratch arena:
  // everything but the metadata upload before and the output download after. It allocates
  // nothing and never synchronizes, so a graph can capture it.
  absl::Status EnqueueStep(const StepPlan& plan, const StepLayout& layout) {
    auto* base = static_cast<uint8_t*>(scratch_.data());
    const auto ints = [&](size_t offset) {
      return reinterpret_cast<const int32_t*>(base + offset);
    };
    const int64_t T = plan.tokens;
    const int64_t B = plan.sequences;
    const int64_t h = config_.hidden_size;
    const bool opt = config_.family == ModelFamily::kOpt;
    void* x = base + layout.x;
    void* normed = base + layout.normed;

    // Embeddings, or the previous stage's residual stream.
    if (!first()) {
      const void* hidden = base + layout.hidden;
      TROUPE_RETURN_IF_ERROR(
          In(gpu::SumBuffers(&hidden, 1, DType::kFloat32, x, dtype_, T * h, stream_),
             "the previous stage's hidden states"));
    } else if (opt) {
      TROUPE_RETURN_IF_ERROR(
          In(gpu::kernels::EmbeddingWithPositions(
                 dtype_, ints(layout.ids), embed_, ints(layout.positions), positions_table_, x, T,
                 config_.vocab_size, h, config_.max_position_embeddings + 2,
                 gpu::kernels::kOptPositionOffset, stream_),
             "embedding"));
    } else {
      TROUPE_RETURN_IF_ERROR(In(gpu::kernels::Embedding(dtype_, ints(layout.ids), embed_, x, T,
                                                        config_.vocab_size, h, stream_),
                                "embedding"));
    }
    TROUPE_RETURN_IF_ERROR(In(Norm(x, layers_[0].norm1_w, layers_[0].norm1_b, normed, T),
                              absl::StrCat("layer ", layer_begin_, " input norm")));

    for (int l = layer_begin_; l < layer_end_; ++l) {
      TROUPE_RETURN_IF_ERROR(In(Layer(l, plan, layout), absl::StrCat("layer ", l)));
    }

    // Only rank 0 hands an output on (every rank holds the same residual stream).
    if (!HasOutput()) return absl::OkStatus();
    if (!last()) {
      const void* residual = x;
      return In(gpu::SumBuffers(&residual, 1, dtype_, base + layout.hidden, DType::kFloat32, T * h,
                                stream_),
                "the hidden states for the next stage");
    }

    // `normed` holds the final norm of every row; the logits need each sequence's last row.
    const void* last_rows = normed;
    if (!plan.last_rows_identity) {
      TROUPE_RETURN_IF_ERROR(In(gpu::kernels::Embedding(dtype_, ints(layout.last_rows), normed,
                                                        base + layout.gathered, B, T, h, stream_),
                                "gathering the last rows"));
      last_rows = base + layout.gathered;
    }
    if (const gpu::kernels::SkinnyGemmArgs skinny{.dtype = dtype_,
                                                  .output_dtype = DType::kFloat32,
                                                  .x = last_rows,
                                                  .w = head_,
                                                  .y = base + layout.logits,
                                                  .rows = B,
                                                  .cols = config_.vocab_size,
                                                  .depth = h};
        UseSkinnyGemm(skinny)) {
      return In(gpu::kernels::SkinnyGemm(skinny, stream_), "output head");
    }
    gpu::GemmArgs head;
    head.m = B;
    head.n = config_.vocab_size;
    head.k = h;
    head.dtype = dtype_;
    head.output_dtype = DType::kFloat32;
    head.a = last_rows;
    head.b = head_;
    head.transpose_b = true;
    head.c = base + layout.logits;
    return In(blas_.Gemm(head), "output head");
  }

  // --- CUDA graphs of pure-decode steps -------------------------------------------------------

  // MaxGraphBatch is the largest batch a graph is captured for: steps the preallocated scratch
  // and column of ones cover, so that replays rarely meet a moved scratch.
  int64_t MaxGraphBatch() const {
    return std::min(options_.max_step_sequences, options_.max_step_tokens);
  }

  // GraphKeyFor is the key of `batch` when graphs are on and it is a pure decode the graphs
  // cover (not a key that failed); nullopt otherwise.
  std::optional<GraphKey> GraphKeyFor(const std::vector<SequenceStep>& batch) const {
    const int64_t batch_size = static_cast<int64_t>(batch.size());
    if (!graphs_enabled_ || batch_size > MaxGraphBatch()) return std::nullopt;
    int max_context = 0;
    for (const SequenceStep& step : batch) {
      if (step.tokens.size() != 1 || step.cached_tokens <= 0) return std::nullopt;
      max_context = std::max(max_context, step.cached_tokens + 1);
    }
    const int blocks = (max_context + kKvBlockTokens - 1) / kKvBlockTokens;
    GraphKey key;
    key.batch = batch_size;
    key.partition_tokens =
        gpu::attention::DecodePartitionTokens(DecodeParams(batch_size, blocks, max_context));
    key.partitions = (max_context + key.partition_tokens - 1) / key.partition_tokens;
    // The graph launches with the bucket's top context: the kernel must split that the same way
    // (it does, as the split depends on the context only through ceil(context / 256, 512 and
    // 1024); checked rather than assumed).
    if (gpu::attention::DecodePartitionTokens(
            DecodeParams(batch_size, key.blocks(), key.context())) != key.partition_tokens) {
      return std::nullopt;
    }
    if (failed_keys_.count(key) > 0) return std::nullopt;
    return key;
  }

  // CaptureGraph captures the step of `plan` (already run eagerly; the stream is idle) as the
  // graph of `key`. A failure is recorded and the key stays eager; the step's result stands.
  void CaptureGraph(const GraphKey& key, const StepPlan& plan, const StepLayout& layout) {
    const cudaStream_t stream = RawStream();
    // Thread-local: a capture-unsafe call from this thread (an allocation, a synchronization)
    // fails the capture, while other threads' CUDA work (other backends, NCCL) goes on.
    cudaError_t code = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
    if (code != cudaSuccess) {
      cudaGetLastError();
      GraphFailed(key, absl::StrCat("cudaStreamBeginCapture: ", cudaGetErrorName(code)));
      return;
    }
    const absl::Status enqueued = EnqueueStep(plan, layout);
    cudaGraph_t graph = nullptr;
    code = cudaStreamEndCapture(stream, &graph);  // Ends the capture even after a failure.
    if (!enqueued.ok() || code != cudaSuccess || graph == nullptr) {
      if (graph != nullptr) cudaGraphDestroy(graph);
      cudaGetLastError();
      GraphFailed(key, !enqueued.ok()
                           ? absl::StrCat("capture: ", enqueued.message())
                           : absl::StrCat("cudaStreamEndCapture: ", cudaGetErrorName(code), " (",
                                          cudaGetErrorString(code), ")"));
      return;
    }
    cudaGraphExec_t exec = nullptr;
    code = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (code != cudaSuccess || exec == nullptr) {
      cudaGetLastError();
      GraphFailed(key, absl::StrCat("cudaGraphInstantiate: ", cudaGetErrorName(code), " (",
                                    cudaGetErrorString(code), ")"));
      return;
    }
    while (!lru_.empty() && static_cast<int64_t>(graphs_.size()) >= options_.max_cuda_graphs) {
      graphs_.erase(lru_.back());
      lru_.pop_back();
      ++graph_stats_.evictions;
    }
    lru_.push_front(key);
    graphs_.emplace(key, CachedGraph{GraphExec(exec), lru_.begin()});
    ++graph_stats_.captures;
  }

  void GraphFailed(const GraphKey& key, std::string why) {
    failed_keys_.insert(key);
    ++graph_stats_.failed_keys;
    graph_stats_.last_failure = absl::StrCat("batch ", key.batch, ", ", key.partitions, " x ",
                                             key.partition_tokens, " tokens: ", why);
  }

  // DropGraphs drops every graph: they point into scratch memory or a column of ones that is
  // about to move. The stream is idle (every step synchronizes before returning).
  void DropGraphs() {
    if (graphs_.empty()) return;
    graphs_.clear();
    lru_.clear();
    ++graph_stats_.invalidations;
  }

  gpu::attention::DecodeAttentionParams DecodeParams(int64_t rows, int max_blocks,
                                                     int max_context) const {
    gpu::attention::DecodeAttentionParams p;
    p.batch = rows;
    p.num_heads = heads_;
    p.cache = CacheShape();
    p.max_blocks_per_seq = max_blocks;
    p.max_context_len = max_context;
    p.scale = 1.0f / std::sqrt(static_cast<float>(config_.head_dim()));
    return p;
  }

  // DecodeWorkspace is the largest workspace of the launches that cover `rows` paged rows.
  size_t DecodeWorkspace(int64_t rows, int max_blocks, int max_context) const {
    size_t bytes = 0;
    for (int64_t first = 0; first < rows; first += kMaxDecodeRowsPerLaunch) {
      const int64_t n = std::min(kMaxDecodeRowsPerLaunch, rows - first);
      bytes = std::max(bytes, gpu::attention::DecodeAttentionWorkspaceBytes(
                                  DecodeParams(n, max_blocks, max_context)));
    }
    return bytes;
  }

  StepLayout Layout(const StepPlan& plan) const {
    const int64_t T = plan.tokens;
    const int64_t B = plan.sequences;
    const int64_t h = config_.hidden_size;
    const int64_t qkv = static_cast<int64_t>(heads_ + 2 * kv_heads_) * config_.head_dim();
    const int64_t attn = static_cast<int64_t>(heads_) * config_.head_dim();
    const bool opt = config_.family == ModelFamily::kOpt;
    StepLayout l;
    size_t at = 0;
    const auto take = [&](size_t bytes) {
      const size_t start = at;
      at = AlignUp(at + bytes);
      return start;
    };
    l.ids = take(T * 4);
    l.positions = take(T * 4);
    l.slots = take(T * 4);
    l.cu_seqlens = take((plan.prefill_seqs + 1) * 4);
    l.context_lens = take(plan.paged_rows * 4);
    l.block_tables = take(plan.paged_rows * plan.max_blocks * 4);
    l.last_rows = take(B * 4);
    l.ints_end = at;
    l.hidden = take(first() && last() ? 0 : T * h * sizeof(float));
    // A stage after the first uploads the previous stage's hidden states with the metadata.
    l.upload_end = first() ? l.ints_end : at;
    l.x = take(T * h * element_);
    l.normed = take(T * h * element_);
    l.qkv = take(T * qkv * element_);
    l.attn = take(T * attn * element_);
    l.proj = take(T * h * element_);
    l.mlp = take(T * ffn_ * (opt ? 1 : 2) * element_);
    l.act = take(opt ? 0 : T * ffn_ * element_);
    l.gathered = take(B * h * element_);
    l.logits = take(B * config_.vocab_size * sizeof(float));
    l.prefill_ws = take(gpu::attention::PrefillAttentionWorkspaceBytes({}));
    l.decode_ws = take(plan.decode_workspace);
    l.total = at;
    return l;
  }

  // EnsureScratch grows the device scratch, the pinned staging buffers and the column of ones
  // (the bias GEMMs' left operand) when a step needs more than they hold.
  absl::Status EnsureScratch(const StepLayout& layout, const StepPlan& plan) {
    if (scratch_.capacity() < layout.total) {
      DropGraphs();
      scratch_.Reset();
      // Hand the old block back to CUDA rather than caching it: steps only grow it.
      TROUPE_RETURN_IF_ERROR(pool_->Release(options_.device));
      absl::StatusOr<gpu::PooledBuffer> scratch = pool_->Allocate(layout.total, options_.device);
      if (!scratch.ok()) return In(scratch.status(), "scratch memory for a step");
      scratch_ = *std::move(scratch);
    }
    const size_t output_bytes =
        (last() ? plan.sequences * config_.vocab_size : plan.tokens * config_.hidden_size) *
        sizeof(float);
    if (host_staging_.bytes() < layout.upload_end) {
      absl::StatusOr<gpu::PinnedHostBuffer> staging =
          gpu::PinnedHostBuffer::Allocate(layout.upload_end);
      if (!staging.ok()) return In(staging.status(), "pinned staging memory");
      host_staging_ = *std::move(staging);
    }
    if (HasOutput() && host_output_.bytes() < output_bytes) {
      absl::StatusOr<gpu::PinnedHostBuffer> output = gpu::PinnedHostBuffer::Allocate(output_bytes);
      if (!output.ok()) return In(output.status(), "pinned memory for the step's output");
      host_output_ = *std::move(output);
    }
    const size_t ones_bytes = plan.tokens * element_;
    if (ones_.bytes() < ones_bytes) {
      std::vector<uint8_t> ones(ones_bytes);
      for (int64_t i = 0; i < plan.tokens; ++i) gpu::FromFloat(dtype_, 1.0f, &ones[i * element_]);
      absl::StatusOr<gpu::DeviceBuffer> buffer =
          gpu::DeviceBuffer::Allocate(ones_bytes, options_.device);
      if (!buffer.ok()) return In(buffer.status(), "a column of ones");
      // The old column may still be read by queued work of this stream; the copy below is not
      // ordered with it, so finish that work before freeing it.
      TROUPE_RETURN_IF_ERROR(In(stream_.Synchronize(), "growing the column of ones"));
      DropGraphs();
      TROUPE_RETURN_IF_ERROR(In(buffer->CopyFromHost(ones.data(), ones_bytes), "a column of ones"));
      ones_ = *std::move(buffer);
    }
    return absl::OkStatus();
  }

  absl::Status Norm(const void* input, const void* gamma, const void* beta, void* output,
                    int64_t rows) {
    if (config_.family == ModelFamily::kOpt) {
      return gpu::kernels::LayerNorm(dtype_, input, gamma, beta, output, rows, config_.hidden_size,
                                     config_.norm_epsilon, stream_);
    }
    return gpu::kernels::RmsNorm(dtype_, input, gamma, output, rows, config_.hidden_size,
                                 config_.norm_epsilon, stream_);
  }

  // HasOutput: whether this shard hands its step's output on. Every rank computes the same
  // residual stream and, on the last stage, the same final norm; rank 0 alone computes and
  // downloads the logits or the hidden states.
  bool HasOutput() const { return spec_.rank == 0; }

  // AllReduce sums a row-parallel projection's partial output [rows, hidden] over the ranks.
  absl::Status AllReduce(void* partial, int64_t rows) {
    if (spec_.world == 1) return absl::OkStatus();
    return spec_.collective->AllReduceSum(partial, static_cast<size_t>(rows) * config_.hidden_size,
                                          dtype_, stream_);
  }

  // ResidualNorm: x += input + bias (bias may be null), then output = Norm(x).
  absl::Status ResidualNorm(const void* input, const void* bias, void* x, const void* gamma,
                            const void* beta, void* output, int64_t rows) {
    if (config_.family == ModelFamily::kOpt) {
      return gpu::kernels::ResidualLayerNorm(dtype_, input, bias, x, gamma, beta, x, output, rows,
                                             config_.hidden_size, config_.norm_epsilon, stream_);
    }
    return gpu::kernels::ResidualRmsNorm(dtype_, input, bias, x, gamma, x, output, rows,
                                         config_.hidden_size, config_.norm_epsilon, stream_);
  }

  // UseSkinnyGemm: whether a product of these few rows runs on the skinny GEMM (a decode step's
  // projections at small batches, where cuBLAS reads the weights more slowly; see
  // gpu/kernels/skinny_gemm.h) rather than on cuBLAS.
  bool UseSkinnyGemm(const gpu::kernels::SkinnyGemmArgs& args) const {
    return args.rows <= skinny_gemm_max_rows_ && gpu::kernels::SkinnyGemmFits(args);
  }

  // Linear: y[m, n] = x[m, k] · w[n, k]ᵀ (+ what y holds when beta is 1).
  absl::Status Linear(const void* x, const void* w, void* y, int64_t m, int64_t n, int64_t k,
                      float beta = 0.0f) {
    if (const gpu::kernels::SkinnyGemmArgs skinny{.dtype = dtype_,
                                                  .output_dtype = dtype_,
                                                  .x = x,
                                                  .w = w,
                                                  .y = y,
                                                  .rows = m,
                                                  .cols = n,
                                                  .depth = k,
                                                  .accumulate = beta != 0.0f};
        UseSkinnyGemm(skinny)) {
      return gpu::kernels::SkinnyGemm(skinny, stream_);
    }
    gpu::GemmArgs g;
    g.m = m;
    g.n = n;
    g.k = k;
    g.dtype = dtype_;
    g.output_dtype = dtype_;
    g.a = x;
    g.b = w;
    g.transpose_b = true;
    g.c = y;
    g.beta = beta;
    return blas_.Gemm(g);
  }

  // Projections: `count` weights [n, k] that follow each other at w (and biases [n] at bias, or
  // null) applied to x[m, k], into `count` outputs [m, n] that follow each other at y. The bias
  // is broadcast first as ones[m, 1] · bias[1, n], and the product accumulates onto it (beta 1).
  absl::Status Projections(const void* x, const void* w, const void* bias, void* y, int64_t m,
                           int64_t n, int64_t k, int64_t count) {
    if (const gpu::kernels::SkinnyGemmArgs skinny{.dtype = dtype_,
                                                  .output_dtype = dtype_,
                                                  .x = x,
                                                  .w = w,
                                                  .bias = bias,
                                                  .y = y,
                                                  .rows = m,
                                                  .cols = n,
                                                  .depth = k,
                                                  .count = count};
        UseSkinnyGemm(skinny)) {
      return gpu::kernels::SkinnyGemm(skinny, stream_);
    }
    if (bias != nullptr) {
      gpu::BatchedGemmArgs broadcast;
      broadcast.gemm.m = m;
      broadcast.gemm.n = n;
      broadcast.gemm.k = 1;
      broadcast.gemm.dtype = dtype_;
      broadcast.gemm.output_dtype = dtype_;
      broadcast.gemm.a = ones_.data();
      broadcast.gemm.b = bias;
      broadcast.gemm.c = y;
      broadcast.batch_count = count;
      broadcast.stride_a = 0;
      broadcast.stride_b = n;
      broadcast.stride_c = m * n;
      TROUPE_RETURN_IF_ERROR(blas_.GemmStridedBatched(broadcast));
    }
    gpu::BatchedGemmArgs product;
    product.gemm.m = m;
    product.gemm.n = n;
    product.gemm.k = k;
    product.gemm.dtype = dtype_;
    product.gemm.output_dtype = dtype_;
    product.gemm.a = x;
    product.gemm.b = w;
    product.gemm.transpose_b = true;
    product.gemm.c = y;
    product.gemm.beta = bias != nullptr ? 1.0f : 0.0f;
    product.batch_count = count;
    product.stride_a = 0;
    product.stride_b = n * k;
    product.stride_c = m * n;
    return blas_.GemmStridedBatched(product);
  }

  // Layer runs layer l (the model's index) of this shard.
  absl::Status Layer(int l, const StepPlan& plan, const StepLayout& layout) {
    const LayerWeights& w = layers_[l - layer_begin_];
    auto* base = static_cast<uint8_t*>(scratch_.data());
    const auto ints = [&](size_t offset) {
      return reinterpret_cast<const int32_t*>(base + offset);
    };
    const int64_t T = plan.tokens;
    const int64_t h = config_.hidden_size;
    const int d = config_.head_dim();
    const int64_t nq = static_cast<int64_t>(heads_) * d;
    const int64_t nkv = static_cast<int64_t>(kv_heads_) * d;
    const bool opt = config_.family == ModelFamily::kOpt;
    void* x = base + layout.x;
    void* normed = base + layout.normed;
    // q [T, nq], then k [T, nkv], then v [T, nkv]: each contiguous, as the kernels want.
    uint8_t* q = base + layout.qkv;
    uint8_t* k = q + T * nq * element_;
    uint8_t* v = k + T * nkv * element_;
    uint8_t* attn = base + layout.attn;
    void* proj = base + layout.proj;

    // Q, K, V projections. The weights are [q; k; v] rows, the biases [bq; bk; bv].
    if (nq == nkv) {
      TROUPE_RETURN_IF_ERROR(In(Projections(normed, w.qkv_w, w.qkv_b, q, T, nq, h, 3), "qkv"));
    } else {
      const auto* kv_w = static_cast<const uint8_t*>(w.qkv_w) + nq * h * element_;
      const auto* kv_b =
          w.qkv_b == nullptr ? nullptr : static_cast<const uint8_t*>(w.qkv_b) + nq * element_;
      TROUPE_RETURN_IF_ERROR(In(Projections(normed, w.qkv_w, w.qkv_b, q, T, nq, h, 1), "q"));
      TROUPE_RETURN_IF_ERROR(In(Projections(normed, kv_w, kv_b, k, T, nkv, h, 2), "kv"));
    }
    if (!opt) {
      gpu::kernels::RotaryOptions rotary;
      rotary.theta = config_.rope_theta;
      rotary.style = gpu::kernels::RotaryStyle::kNeox;  // Hugging Face LLaMA's rotate_half
      TROUPE_RETURN_IF_ERROR(
          In(gpu::kernels::RotaryEmbedding(dtype_, ints(layout.positions), q, k, T, heads_,
                                           kv_heads_, d, d, rotary, stream_),
             "rotary"));
    }

    // Every new token's K and V into its slot, then attention.
    TROUPE_RETURN_IF_ERROR(
        In(gpu::attention::WriteKv(dtype_, k, v, ints(layout.slots), T, CacheShape(), Cache(l, 0),
                                   Cache(l, 1), stream_),
           "WriteKv"));
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    if (plan.prefill_seqs > 0) {
      gpu::attention::PrefillAttentionParams p;
      p.batch = plan.prefill_seqs;
      p.num_heads = heads_;
      p.num_kv_heads = kv_heads_;
      p.head_dim = d;
      p.max_seqlen = plan.max_prefill_len;
      p.total_tokens = plan.prefill_rows;
      p.scale = scale;
      TROUPE_RETURN_IF_ERROR(
          In(gpu::attention::PrefillAttention(
                 dtype_, p, q, k, v, ints(layout.cu_seqlens), base + layout.prefill_ws,
                 gpu::attention::PrefillAttentionWorkspaceBytes(p), attn, stream_),
             "prefill attention"));
    }
    for (int64_t first = 0; first < plan.paged_rows; first += kMaxDecodeRowsPerLaunch) {
      const int64_t rows = std::min(kMaxDecodeRowsPerLaunch, plan.paged_rows - first);
      const gpu::attention::DecodeAttentionParams p =
          DecodeParams(rows, plan.max_blocks, plan.max_context);
      const int64_t row = plan.prefill_rows + first;
      TROUPE_RETURN_IF_ERROR(In(gpu::attention::PagedDecodeAttention(
                                    dtype_, p, q + row * nq * element_, Cache(l, 0), Cache(l, 1),
                                    ints(layout.block_tables) + first * plan.max_blocks,
                                    ints(layout.context_lens) + first, base + layout.decode_ws,
                                    plan.decode_workspace, attn + row * nq * element_, stream_),
                                "paged decode attention"));
    }

    // x += attn · Woᵀ + bo; normed = Norm2(x). A rank's product is a partial sum over its heads.
    TROUPE_RETURN_IF_ERROR(In(Linear(attn, w.o_w, proj, T, h, nq), "output projection"));
    TROUPE_RETURN_IF_ERROR(In(AllReduce(proj, T), "output projection all-reduce"));
    TROUPE_RETURN_IF_ERROR(In(ResidualNorm(proj, w.o_b, x, w.norm2_w, w.norm2_b, normed, T),
                              "attention residual and norm"));

    // The MLP, then x += its output and normed = the next layer's Norm1 (or the final norm).
    void* mlp = base + layout.mlp;
    const int64_t f = ffn_;
    const void* mlp_out_input = mlp;
    if (opt) {
      TROUPE_RETURN_IF_ERROR(In(Linear(normed, w.up_w, mlp, T, f, h), "fc1"));
      TROUPE_RETURN_IF_ERROR(
          In(gpu::kernels::BiasActivation(dtype_, gpu::kernels::ActivationKind::kRelu, mlp, w.up_b,
                                          mlp, T, f, stream_),
             "fc1 bias and relu"));
    } else {
      void* act = base + layout.act;
      TROUPE_RETURN_IF_ERROR(In(Linear(normed, w.up_w, mlp, T, 2 * f, h), "gate and up"));
      TROUPE_RETURN_IF_ERROR(
          In(gpu::kernels::SiluAndMul(dtype_, mlp, act, T, f, stream_), "silu and mul"));
      mlp_out_input = act;
    }
    TROUPE_RETURN_IF_ERROR(In(Linear(mlp_out_input, w.down_w, proj, T, h, f), "down projection"));
    TROUPE_RETURN_IF_ERROR(In(AllReduce(proj, T), "down projection all-reduce"));
    if (l + 1 == layer_end_ && !last()) {
      // The next layer's Norm1 is the next stage's: hand on the residual stream alone.
      return In(gpu::kernels::BiasResidual(dtype_, proj, w.down_b, x, x, T, h, stream_),
                "MLP residual");
    }
    const bool model_end = l + 1 == config_.num_layers;
    const void* gamma = model_end ? final_w_ : layers_[l + 1 - layer_begin_].norm1_w;
    const void* beta = model_end ? final_b_ : layers_[l + 1 - layer_begin_].norm1_b;
    return In(ResidualNorm(proj, w.down_b, x, gamma, beta, normed, T), "MLP residual and norm");
  }

  // --- The cache ----------------------------------------------------------------------------

  // The cache holds this shard's layers [layer_begin_, layer_end_) and kv heads [head_begin_,
  // head_end_) (kv_heads_ of them): the whole model's on one GPU.
  gpu::attention::KvCacheShape CacheShape() const {
    return {num_kv_blocks_ > 0 ? num_kv_blocks_ : 1, kv_heads_, config_.head_dim()};
  }

  // KvBlockBytes is one block's K and V over the shard's layers.
  size_t KvBlockBytes() const override {
    return 2ull * (layer_end_ - layer_begin_) * kv_heads_ * kKvBlockTokens * config_.head_dim() *
           element_;
  }

  // Cache is layer l's (the model's index) K (kv = 0) or V (kv = 1) array: the cache is
  // [layer - layer_begin_][K, V][block][...].
  void* Cache(int l, int kv) const {
    const size_t array_bytes = KvBlockBytes() / (2 * (layer_end_ - layer_begin_)) * num_kv_blocks_;
    return static_cast<uint8_t*>(kv_cache_.data()) +
           (2 * static_cast<size_t>(l - layer_begin_) + kv) * array_bytes;
  }

  // ShardRange resolves `range` and checks that this shard holds all of it: ask the stage or
  // rank that does otherwise.
  absl::StatusOr<KvRange> ShardRange(const KvRange& range) const {
    absl::StatusOr<KvRange> r = KvRangeOf(range, config_);
    if (!r.ok()) return r.status();
    if (r->layer_begin < layer_begin_ || r->layer_end > layer_end_ || r->head_begin < head_begin_ ||
        r->head_end > head_end_) {
      return absl::InvalidArgumentError(
          absl::StrCat("KV layers [", r->layer_begin, ", ", r->layer_end, ") and heads [",
                       r->head_begin, ", ", r->head_end, ") are not all in this shard's layers [",
                       layer_begin_, ", ", layer_end_, ") and heads [", head_begin_, ", ",
                       head_end_, "); ask the stage or rank that holds them"));
    }
    return r;
  }

  absl::Status CheckBlocks(const std::vector<int32_t>& blocks) const {
    for (int32_t block : blocks) {
      if (block < 0 || block >= num_kv_blocks_) {
        return absl::InvalidArgumentError(absl::StrCat(
            "KV block ", block, " is outside the cache's ", num_kv_blocks_, " blocks"));
      }
    }
    return absl::OkStatus();
  }

  // SlotLayout: how `n` blocks of the whole cache lie in a staging buffer ([plane][block][part],
  // ExportKv's layout) and in a swap pool's slots ([plane][part] each).
  struct SlotLayout {
    KvRange all;
    int64_t n = 0;
    int64_t total = 0;   // staging bytes
    int64_t planes = 0;  // (layer, K or V) pairs
    int64_t part = 0;    // bytes of one plane of one block
  };

  SlotLayout SlotLayoutOf(size_t blocks) const {
    SlotLayout layout;
    layout.all = *ShardRange({});
    layout.n = static_cast<int64_t>(blocks);
    layout.total = KvBytes(config_, dtype_, layout.n, layout.all);
    layout.planes = 2LL * (layout.all.layer_end - layout.all.layer_begin);
    layout.part = layout.total / (layout.planes * layout.n);
    return layout;
  }

  // CopySlots copies every block between the staging buffer and its slot, one 2-D copy per
  // block (its planes strided in the staging buffer, adjacent in the slot), on the stream.
  template <typename HostPointer>
  absl::Status CopySlots(const SlotLayout& layout, uint8_t* staging,
                         const std::vector<HostPointer>& slots, cudaMemcpyKind kind,
                         const char* what) {
    const bool to_host = kind == cudaMemcpyDeviceToHost;
    for (int64_t i = 0; i < layout.n; ++i) {
      void* block = staging + i * layout.part;
      void* slot = const_cast<uint8_t*>(slots[i]);  // read only when copying to the device
      TROUPE_RETURN_IF_ERROR(
          In(CudaCall(cudaMemcpy2DAsync(
                          to_host ? slot : block, to_host ? layout.part : layout.n * layout.part,
                          to_host ? block : slot, to_host ? layout.n * layout.part : layout.part,
                          layout.part, layout.planes, kind, RawStream()),
                      "cudaMemcpy2DAsync", options_.device),
             what));
    }
    return absl::OkStatus();
  }

  // WholeModel: this backend holds every layer and kv head (no pipeline or tensor split).
  bool WholeModel() const { return first() && last() && spec_.world == 1; }

  absl::Status CheckSlotCount(const char* function, const std::vector<int32_t>& blocks,
                              size_t slots) const {
    if (absl::Status valid = CheckBlocks(blocks); !valid.ok()) return valid;
    if (slots == blocks.size()) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(function, ": ", blocks.size(), " blocks but ",
                                                   slots, " slots; give one slot per block"));
  }

  // Gather packs range `r` of `blocks` into a staging buffer of `total` bytes laid out as
  // ExportKv's result, on the compute stream, and waits for it.
  absl::StatusOr<gpu::PooledBuffer> Gather(const std::vector<int32_t>& blocks, const KvRange& r,
                                           int64_t total) const {
    absl::StatusOr<gpu::PooledBuffer> staging = pool_->Allocate(total, options_.device);
    if (!staging.ok()) return In(staging.status(), "ExportKv staging");
    absl::StatusOr<gpu::PooledBuffer> ids = UploadBlockIds(blocks);
    if (!ids.ok()) return ids.status();
    const int64_t part = total / (2 * (r.layer_end - r.layer_begin));
    auto* packed = static_cast<uint8_t*>(staging->data());
    for (int l = r.layer_begin; l < r.layer_end; ++l) {
      for (int kv = 0; kv < 2; ++kv) {
        TROUPE_RETURN_IF_ERROR(
            In(gpu::attention::GatherKvBlocks(
                   dtype_, Cache(l, kv), CacheShape(), static_cast<const int32_t*>(ids->data()),
                   static_cast<int64_t>(blocks.size()), r.head_begin - head_begin_,
                   r.head_end - head_begin_, packed, stream_),
               absl::StrCat("ExportKv layer ", l)));
        packed += part;
      }
    }
    // The block ids go back to the pool when this returns: the gathers must be done.
    TROUPE_RETURN_IF_ERROR(In(stream_.Synchronize(), "ExportKv gather"));
    return staging;
  }

  // Scatter writes a staging buffer in ExportKv's layout into range `r` of `blocks`, and waits.
  absl::Status Scatter(const std::vector<int32_t>& blocks, const KvRange& r,
                       const gpu::PooledBuffer& staging) {
    absl::StatusOr<gpu::PooledBuffer> ids = UploadBlockIds(blocks);
    if (!ids.ok()) return ids.status();
    const int64_t part =
        KvBytes(config_, dtype_, blocks.size(), r) / (2 * (r.layer_end - r.layer_begin));
    const auto* packed = static_cast<const uint8_t*>(staging.data());
    for (int l = r.layer_begin; l < r.layer_end; ++l) {
      for (int kv = 0; kv < 2; ++kv) {
        TROUPE_RETURN_IF_ERROR(
            In(gpu::attention::ScatterKvBlocks(
                   dtype_, packed, static_cast<const int32_t*>(ids->data()),
                   static_cast<int64_t>(blocks.size()), r.head_begin - head_begin_,
                   r.head_end - head_begin_, CacheShape(), Cache(l, kv), stream_),
               absl::StrCat("ImportKv layer ", l)));
        packed += part;
      }
    }
    // The staging buffers go back to the pool when this returns: the stream must be done.
    return In(stream_.Synchronize(), "ImportKv");
  }

  absl::StatusOr<gpu::PooledBuffer> UploadBlockIds(const std::vector<int32_t>& blocks) const {
    const size_t bytes = blocks.size() * sizeof(int32_t);
    absl::StatusOr<gpu::PooledBuffer> ids = pool_->Allocate(bytes, options_.device);
    if (!ids.ok()) return In(ids.status(), "block ids");
    if (absl::Status copied = gpu::CopyToDeviceAsync(ids->data(), blocks.data(), bytes, stream_);
        !copied.ok()) {
      return In(copied, "block ids upload");
    }
    return ids;
  }

  cudaStream_t RawStream() const { return static_cast<cudaStream_t>(stream_.raw()); }

  const ModelConfig config_;
  const CudaBackendOptions options_;
  const internal::CudaShardSpec spec_;
  const DType dtype_;
  const size_t element_;
  // This shard's share of the model: per-rank head, kv head and FFN counts; its layers; its kv
  // heads of the cache (the model's numbering).
  const int heads_;
  const int kv_heads_;
  const int ffn_;
  const int layer_begin_;
  const int layer_end_;
  const int head_begin_;
  const int head_end_;
  // The kernels take a Stream&; ExportKv is const but enqueues work, hence mutable.
  mutable gpu::Stream stream_;
  gpu::Blas blas_;  // Bound to stream_ (declared after it, destroyed before it).
  std::shared_ptr<gpu::MemoryPool> pool_;

  gpu::DeviceBuffer weights_;
  size_t weight_bytes_ = 0;
  const void* embed_ = nullptr;
  const void* positions_table_ = nullptr;  // OPT
  const void* final_w_ = nullptr;
  const void* final_b_ = nullptr;  // OPT
  const void* head_ = nullptr;
  std::vector<LayerWeights> layers_;

  gpu::DeviceBuffer kv_cache_;
  int num_kv_blocks_ = 0;
  std::optional<gpu::Stream> transfer_stream_;  // made by the first CopyKvFromDevice

  gpu::PooledBuffer scratch_;
  gpu::DeviceBuffer ones_;
  gpu::PinnedHostBuffer host_staging_;
  gpu::PinnedHostBuffer host_output_;  // the logits, or a stage's hidden states
  gpu::DeviceBuffer sampled_;          // ForwardAndSample's tokens, before their download

  // Graphs of pure-decode steps, most recently used first in lru_. Declared last: destroyed
  // before the memory they point into.
  struct CachedGraph {
    GraphExec exec;
    std::list<GraphKey>::iterator recency;
  };
  bool graphs_enabled_ = false;
  int skinny_gemm_max_rows_ = 0;
  std::map<GraphKey, CachedGraph> graphs_;
  std::list<GraphKey> lru_;
  std::set<GraphKey> failed_keys_;
  CudaGraphStats graph_stats_;
};

}  // namespace

namespace internal {

absl::Status CheckCudaOptions(const ModelConfig& config, const CudaBackendOptions& options) {
  TROUPE_RETURN_IF_ERROR(model::Validate(config));
  const auto invalid = [](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("CudaBackend: ", what));
  };
  if (options.dtype != DType::kFloat16 && options.dtype != DType::kBFloat16) {
    return invalid(absl::StrCat("dtype ", gpu::DTypeName(options.dtype),
                                " is not supported; use fp16 or bf16"));
  }
  const int d = config.head_dim();
  if (d != 64 && d != 128) {
    return invalid(absl::StrCat("model ", config.name, " has head_dim ", d,
                                "; the attention kernels support 64 and 128"));
  }
  const int group = config.num_heads / config.num_kv_heads;
  if (group != 1 && group != 2 && group != 4 && group != 8) {
    return invalid(absl::StrCat("model ", config.name, " shares a kv head among ", group,
                                " query heads; decode attention supports 1, 2, 4 or 8"));
  }
  if (config.family == ModelFamily::kLlama && !(config.rope_theta > 1.0f)) {
    return invalid(
        absl::StrCat("model ", config.name, ": rope_theta ", config.rope_theta, " must be > 1"));
  }
  if (options.num_kv_blocks < 0) {
    return invalid(absl::StrCat("num_kv_blocks is ", options.num_kv_blocks,
                                "; give a positive count, or 0 to size from free memory"));
  }
  if (!(options.gpu_memory_utilization > 0.0 && options.gpu_memory_utilization <= 1.0)) {
    return invalid(absl::StrCat("gpu_memory_utilization is ", options.gpu_memory_utilization,
                                "; it must be in (0, 1]"));
  }
  if (options.max_step_tokens < 1 || options.max_step_sequences < 1) {
    return invalid(absl::StrCat("max_step_tokens (", options.max_step_tokens,
                                ") and max_step_sequences (", options.max_step_sequences,
                                ") must be positive"));
  }
  if (options.max_cuda_graphs < 1) {
    return invalid(absl::StrCat("max_cuda_graphs is ", options.max_cuda_graphs,
                                "; keep at least 1 graph, or turn cuda_graphs off"));
  }
  if (options.skinny_gemm_max_rows < 0 ||
      options.skinny_gemm_max_rows > gpu::kernels::kMaxSkinnyRows) {
    return invalid(absl::StrCat("skinny_gemm_max_rows is ", options.skinny_gemm_max_rows,
                                "; give 0 (off) to ", gpu::kernels::kMaxSkinnyRows));
  }
  const int tp = options.tensor_parallel;
  if (absl::Status split = CheckTensorParallel(config, tp); !split.ok()) {
    return invalid(std::string(split.message()));
  }
  if (!options.tensor_parallel_devices.empty() &&
      options.tensor_parallel_devices.size() != static_cast<size_t>(tp)) {
    return invalid(absl::StrCat("tensor_parallel_devices names ",
                                options.tensor_parallel_devices.size(),
                                " devices for tensor_parallel ", tp,
                                "; give one per rank, or none to put every rank on `device`"));
  }
  if (options.cuda_graphs && tp > 1) {
    return invalid(absl::StrCat(
        "cuda_graphs with tensor_parallel ", tp,
        ": a graph cannot capture the ranks' all-reduce (the in-process collective meets on the "
        "host); turn cuda_graphs off"));
  }
  const auto check_device = [&](int device, const std::string& name) {
    absl::Status exists = gpu::Device::CheckIndex(device);
    if (exists.ok()) return exists;
    return absl::Status(exists.code(), absl::StrCat("CudaBackend: ", name, " is cuda:", device,
                                                    ": ", exists.message()));
  };
  TROUPE_RETURN_IF_ERROR(check_device(options.device, "device"));
  for (size_t r = 0; r < options.tensor_parallel_devices.size(); ++r) {
    TROUPE_RETURN_IF_ERROR(check_device(options.tensor_parallel_devices[r],
                                        absl::StrCat("tensor_parallel_devices[", r, "]")));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CudaShard>> CreateCudaShard(const ModelConfig& config,
                                                           const model::WeightSource& weights,
                                                           const CudaBackendOptions& options,
                                                           const CudaShardSpec& spec) {
  if (spec.layer_begin < 0 || spec.layer_begin >= spec.layer_end ||
      spec.layer_end > config.num_layers || spec.world < 1 || spec.rank < 0 ||
      spec.rank >= spec.world || (spec.world > 1 && spec.collective == nullptr)) {
    return absl::InternalError(absl::StrCat("CudaBackend: shard of layers [", spec.layer_begin,
                                            ", ", spec.layer_end, "), rank ", spec.rank, " of ",
                                            spec.world, " is not a shard of ", config.name, "'s ",
                                            config.num_layers, " layers with a collective"));
  }
  CudaBackendOptions shard_options = options;
  shard_options.device = spec.device;
  absl::StatusOr<gpu::ScopedDevice> scoped = gpu::ScopedDevice::Enter(spec.device);
  if (!scoped.ok()) return scoped.status();
  absl::StatusOr<gpu::Stream> stream = gpu::Stream::Create(spec.device);
  if (!stream.ok()) return stream.status();
  absl::StatusOr<gpu::Blas> blas = gpu::Blas::Create(*stream);
  if (!blas.ok()) return blas.status();
  absl::StatusOr<std::shared_ptr<gpu::MemoryPool>> pool = gpu::CreateCudaMemoryPool();
  if (!pool.ok()) return pool.status();
  auto shard = std::make_unique<CudaBackend>(config, shard_options, spec, *std::move(stream),
                                             *std::move(blas), *std::move(pool));
  TROUPE_RETURN_IF_ERROR(shard->Init(weights));
  return std::unique_ptr<CudaShard>(std::move(shard));
}

absl::Status AllocateCudaCaches(const std::vector<CudaShard*>& shards,
                                const CudaBackendOptions& options) {
  // Slots are int32 (block * 16 + offset) in the kernels.
  constexpr int64_t kMaxBlocks = (int64_t{1} << 31) / kKvBlockTokens - 1;
  int64_t blocks = options.num_kv_blocks;
  if (blocks == 0) {
    // Every shard's weights and scratch are in place: what is free now is for the caches, and
    // the shards on one GPU share it.
    std::map<int, size_t> block_bytes, weight_bytes;
    std::map<int, int> count;
    for (const CudaShard* shard : shards) {
      block_bytes[shard->spec().device] += shard->KvBlockBytes();
      weight_bytes[shard->spec().device] += shard->WeightBytes();
      ++count[shard->spec().device];
    }
    blocks = kMaxBlocks;
    for (const auto& [device_index, bytes] : block_bytes) {
      absl::StatusOr<gpu::Device> device = gpu::Device::Get(device_index);
      if (!device.ok()) return device.status();
      absl::StatusOr<size_t> free_bytes = device->FreeMemoryBytes();
      if (!free_bytes.ok()) return free_bytes.status();
      const int64_t fits = static_cast<int64_t>(static_cast<double>(*free_bytes) *
                                                options.gpu_memory_utilization / bytes);
      if (fits < 1) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "CudaBackend: ", *free_bytes, " bytes free on cuda:", device_index,
            " after the weights (", weight_bytes[device_index], " bytes of ", count[device_index],
            " shard(s)) hold no KV block of ", bytes,
            " bytes; use a smaller model, fp16/bf16 weights, more GPUs (tensor_parallel, "
            "pipeline_stages) or a GPU with more memory"));
      }
      blocks = std::min(blocks, fits);
    }
  }
  blocks = std::min(blocks, kMaxBlocks);
  for (CudaShard* shard : shards) {
    TROUPE_RETURN_IF_ERROR(shard->AllocateCache(static_cast<int>(blocks)));
  }
  return absl::OkStatus();
}

}  // namespace internal

absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCudaBackend(
    const ModelConfig& config, const model::WeightSource& weights,
    const CudaBackendOptions& options) {
  TROUPE_RETURN_IF_ERROR(internal::CheckCudaOptions(config, options));
  if (options.tensor_parallel > 1) {
    return internal::CreateCudaTensorParallelBackend(config, weights, options);
  }
  internal::CudaShardSpec whole;
  whole.layer_end = config.num_layers;
  whole.device =
      options.tensor_parallel_devices.empty() ? options.device : options.tensor_parallel_devices[0];
  absl::StatusOr<std::unique_ptr<internal::CudaShard>> backend =
      internal::CreateCudaShard(config, weights, options, whole);
  if (!backend.ok()) return backend.status();
  TROUPE_RETURN_IF_ERROR(internal::AllocateCudaCaches({backend->get()}, options));
  return std::unique_ptr<ForwardBackend>(*std::move(backend));
}

absl::StatusOr<CudaGraphStats> GetCudaGraphStats(const ForwardBackend& backend) {
  const auto* cuda = dynamic_cast<const CudaBackend*>(&backend);
  if (cuda == nullptr) {
    return absl::InvalidArgumentError(
        "GetCudaGraphStats: the backend is not a one-GPU CudaBackend made by CreateCudaBackend");
  }
  return cuda->GraphStats();
}

absl::Status SetCudaGraphsEnabled(ForwardBackend& backend, bool enabled) {
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  if (cuda == nullptr) {
    return absl::InvalidArgumentError(
        "SetCudaGraphsEnabled: the backend is not a one-GPU CudaBackend");
  }
  cuda->EnableGraphs(enabled);
  return absl::OkStatus();
}

absl::Status SetSkinnyGemmMaxRows(ForwardBackend& backend, int rows) {
  auto* cuda = dynamic_cast<CudaBackend*>(&backend);
  if (cuda == nullptr) {
    return absl::InvalidArgumentError(
        "SetSkinnyGemmMaxRows: the backend is not a one-GPU CudaBackend");
  }
  if (rows < 0 || rows > gpu::kernels::kMaxSkinnyRows) {
    return absl::InvalidArgumentError(absl::StrCat("SetSkinnyGemmMaxRows: rows ", rows,
                                                   " is outside 0 (off) to ",
                                                   gpu::kernels::kMaxSkinnyRows));
  }
  cuda->SetSkinnyGemmMaxRows(rows);
  return absl::OkStatus();
}

}  // namespace troupe::serving::engine
