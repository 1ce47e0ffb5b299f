#include "serving/engine/pipeline_backend.h"

#include <algorithm>
#include <future>
#include <iterator>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "caf/all.hpp"

namespace troupe::serving::engine {
namespace {

// StageJob is one step on its way through the stages: the batch, the hidden states from the
// previous stage, and where the last stage (or a failing one) puts the result.
struct StageJob {
  std::vector<SequenceStep> batch;
  std::vector<float> hidden;
  std::promise<absl::StatusOr<std::vector<float>>> result;
};

}  // namespace
}  // namespace troupe::serving::engine

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<troupe::serving::engine::StageJob>)

namespace troupe::serving::engine {
namespace {

// StageActor runs `stage` on each job and hands the job to `next`, or, at the last stage or on
// an error, completes it.
caf::behavior StageActor(caf::event_based_actor* self, StageBackend* stage, caf::actor next) {
  return {[stage, next, self](std::shared_ptr<StageJob>& job) {
    absl::StatusOr<std::vector<float>> out = stage->Run(job->batch, job->hidden);
    if (!out.ok() || next == nullptr) {
      job->result.set_value(std::move(out));
      return;
    }
    job->hidden = *std::move(out);
    self->send(next, std::move(job));
  }};
}

class PipelineBackend : public ForwardBackend {
 public:
  PipelineBackend(caf::actor_system& system, std::vector<std::unique_ptr<StageBackend>> stages,
                  int micro_batches)
      : stages_(std::move(stages)), micro_batches_(micro_batches) {
    caf::actor next;
    actors_.resize(stages_.size());
    for (size_t i = stages_.size(); i-- > 0;) {
      actors_[i] = system.spawn<caf::detached>(StageActor, stages_[i].get(), next);
      next = actors_[i];
    }
  }

  ~PipelineBackend() override {
    for (const caf::actor& a : actors_) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  }

  const model::ModelConfig& config() const override { return stages_.front()->config(); }
  int num_kv_blocks() const override { return stages_.front()->num_kv_blocks(); }
  gpu::DType kv_dtype() const override { return stages_.front()->kv_dtype(); }

  absl::StatusOr<std::vector<std::vector<float>>> Forward(
      const std::vector<SequenceStep>& batch) override {
    for (const SequenceStep& step : batch) {
      if (absl::Status valid = ValidateStep(step, config(), num_kv_blocks()); !valid.ok()) {
        return valid;
      }
    }
    if (batch.empty()) return std::vector<std::vector<float>>{};
    // Micro-batches of consecutive sequences with about equal numbers of new tokens go into the
    // pipeline one after another, so that stage i works on micro-batch k while stage i + 1 works
    // on micro-batch k - 1.
    int64_t total = 0;
    for (const SequenceStep& step : batch) total += static_cast<int64_t>(step.tokens.size());
    const int64_t parts = std::min<int64_t>(micro_batches_, static_cast<int64_t>(batch.size()));
    std::vector<std::future<absl::StatusOr<std::vector<float>>>> done;
    auto job = std::make_shared<StageJob>();
    int64_t tokens = 0;
    for (size_t s = 0; s < batch.size(); ++s) {
      job->batch.push_back(batch[s]);
      tokens += static_cast<int64_t>(batch[s].tokens.size());
      const int64_t sent = static_cast<int64_t>(done.size());
      const bool full = tokens * parts >= total * (sent + 1) && sent + 1 < parts;
      if (full || s + 1 == batch.size()) {
        done.push_back(job->result.get_future());
        caf::anon_send(actors_.front(), std::move(job));
        job = std::make_shared<StageJob>();
      }
    }
    const int64_t vocab = config().vocab_size;
    std::vector<std::vector<float>> rows;
    absl::Status failed;
    for (auto& part : done) {  // every micro-batch is waited for, even after an error
      absl::StatusOr<std::vector<float>> logits = part.get();
      if (!logits.ok()) {
        if (failed.ok()) failed = logits.status();
        continue;
      }
      std::vector<std::vector<float>> part_rows =
          LogitRows(logits->data(), static_cast<int64_t>(logits->size()) / vocab, vocab);
      std::move(part_rows.begin(), part_rows.end(), std::back_inserter(rows));
    }
    if (!failed.ok()) return failed;
    return rows;
  }

  // The stages' actors are idle between steps (Forward waits for its step), so their caches are
  // read and written here directly, stage by stage, in layer order: the bytes are laid out by
  // layer first, so the stages' pieces concatenate into the whole range's.
  absl::StatusOr<std::vector<uint8_t>> ExportKv(const std::vector<int32_t>& blocks,
                                                const KvRange& range) const override {
    absl::StatusOr<KvRange> r = KvRangeOf(range, config());
    if (!r.ok()) return r.status();
    std::vector<uint8_t> bytes;
    for (const auto& stage : stages_) {
      std::optional<KvRange> part = Intersect(*r, *stage);
      if (!part) continue;
      absl::StatusOr<std::vector<uint8_t>> piece = stage->ExportKv(blocks, *part);
      if (!piece.ok()) return piece.status();
      bytes.insert(bytes.end(), piece->begin(), piece->end());
    }
    return bytes;
  }

