// Tensor and pipeline parallelism for the CUDA backend (cuda_backend.h): a tensor-parallel group
// runs the ranks of one layer range (internal/cuda_shard.h) on their threads; a group of all
// layers is a ForwardBackend, a group of some layers a pipeline stage.
//
// A step of a group: every rank prepares (grows its scratch memory if the step needs it) on its
// thread, then, once all have, every rank runs the step on its thread; the ranks meet in their
// all-reduces. Preparing first keeps the one failure a rank alone may meet (an allocation) out
// of the all-reduces, where a rank that gives up would leave the others waiting. A rank that
// fails later aborts the group's collective, which frees the in-process ranks at once (NCCL
// work already enqueued cannot be recalled, see gpu/collective.h); the group then refuses every
// later step, since its ranks may disagree about what the cache holds.
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gpu/collective.h"
#include "gpu/dtype.h"
#include "serving/engine/cuda_backend.h"
#include "serving/engine/cuda_parallel_plan.h"
#include "serving/engine/cuda_rank_threads.h"
#include "serving/engine/forward_backend.h"
#include "serving/engine/internal/cuda_shard.h"
#include "serving/engine/stage_backend.h"

namespace troupe::serving::engine {
namespace {

using internal::CudaShard;
using model::ModelConfig;

// HeadPiece is the part of a resolved KV range that one rank holds: the range's heads
// [begin, end), which are the rank's shard's too (its heads are the model's numbering).
struct HeadPiece {
  int rank;
  int begin;
  int end;
};

class TensorParallelGroup {
 public:
  TensorParallelGroup(std::vector<std::unique_ptr<gpu::Collective>> collectives,
                      std::vector<std::unique_ptr<CudaShard>> ranks)
      : collectives_(std::move(collectives)), ranks_(std::move(ranks)) {
    if (ranks_.size() > 1) threads_ = std::make_unique<RankThreads>(ranks_.size());
  }

  ~TensorParallelGroup() {
    threads_.reset();
    ranks_.clear();  // every step has finished: the ranks' streams are idle
    gpu::DestroyCollectives(std::move(collectives_));
  }

  const ModelConfig& config() const { return ranks_.front()->config(); }
  int num_kv_blocks() const { return ranks_.front()->num_kv_blocks(); }
  gpu::DType kv_dtype() const { return ranks_.front()->kv_dtype(); }
  int layer_begin() const { return ranks_.front()->spec().layer_begin; }
  int layer_end() const { return ranks_.front()->spec().layer_end; }
  const std::vector<std::unique_ptr<CudaShard>>& ranks() const { return ranks_; }

  std::vector<CudaShard*> shards() const {
    std::vector<CudaShard*> shards;
    for (const auto& rank : ranks_) shards.push_back(rank.get());
    return shards;
  }

  // Run runs one step on every rank and returns rank 0's output (CudaShard::Run).
  absl::StatusOr<std::vector<float>> Run(const std::vector<SequenceStep>& batch,
                                         const std::vector<float>& hidden) {
    if (!broken_.ok()) return broken_;
    if (threads_ == nullptr) return ranks_.front()->Run(batch, hidden);
    const std::vector<absl::Status> prepared =
        threads_->Run([&](int rank) { return ranks_[rank]->Prepare(batch); });
    if (absl::Status failed = FirstError(prepared); !failed.ok()) return failed;
    std::vector<float> output;
    const std::vector<absl::Status> ran = threads_->Run([&](int rank) -> absl::Status {
      absl::StatusOr<std::vector<float>> out = ranks_[rank]->Run(batch, hidden);
      if (!out.ok()) {
        collectives_[rank]->Abort(absl::StrCat("rank ", rank, "'s step failed: ",
                                               out.status().message()));
        return out.status();
      }
      if (rank == 0) output = *std::move(out);
      return absl::OkStatus();
    });
    if (absl::Status failed = FirstError(ran); !failed.ok()) {
      broken_ = absl::FailedPreconditionError(absl::StrCat(
          "a tensor-parallel step failed earlier (", failed.message(),
          "); its ranks' caches may disagree: make a new backend"));
      return failed;
    }
    return output;
  }

