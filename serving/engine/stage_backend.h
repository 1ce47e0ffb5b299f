// StageBackend: layers [layer_begin, layer_end) of a model, one stage of pipeline parallelism.
// A PipelineBackend (pipeline_backend.h) chains stages, each in an actor of its own, into a
// ForwardBackend: the first stage embeds the tokens, every stage runs its layers over the
// hidden states (writing its layers' keys and values into its part of the paged cache), and the
// last stage applies the final norm and the output head.
//
//   absl::StatusOr<std::unique_ptr<StageBackend>> stage =
//       CreateCpuStage(config, *weights, {.num_kv_blocks = 256, .layer_begin = 0, .layer_end = 12});
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gpu/dtype.h"
#include "serving/engine/forward_backend.h"
#include "serving/model/config.h"

namespace troupe::serving::engine {

class StageBackend {
 public:
  virtual ~StageBackend() = default;

  virtual const model::ModelConfig& config() const = 0;
  virtual int layer_begin() const = 0;
  virtual int layer_end() const = 0;
  bool first() const { return layer_begin() == 0; }
  bool last() const { return layer_end() == config().num_layers; }
  virtual int num_kv_blocks() const = 0;
  virtual gpu::DType kv_dtype() const = 0;

  // Run runs this stage over `batch` (ForwardBackend::Forward's steps, already validated by the
  // caller). The first stage takes no hidden states; the others take the previous stage's output,
  // [new tokens, hidden_size] row-major. The last stage returns [batch, vocab_size] logits of each
  // sequence's last new token; the others their hidden states for the next stage.
  virtual absl::StatusOr<std::vector<float>> Run(const std::vector<SequenceStep>& batch,
                                                 const std::vector<float>& hidden) = 0;

  // ExportKv and ImportKv are ForwardBackend's, for a range whose layers are all this stage's
  // (resolved ranges; layer indices are the model's). Other ranges are errors naming both.
  virtual absl::StatusOr<std::vector<uint8_t>> ExportKv(const std::vector<int32_t>& blocks,
                                                        const KvRange& range) const = 0;
  virtual absl::Status ImportKv(const std::vector<int32_t>& blocks, const KvRange& range,
                                const std::vector<uint8_t>& bytes) = 0;

  // DeviceKvShards and CopyKvFromDevice are ForwardBackend's (forward_backend.h) for this
  // stage's part of the cache: its shards in device memory (none for a stage whose cache is on
  // the host, the default), and copies into them of every layer and head they share with
  // `sources`. A pipeline lists its stages' shards together and hands a copy to every stage.
  virtual std::vector<DeviceKvShard> DeviceKvShards() const { return {}; }
  virtual absl::StatusOr<std::unique_ptr<PendingKvCopy>> CopyKvFromDevice(
      const std::vector<DeviceKvShard>& sources, const std::vector<int32_t>& src_blocks,
      const std::vector<int32_t>& dst_blocks);
};

// CombinePendingKvCopies is one PendingKvCopy made of several (a pipeline's stages', a
// tensor-parallel backend's ranks'): done when every part is, failed when one failed; its
// destructor waits for every part.
std::unique_ptr<PendingKvCopy> CombinePendingKvCopies(
    std::vector<std::unique_ptr<PendingKvCopy>> parts);

// ConcatKvShards lists the DeviceKvShards of every part of a cache split into parts (a
// pipeline's stages, a tensor-parallel backend's ranks), in order.
template <class Parts>
std::vector<DeviceKvShard> ConcatKvShards(const Parts& parts) {
  std::vector<DeviceKvShard> shards;
  for (const auto& part : parts) {
    std::vector<DeviceKvShard> own = part->DeviceKvShards();
    shards.insert(shards.end(), own.begin(), own.end());
  }
  return shards;
}

// CopyKvIntoParts checks that the block lists pair up, then hands a CopyKvFromDevice to every
// part, each copying what its shards share with the sources on its own transfer stream, and
// combines them. A part that refuses after others enqueued theirs fails the whole copy, its
// error prefixed by describe(index); the enqueued parts are waited for (their destructors)
// before the error returns.
template <class Parts, class Describe>
absl::StatusOr<std::unique_ptr<PendingKvCopy>> CopyKvIntoParts(
    const Parts& parts, const std::vector<DeviceKvShard>& sources,
    const std::vector<int32_t>& src_blocks, const std::vector<int32_t>& dst_blocks,
    const Describe& describe) {
  if (src_blocks.size() != dst_blocks.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CopyKvFromDevice: ", src_blocks.size(), " source blocks but ", dst_blocks.size(),
        " destination blocks; give one destination per source"));
  }
  if (parts.size() == 1) return parts.front()->CopyKvFromDevice(sources, src_blocks, dst_blocks);
  std::vector<std::unique_ptr<PendingKvCopy>> copies;
  for (size_t i = 0; i < parts.size(); ++i) {
    absl::StatusOr<std::unique_ptr<PendingKvCopy>> copy =
        parts[i]->CopyKvFromDevice(sources, src_blocks, dst_blocks);
    if (!copy.ok()) {
      return absl::Status(copy.status().code(),
                          absl::StrCat(describe(i), ": ", copy.status().message()));
    }
    copies.push_back(*std::move(copy));
  }
  return CombinePendingKvCopies(std::move(copies));
}

}  // namespace troupe::serving::engine
