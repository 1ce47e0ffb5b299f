// ForwardBackend: the model's forward pass over a paged KV cache, behind one interface so the
// instances (prefill, decode, colocated) run the same code on a CPU (LibTorch) or a GPU (the
// gpu/ kernels and cuBLAS).
//
// One call runs a step over a batch of sequences. Each sequence brings its new tokens (a whole
// prompt for prefill, one token for decode, a slice of a prompt for chunked prefill), how many
// of its tokens the cache already holds, and the block table that covers all of them. The step
// writes the new tokens' keys and values into their slots (block table[p / 16], slot p % 16) and
// returns the logits of each sequence's last new token.
//
//   std::vector<SequenceStep> batch = {{/*seq=*/1, prompt, /*cached_tokens=*/0, blocks}};
//   absl::StatusOr<std::vector<std::vector<float>>> logits = backend->Forward(batch);
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "gpu/attention/kv_layout.h"
#include "gpu/dtype.h"
#include "gpu/sampling/sampling_params.h"
#include "serving/model/config.h"

namespace troupe::serving::engine {

// kKvBlockTokens is the paged KV cache's block size: the gpu/ kernels' (vLLM's and DistServe's).
inline constexpr int kKvBlockTokens = gpu::attention::kBlockSize;

struct SequenceStep {
  int64_t seq_id = 0;
  std::vector<int32_t> tokens;       // The new tokens; at least one.
  int cached_tokens = 0;             // Tokens already in the cache: the first new token's position.
  std::vector<int32_t> block_table;  // Physical blocks for positions [0, cached + new).
};

// KvRange selects the part of each block that a KV transfer moves: layers [layer_begin,
// layer_end) and kv heads [head_begin, head_end). When prefill and decode instances differ in
// tensor or pipeline parallelism, each pair of workers moves only the intersection of their
// ranges. {} is "everything" (the ends default to the model's).
struct KvRange {
  int layer_begin = 0;
  int layer_end = -1;  // -1: the model's number of layers
  int head_begin = 0;
  int head_end = -1;  // -1: the model's number of kv heads
};

// KvRangeOf resolves -1 ends and checks the range against the model; the error names the field.
absl::StatusOr<KvRange> KvRangeOf(const KvRange& range, const model::ModelConfig& config);

// DeviceKvShard is one part of a backend's KV cache that sits in device memory as one array
//   [layer_end - layer_begin][K, V][num_blocks][head_end - head_begin][16][head_dim]
// of the backend's kv_dtype(): the whole cache of a one-GPU backend, one tensor-parallel rank's
// kv heads, or one pipeline stage's layers. Device transports (serving/transfer: peer copies in
// one process, CUDA IPC on one host, NCCL) copy blocks between shards directly, and only the
// layers and heads two shards share. `base` is an allocation of its own (cudaMalloc's pointer),
// so that CUDA IPC can export it.
struct DeviceKvShard {
  int device = -1;  // CUDA device index in the process that holds `base`
  void* base = nullptr;
  int64_t num_blocks = 0;
  int layer_begin = 0;
  int layer_end = 0;
  int head_begin = 0;
  int head_end = 0;
};

// KvShardCopy is one launch of a device KV copy: the layers and heads that source shard
// `source` and destination shard `destination` (indices into the two lists) share.
struct KvShardCopy {
  int source = 0;
  int destination = 0;
  KvRange range;  // resolved
};

// PlanKvShardCopies checks a copy of src_blocks[i] of `sources` into dst_blocks[i] of
// `destinations` and lists its launches, one per pair of shards that share layers and heads.
// Refused (InvalidArgument naming what is wrong): lists of different lengths, no sources, a
// shard outside the model, a block outside a shard, a destination layer and head no source
// holds.
absl::StatusOr<std::vector<KvShardCopy>> PlanKvShardCopies(
    const model::ModelConfig& config, const std::vector<DeviceKvShard>& sources,
    const std::vector<DeviceKvShard>& destinations, const std::vector<int32_t>& src_blocks,
    const std::vector<int32_t>& dst_blocks);

// PendingKvCopy is a copy of KV blocks enqueued on a backend's transfer stream. Its destructor
// waits for the copy if it is still running, so the memory it reads and writes stays valid.
class PendingKvCopy {
 public:
  virtual ~PendingKvCopy() = default;
  // Done polls without blocking: true once every copy has finished; an error if one failed.
  virtual absl::StatusOr<bool> Done() = 0;
  // Wait blocks until every copy has finished.
  virtual absl::Status Wait() = 0;
};

// HostMemory is host bytes a backend allocated (ForwardBackend::AllocateHostMemory): `data`
// stays valid while `owner` lives.
struct HostMemory {
  uint8_t* data = nullptr;
  std::shared_ptr<void> owner;
  bool pinned = false;  // page-locked: device copies to and from it are DMA
};

class ForwardBackend {
 public:
  virtual ~ForwardBackend() = default;

  virtual const model::ModelConfig& config() const = 0;
  // num_kv_blocks is the number of physical blocks in the cache (per layer, K and V each).
  virtual int num_kv_blocks() const = 0;

