#include "serving/engine/stage_backend.h"

#include <utility>

namespace troupe::serving::engine {
namespace {

class CombinedKvCopy : public PendingKvCopy {
 public:
  explicit CombinedKvCopy(std::vector<std::unique_ptr<PendingKvCopy>> parts)
      : parts_(std::move(parts)) {}

  absl::StatusOr<bool> Done() override {
    bool all = true;
    for (const std::unique_ptr<PendingKvCopy>& part : parts_) {
      absl::StatusOr<bool> done = part->Done();
      if (!done.ok()) return done.status();
      all = all && *done;
    }
    return all;
  }

  absl::Status Wait() override {
    absl::Status first_error;
    for (const std::unique_ptr<PendingKvCopy>& part : parts_) {
      absl::Status waited = part->Wait();
      if (first_error.ok()) first_error = waited;
    }
    return first_error;
  }

 private:
  std::vector<std::unique_ptr<PendingKvCopy>> parts_;  // each waits in its own destructor
};

}  // namespace

absl::StatusOr<std::unique_ptr<PendingKvCopy>> StageBackend::CopyKvFromDevice(
    const std::vector<DeviceKvShard>& /*sources*/, const std::vector<int32_t>& /*src_blocks*/,
    const std::vector<int32_t>& /*dst_blocks*/) {
  return absl::UnimplementedError(
      "this pipeline stage's KV cache is not in device memory: it moves as bytes (kv_transport = "
      "\"bytes\")");
}

std::unique_ptr<PendingKvCopy> CombinePendingKvCopies(
    std::vector<std::unique_ptr<PendingKvCopy>> parts) {
  return std::make_unique<CombinedKvCopy>(std::move(parts));
}

}  // namespace troupe::serving::engine