  // ExportKv gathers the range's heads from the ranks that hold them: the bytes are
  // [layer][K, V][block][head][16][head_dim], so each (layer, K or V, block) run of every rank's
  // piece goes side by side, in head order.
  absl::StatusOr<std::vector<uint8_t>> ExportKv(const std::vector<int32_t>& blocks,
                                                const KvRange& range) const {
    absl::StatusOr<KvRange> r = KvRangeOf(range, config());
    if (!r.ok()) return r.status();
    if (ranks_.size() == 1) return ranks_.front()->ExportKv(blocks, *r);
    std::vector<std::vector<uint8_t>> pieces;
    const std::vector<HeadPiece> split = Split(*r);
    for (const HeadPiece& piece : split) {
      KvRange part = *r;
      part.head_begin = piece.begin;
      part.head_end = piece.end;
      absl::StatusOr<std::vector<uint8_t>> bytes = ranks_[piece.rank]->ExportKv(blocks, part);
      if (!bytes.ok()) return bytes.status();
      pieces.push_back(*std::move(bytes));
    }
    std::vector<uint8_t> bytes(KvBytes(config(), kv_dtype(), blocks.size(), *r));
    Interleave(*r, blocks.size(), split, [&](size_t p, size_t piece_offset, size_t offset,
                                             size_t size) {
      std::memcpy(bytes.data() + offset, pieces[p].data() + piece_offset, size);
    });
    return bytes;
  }