  absl::Status ImportKv(const std::vector<int32_t>& blocks, const KvRange& range,
                        const std::vector<uint8_t>& bytes) override {
    absl::StatusOr<KvRange> r = KvRangeOf(range, config());
    if (!r.ok()) return r.status();
    const int64_t expected = KvBytes(config(), kv_dtype(), blocks.size(), *r);
    if (static_cast<int64_t>(bytes.size()) != expected) {
      return absl::InvalidArgumentError(absl::StrCat("ImportKv: ", bytes.size(), " bytes for ",
                                                     blocks.size(), " blocks of this range; ",
                                                     expected, " expected"));
    }
    for (int32_t block : blocks) {  // checked up front, so that a bad block writes nothing
      if (block < 0 || block >= num_kv_blocks()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "KV block ", block, " is outside the cache's ", num_kv_blocks(), " blocks"));
      }
    }
    size_t offset = 0;
    for (const auto& stage : stages_) {
      std::optional<KvRange> part = Intersect(*r, *stage);
      if (!part) continue;
      const size_t size = static_cast<size_t>(KvBytes(config(), kv_dtype(), blocks.size(), *part));
      std::vector<uint8_t> piece(bytes.begin() + offset, bytes.begin() + offset + size);
      if (absl::Status s = stage->ImportKv(blocks, *part, piece); !s.ok()) return s;
      offset += size;
    }
    return absl::OkStatus();
  }

  std::vector<DeviceKvShard> DeviceKvShards() const override { return ConcatKvShards(stages_); }

  // Every stage copies the layers it holds (stage_backend.h: CopyKvIntoParts).
  absl::StatusOr<std::unique_ptr<PendingKvCopy>> CopyKvFromDevice(
      const std::vector<DeviceKvShard>& sources, const std::vector<int32_t>& src_blocks,
      const std::vector<int32_t>& dst_blocks) override {
    return CopyKvIntoParts(stages_, sources, src_blocks, dst_blocks, [&](size_t i) {
      return absl::StrCat("pipeline stage [", stages_[i]->layer_begin(), ", ",
                          stages_[i]->layer_end(), ")");
    });
  }

 private:
  // Intersect is the part of resolved range `r` whose layers `stage` holds, if any.
  static std::optional<KvRange> Intersect(const KvRange& r, const StageBackend& stage) {
    KvRange part = r;
    part.layer_begin = std::max(r.layer_begin, stage.layer_begin());
    part.layer_end = std::min(r.layer_end, stage.layer_end());
    if (part.layer_begin >= part.layer_end) return std::nullopt;
    return part;
  }

  std::vector<std::unique_ptr<StageBackend>> stages_;
  int micro_batches_;
  std::vector<caf::actor> actors_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ForwardBackend>> CreatePipelineBackend(
    caf::actor_system& system, std::vector<std::unique_ptr<StageBackend>> stages,
    const PipelineOptions& options) {
  if (stages.empty()) return absl::InvalidArgumentError("a pipeline needs at least one stage");
  if (options.micro_batches < 0) {
    return absl::InvalidArgumentError(absl::StrCat("PipelineOptions.micro_batches is ",
                                                   options.micro_batches,
                                                   "; it must be >= 0 (0: one per stage)"));
  }
  const int micro_batches =
      options.micro_batches > 0 ? options.micro_batches : static_cast<int>(stages.size());
  const model::ModelConfig& config = stages.front()->config();
  int next_layer = 0;
  for (size_t i = 0; i < stages.size(); ++i) {
    const StageBackend& stage = *stages[i];
    const auto fail = [&](const std::string& what) {
      return absl::InvalidArgumentError(absl::StrCat("pipeline stage ", i, " (layers [",
                                                     stage.layer_begin(), ", ", stage.layer_end(),
                                                     ")): ", what));
    };
    if (stage.config().name != config.name || stage.config().num_layers != config.num_layers) {
      return fail(absl::StrCat("is of model ", stage.config().name, ", not ", config.name));
    }
    if (stage.num_kv_blocks() != stages.front()->num_kv_blocks()) {
      return fail("has a KV cache of another size; size every stage's cache alike");
    }
    if (stage.layer_begin() != next_layer) {
      return fail(absl::StrCat("should begin at layer ", next_layer,
                               ": stages must cover the layers in order, without gaps"));
    }
    next_layer = stage.layer_end();
  }
  if (next_layer != config.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("the pipeline's stages end at layer ",
                                                   next_layer, " of ", config.num_layers,
                                                   "; add a stage for the rest"));
  }
  return std::unique_ptr<ForwardBackend>(
      std::make_unique<PipelineBackend>(system, std::move(stages), micro_batches));
}

}  // namespace troupe::serving::engine