  // Forward runs one step over `batch` (see the file comment) and returns, per sequence in
  // order, vocab_size logits of its last new token. A malformed step (no tokens, a token out of
  // the vocabulary, a position past the model's context, a block table too short or naming a
  // block outside the cache) is an error naming the sequence; nothing is written then.
  virtual absl::StatusOr<std::vector<std::vector<float>>> Forward(
      const std::vector<SequenceStep>& batch) = 0;

  // ForwardAndSample runs Forward's step and returns, per sequence in order, a token sampled
  // from its logits with params[i] (gpu/sampling: greedy, temperature, top-k, top-p; seeded).
  // The default samples Forward's logits on the host (SampleOnHost); the CUDA backend samples on
  // the device, so that only the tokens leave it (a batch of 64 rows of OPT's 50k-word
  // vocabulary is 13 MB of logits a step). Both give the same tokens for the same logits
  // (host_sampling.h). params must have one entry per sequence (InvalidArgument otherwise).
  virtual absl::StatusOr<std::vector<int32_t>> ForwardAndSample(
      const std::vector<SequenceStep>& batch,
      const std::vector<gpu::sampling::SamplingParams>& params);

  // AllocateHostMemory gives the host memory of a swap pool (HostKvPool): plain memory by
  // default; page-locked (pinned) on a GPU backend, so that swaps run as DMA at the link's full
  // rate, as vLLM's and DistServe's swap space is.
  virtual absl::StatusOr<HostMemory> AllocateHostMemory(size_t bytes) const;

  // ExportKvToSlots is ExportKv of every layer and kv head of `blocks`, written not to one
  // vector but block by block: block i's planes ([layer][K, V], each `KvBytes(.., 1, all) /
  // planes` bytes) go one after the other to slots[i], a block-sized slot of a swap pool.
  // ImportKvFromSlots is its inverse. The defaults go through ExportKv/ImportKv and a copy; the
  // CUDA backend copies between its cache and the slots directly.
  virtual absl::Status ExportKvToSlots(const std::vector<int32_t>& blocks,
                                       const std::vector<uint8_t*>& slots);
  virtual absl::Status ImportKvFromSlots(const std::vector<int32_t>& blocks,
                                         const std::vector<const uint8_t*>& slots);

  // ExportKv copies the keys and values of `blocks` (physical ids, in order) within `range` to
  // bytes laid out as [layer][K, V][block][head][16][head_dim] of the cache's element type
  // (kv_dtype). ImportKv writes such bytes into `blocks` of this cache. Together they move a
  // request's KV between instances; a block id outside the cache, a bad range or a byte count
  // that does not match is an error, and ImportKv then writes nothing.
  virtual gpu::DType kv_dtype() const = 0;
  virtual absl::StatusOr<std::vector<uint8_t>> ExportKv(const std::vector<int32_t>& blocks,
                                                        const KvRange& range) const = 0;
  virtual absl::Status ImportKv(const std::vector<int32_t>& blocks, const KvRange& range,
                                const std::vector<uint8_t>& bytes) = 0;

  // DeviceKvShards lists where the cache sits in device memory, one shard per GPU array (see
  // DeviceKvShard); together they cover every layer and kv head. Empty for a cache that is not
  // in device memory (the CPU backends): such a cache moves as bytes (ExportKv/ImportKv) only.
  virtual std::vector<DeviceKvShard> DeviceKvShards() const { return {}; }

  // CopyKvFromDevice enqueues, on this backend's transfer streams (not the ones its steps run
  // on), copies of block src_blocks[i] of `sources` into block dst_blocks[i] of this cache, for
  // every layer and kv head that a source shard and one of this cache's shards share: one
  // launch per such pair of shards, all blocks at once. The sources are another backend's
  // shards, mapped into this process (the same process, or opened from CUDA IPC handles) on
  // devices this backend's devices can read (the same device, or peer access). The caller keeps
  // the source blocks and dst_blocks out of every step until the copy is done. Lists of
  // different lengths, a block outside either cache, or sources that do not cover this cache's
  // layers and heads are InvalidArgument, and nothing is enqueued; a backend without device
  // shards answers Unimplemented.
  virtual absl::StatusOr<std::unique_ptr<PendingKvCopy>> CopyKvFromDevice(
      const std::vector<DeviceKvShard>& sources, const std::vector<int32_t>& src_blocks,
      const std::vector<int32_t>& dst_blocks);
};

// KvBytes is the size of ExportKv's result for `num_blocks` blocks of `range` (resolved).
int64_t KvBytes(const model::ModelConfig& config, gpu::DType dtype, int64_t num_blocks,
                const KvRange& range);

// LogitRows splits `rows` rows of `width` floats that follow each other at `flat` into one
// vector per row: Forward's result from a backend's [batch, vocab] logits.
std::vector<std::vector<float>> LogitRows(const float* flat, int64_t rows, int64_t width);

// CheckSamplingParams: ForwardAndSample's check that there is one SamplingParams per sequence.
absl::Status CheckSamplingParams(size_t batch, size_t params);

// ValidateStep checks one step against the model and the cache size; the error names the
// sequence, the field and the limit. Backends call it before touching the cache.
absl::Status ValidateStep(const SequenceStep& step, const model::ModelConfig& config,
                          int num_kv_blocks);

}  // namespace troupe::serving::engine