  absl::Status ImportKv(const std::vector<int32_t>& blocks, const KvRange& range,
                        const std::vector<uint8_t>& bytes) {
    absl::StatusOr<KvRange> r = KvRangeOf(range, config());
    if (!r.ok()) return r.status();
    if (ranks_.size() == 1) return ranks_.front()->ImportKv(blocks, *r, bytes);
    const int64_t expected = KvBytes(config(), kv_dtype(), blocks.size(), *r);
    if (static_cast<int64_t>(bytes.size()) != expected) {
      return absl::InvalidArgumentError(absl::StrCat("ImportKv: ", bytes.size(), " bytes for ",
                                                     blocks.size(), " blocks of this range; ",
                                                     expected, " expected"));
    }
    // Checked up front, so that a bad block writes nothing on any rank.
    for (int32_t block : blocks) {
      if (block < 0 || block >= num_kv_blocks()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "KV block ", block, " is outside the cache's ", num_kv_blocks(), " blocks"));
      }
    }
    const std::vector<HeadPiece> split = Split(*r);
    std::vector<std::vector<uint8_t>> pieces(split.size());
    for (size_t p = 0; p < split.size(); ++p) {
      KvRange part = *r;
      part.head_begin = split[p].begin;
      part.head_end = split[p].end;
      pieces[p].resize(KvBytes(config(), kv_dtype(), blocks.size(), part));
    }
    Interleave(*r, blocks.size(), split, [&](size_t p, size_t piece_offset, size_t offset,
                                             size_t size) {
      std::memcpy(pieces[p].data() + piece_offset, bytes.data() + offset, size);
    });
    for (size_t p = 0; p < split.size(); ++p) {
      KvRange part = *r;
      part.head_begin = split[p].begin;
      part.head_end = split[p].end;
      if (absl::Status s = ranks_[split[p].rank]->ImportKv(blocks, part, pieces[p]); !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

  std::vector<DeviceKvShard> DeviceKvShards() const { return ConcatKvShards(ranks_); }

  // Every rank copies what its kv heads share with the sources (stage_backend.h:
  // CopyKvIntoParts).
  absl::StatusOr<std::unique_ptr<PendingKvCopy>> CopyKvFromDevice(
      const std::vector<DeviceKvShard>& sources, const std::vector<int32_t>& src_blocks,
      const std::vector<int32_t>& dst_blocks) {
    return CopyKvIntoParts(ranks_, sources, src_blocks, dst_blocks,
                           [](size_t r) { return absl::StrCat("tensor-parallel rank ", r); });
  }

 private:
  static absl::Status FirstError(const std::vector<absl::Status>& statuses) {
    for (size_t r = 0; r < statuses.size(); ++r) {
      if (!statuses[r].ok()) {
        return absl::Status(statuses[r].code(), absl::StrCat("tensor-parallel rank ", r, ": ",
                                                             statuses[r].message()));
      }
    }
    return absl::OkStatus();
  }

  // Split is the range's heads by rank, in head order.
  std::vector<HeadPiece> Split(const KvRange& r) const {
    std::vector<HeadPiece> split;
    for (size_t rank = 0; rank < ranks_.size(); ++rank) {
      const int per_rank = config().num_kv_heads / static_cast<int>(ranks_.size());
      const int begin = std::max(r.head_begin, static_cast<int>(rank) * per_rank);
      const int end = std::min(r.head_end, static_cast<int>(rank + 1) * per_rank);
      if (begin < end) split.push_back({static_cast<int>(rank), begin, end});
    }
    return split;
  }

  // Interleave walks the range's (layer, K or V, block) runs and calls
  // copy(piece, offset in the piece, offset in the whole, bytes) for every piece's part of each.
  template <typename Copy>
  void Interleave(const KvRange& r, size_t num_blocks, const std::vector<HeadPiece>& split,
                  Copy copy) const {
    const size_t head_bytes =
        static_cast<size_t>(kKvBlockTokens) * config().head_dim() * gpu::SizeOf(kv_dtype());
    const size_t run = static_cast<size_t>(r.head_end - r.head_begin) * head_bytes;
    const size_t runs = 2 * static_cast<size_t>(r.layer_end - r.layer_begin) * num_blocks;
    for (size_t i = 0; i < runs; ++i) {
      for (size_t p = 0; p < split.size(); ++p) {
        const size_t size = static_cast<size_t>(split[p].end - split[p].begin) * head_bytes;
        copy(p, i * size, i * run + (split[p].begin - r.head_begin) * head_bytes, size);
      }
    }
  }

  std::vector<std::unique_ptr<gpu::Collective>> collectives_;
  std::vector<std::unique_ptr<CudaShard>> ranks_;
  std::unique_ptr<RankThreads> threads_;  // one per rank; none for a single rank
  absl::Status broken_;
};

// MakeGroup loads layers [layer_begin, layer_end) over one rank per device of `devices`, with
// their collective; the caches come later (AllocateCudaCaches).
absl::StatusOr<std::unique_ptr<TensorParallelGroup>> MakeGroup(const ModelConfig& config,
                                                               const model::WeightSource& weights,
                                                               const CudaBackendOptions& options,
                                                               int layer_begin, int layer_end,
                                                               const std::vector<int>& devices) {
  const int world = static_cast<int>(devices.size());
  std::vector<std::unique_ptr<gpu::Collective>> collectives;
  if (world > 1) {
    absl::StatusOr<std::vector<std::unique_ptr<gpu::Collective>>> made =
        gpu::CreateCollectives(devices);
    if (!made.ok()) {
      return absl::Status(made.status().code(),
                          absl::StrCat("CudaBackend: the all-reduce of tensor_parallel ", world,
                                       " over cuda:", absl::StrJoin(devices, ", cuda:"), ": ",
                                       made.status().message()));
    }
    collectives = *std::move(made);
  }
  std::vector<std::unique_ptr<CudaShard>> ranks;
  for (int r = 0; r < world; ++r) {
    internal::CudaShardSpec spec;
    spec.layer_begin = layer_begin;
    spec.layer_end = layer_end;
    spec.rank = r;
    spec.world = world;
    spec.device = devices[r];
    spec.collective = world > 1 ? collectives[r].get() : nullptr;
    absl::StatusOr<std::unique_ptr<CudaShard>> shard =
        internal::CreateCudaShard(config, weights, options, spec);
    if (!shard.ok()) {
      ranks.clear();
      gpu::DestroyCollectives(std::move(collectives));
      return shard.status();
    }
    ranks.push_back(*std::move(shard));
  }
  return std::make_unique<TensorParallelGroup>(std::move(collectives), std::move(ranks));
}

// RankDevices is where options put the tensor-parallel ranks.
std::vector<int> RankDevices(const CudaBackendOptions& options) {
  if (!options.tensor_parallel_devices.empty()) return options.tensor_parallel_devices;
  return std::vector<int>(options.tensor_parallel, options.device);
}

class CudaTensorParallelBackend : public ForwardBackend {
 public:
  explicit CudaTensorParallelBackend(std::unique_ptr<TensorParallelGroup> group)
      : group_(std::move(group)) {}

  const ModelConfig& config() const override { return group_->config(); }
  int num_kv_blocks() const override { return group_->num_kv_blocks(); }
  gpu::DType kv_dtype() const override { return group_->kv_dtype(); }

  absl::StatusOr<std::vector<std::vector<float>>> Forward(
      const std::vector<SequenceStep>& batch) override {
    for (const SequenceStep& step : batch) {
      if (absl::Status valid = ValidateStep(step, config(), num_kv_blocks()); !valid.ok()) {
        return valid;
      }
    }
    if (batch.empty()) return std::vector<std::vector<float>>{};
    absl::StatusOr<std::vector<float>> logits = group_->Run(batch, {});
    if (!logits.ok()) return logits.status();
    return LogitRows(logits->data(), static_cast<int64_t>(batch.size()), config().vocab_size);
  }

  absl::StatusOr<std::vector<uint8_t>> ExportKv(const std::vector<int32_t>& blocks,
                                                const KvRange& range) const override {
    return group_->ExportKv(blocks, range);
  }
  absl::Status ImportKv(const std::vector<int32_t>& blocks, const KvRange& range,
                        const std::vector<uint8_t>& bytes) override {
    return group_->ImportKv(blocks, range, bytes);
  }
  std::vector<DeviceKvShard> DeviceKvShards() const override { return group_->DeviceKvShards(); }
  absl::StatusOr<std::unique_ptr<PendingKvCopy>> CopyKvFromDevice(
      const std::vector<DeviceKvShard>& sources, const std::vector<int32_t>& src_blocks,
      const std::vector<int32_t>& dst_blocks) override {
    return group_->CopyKvFromDevice(sources, src_blocks, dst_blocks);
  }

 private:
  std::unique_ptr<TensorParallelGroup> group_;
};

class CudaStage : public StageBackend {
 public:
  explicit CudaStage(std::unique_ptr<TensorParallelGroup> group) : group_(std::move(group)) {}

  const ModelConfig& config() const override { return group_->config(); }
  int layer_begin() const override { return group_->layer_begin(); }
  int layer_end() const override { return group_->layer_end(); }
  int num_kv_blocks() const override { return group_->num_kv_blocks(); }
  gpu::DType kv_dtype() const override { return group_->kv_dtype(); }

  absl::StatusOr<std::vector<float>> Run(const std::vector<SequenceStep>& batch,
                                         const std::vector<float>& hidden) override {
    return group_->Run(batch, hidden);
  }

  absl::StatusOr<std::vector<uint8_t>> ExportKv(const std::vector<int32_t>& blocks,
                                                const KvRange& range) const override {
    absl::StatusOr<KvRange> r = StageRange(range);
    if (!r.ok()) return r.status();
    return group_->ExportKv(blocks, *r);
  }
  absl::Status ImportKv(const std::vector<int32_t>& blocks, const KvRange& range,
                        const std::vector<uint8_t>& bytes) override {
    absl::StatusOr<KvRange> r = StageRange(range);
    if (!r.ok()) return r.status();
    return group_->ImportKv(blocks, *r, bytes);
  }
  std::vector<DeviceKvShard> DeviceKvShards() const override { return group_->DeviceKvShards(); }
  absl::StatusOr<std::unique_ptr<PendingKvCopy>> CopyKvFromDevice(
      const std::vector<DeviceKvShard>& sources, const std::vector<int32_t>& src_blocks,
      const std::vector<int32_t>& dst_blocks) override {
    return group_->CopyKvFromDevice(sources, src_blocks, dst_blocks);
  }

 private:
  // StageRange resolves `range` and checks that its layers are this stage's.
  absl::StatusOr<KvRange> StageRange(const KvRange& range) const {
    absl::StatusOr<KvRange> r = KvRangeOf(range, config());
    if (!r.ok()) return r.status();
    if (r->layer_begin < layer_begin() || r->layer_end > layer_end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "KV layers [", r->layer_begin, ", ", r->layer_end, ") are not all in this stage's [",
          layer_begin(), ", ", layer_end(), "); ask the stage that holds them"));
    }
    return r;
  }

  std::unique_ptr<TensorParallelGroup> group_;
};

}  // namespace

namespace internal {

absl::StatusOr<std::unique_ptr<ForwardBackend>> CreateCudaTensorParallelBackend(
    const ModelConfig& config, const model::WeightSource& weights,
    const CudaBackendOptions& options) {
  if (absl::Status valid = CheckCudaOptions(config, options); !valid.ok()) return valid;
  absl::StatusOr<std::unique_ptr<TensorParallelGroup>> group =
      MakeGroup(config, weights, options, 0, config.num_layers, RankDevices(options));
  if (!group.ok()) return group.status();
  if (absl::Status allocated = AllocateCudaCaches((*group)->shards(), options);
      !allocated.ok()) {
    return allocated;
  }
  return std::unique_ptr<ForwardBackend>(
      std::make_unique<CudaTensorParallelBackend>(*std::move(group)));
}

}  // namespace internal

absl::StatusOr<std::vector<std::unique_ptr<StageBackend>>> CreateCudaStages(
    const ModelConfig& config, const model::WeightSource& weights,
    const CudaBackendOptions& options, const CudaParallelPlan& plan) {
  if (plan.stages.empty()) {
    return absl::InvalidArgumentError("CreateCudaStages: the plan has no stage; give at least one");
  }
  // The options' checks, for the plan's degree and each stage's devices.
  CudaBackendOptions checked = options;
  checked.tensor_parallel = plan.tensor_parallel;
  int next_layer = 0;
  for (size_t i = 0; i < plan.stages.size(); ++i) {
    const CudaStagePlan& stage = plan.stages[i];
    if (stage.layer_begin != next_layer || stage.layer_end <= stage.layer_begin ||
        stage.layer_end > config.num_layers) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CreateCudaStages: stage ", i, " holds layers [", stage.layer_begin, ", ",
          stage.layer_end, "); stages must cover ", config.name, "'s ", config.num_layers,
          " layers in order, each at least one, starting at layer ", next_layer));
    }
    next_layer = stage.layer_end;
    checked.tensor_parallel_devices = stage.devices;
    checked.device = stage.devices.empty() ? options.device : stage.devices.front();
    if (absl::Status valid = internal::CheckCudaOptions(config, checked); !valid.ok()) {
      return absl::Status(valid.code(),
                          absl::StrCat("pipeline stage ", i, ": ", valid.message()));
    }
  }
  std::vector<std::unique_ptr<TensorParallelGroup>> groups;
  std::vector<CudaShard*> shards;
  for (size_t i = 0; i < plan.stages.size(); ++i) {
    const CudaStagePlan& stage = plan.stages[i];
    absl::StatusOr<std::unique_ptr<TensorParallelGroup>> group =
        MakeGroup(config, weights, checked, stage.layer_begin, stage.layer_end, stage.devices);
    if (!group.ok()) {
      return absl::Status(group.status().code(), absl::StrCat("pipeline stage ", i, ": ",
                                                              group.status().message()));
    }
    for (CudaShard* shard : (*group)->shards()) shards.push_back(shard);
    groups.push_back(*std::move(group));
  }
  if (absl::Status allocated = internal::AllocateCudaCaches(shards, options); !allocated.ok()) {
    return allocated;
  }
  std::vector<std::unique_ptr<StageBackend>> stages;
  for (auto& group : groups) stages.push_back(std::make_unique<CudaStage>(std::move(group)));
  return stages;
}

absl::StatusOr<std::unique_ptr<StageBackend>> CreateCudaStage(const ModelConfig& config,
                                                              const model::WeightSource& weights,
                                                              const CudaBackendOptions& options) {
  if (absl::Status valid = model::Validate(config); !valid.ok()) return valid;
  const int end = options.layer_end < 0 ? config.num_layers : options.layer_end;
  if (options.layer_begin < 0 || options.layer_begin >= end || end > config.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CudaBackendOptions layers [", options.layer_begin, ", ", options.layer_end,
        ") are not a non-empty range of ", config.name, "'s ", config.num_layers, " layers"));
  }
  if (absl::Status valid = internal::CheckCudaOptions(config, options); !valid.ok()) return valid;
  absl::StatusOr<std::unique_ptr<TensorParallelGroup>> group = MakeGroup(
      config, weights, options, options.layer_begin, end, RankDevices(options));
  if (!group.ok()) return group.status();
  if (absl::Status allocated = internal::AllocateCudaCaches((*group)->shards(), options);
      !allocated.ok()) {
    return allocated;
  }
  return std::unique_ptr<StageBackend>(std::make_unique<CudaStage>(*std::move(group)));
}

}  // namespace troupe::serving::engine
