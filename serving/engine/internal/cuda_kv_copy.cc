#include "serving/engine/internal/cuda_kv_copy.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "actors/status_macros.h"
#include "gpu/attention/paged_kv.h"
#include "gpu/buffer.h"
#include "gpu/device.h"
#include "gpu/event.h"

namespace troupe::serving::engine::internal {
namespace {

// A copy in flight: the event marks its end on the transfer stream; the block pairs stay on
// the device until then.
class EventKvCopy : public PendingKvCopy {
 public:
  EventKvCopy(gpu::Event done, gpu::PooledBuffer pairs)
      : done_(std::move(done)), pairs_(std::move(pairs)) {}
  ~EventKvCopy() override { (void)done_.Synchronize(); }  // the pairs go back to the pool after

  absl::StatusOr<bool> Done() override { return done_.IsDone(); }
  absl::Status Wait() override { return done_.Synchronize(); }

 private:
  gpu::Event done_;
  gpu::PooledBuffer pairs_;
};

// EnsurePeerAccess lets `device` read memory of `peer` (a no-op for the same device).
absl::Status EnsurePeerAccess(int device, int peer) {
  if (device == peer) return absl::OkStatus();
  int can = 0;
  if (cudaDeviceCanAccessPeer(&can, device, peer) != cudaSuccess || can == 0) {
    cudaGetLastError();
    return absl::FailedPreconditionError(absl::StrCat(
        "CopyKvFromDevice: cuda:", device, " cannot read cuda:", peer,
        "'s memory (no peer access between them); move KV between these instances with "
        "kv_transport = \"nccl\" or \"bytes\""));
  }
  const cudaError_t enabled = cudaDeviceEnablePeerAccess(peer, 0);
  if (enabled != cudaSuccess && enabled != cudaErrorPeerAccessAlreadyEnabled) {
    cudaGetLastError();
    return absl::InternalError(absl::StrCat("cudaDeviceEnablePeerAccess(cuda:", device,
                                            " -> cuda:", peer,
                                            "): ", cudaGetErrorString(enabled)));
  }
  cudaGetLastError();  // cudaErrorPeerAccessAlreadyEnabled is not an error here
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PendingKvCopy>> CopyKvBetweenShards(
    const model::ModelConfig& config, gpu::DType dtype, const std::vector<DeviceKvShard>& sources,
    const std::vector<DeviceKvShard>& destinations, const std::vector<int32_t>& src_blocks,
    const std::vector<int32_t>& dst_blocks, gpu::Stream& stream, gpu::MemoryPool& pool) {
  absl::StatusOr<std::vector<KvShardCopy>> plan =
      PlanKvShardCopies(config, sources, destinations, src_blocks, dst_blocks);
  if (!plan.ok()) return plan.status();
  for (const DeviceKvShard& d : destinations) {
    if (d.device != stream.device()) {
      return absl::InternalError(absl::StrCat("KV copy: a destination shard on cuda:", d.device,
                                              " is not on the transfer stream's cuda:",
                                              stream.device()));
    }
  }
  absl::StatusOr<gpu::ScopedDevice> scoped = gpu::ScopedDevice::Enter(stream.device());
  if (!scoped.ok()) return scoped.status();
  for (const DeviceKvShard& s : sources) {
    TROUPE_RETURN_IF_ERROR(EnsurePeerAccess(stream.device(), s.device));
  }
  std::vector<int32_t> pairs;
  pairs.reserve(2 * src_blocks.size());
  for (size_t i = 0; i < src_blocks.size(); ++i) {
    pairs.push_back(src_blocks[i]);
    pairs.push_back(dst_blocks[i]);
  }
  absl::StatusOr<gpu::PooledBuffer> device_pairs =
      pool.Allocate(std::max<size_t>(pairs.size() * sizeof(int32_t), 1), stream.device());
  if (!device_pairs.ok()) return device_pairs.status();
  absl::StatusOr<gpu::Event> done = gpu::Event::Create(stream.device(), /*timing=*/false);
  if (!done.ok()) return done.status();
  if (!pairs.empty()) {
    TROUPE_RETURN_IF_ERROR(gpu::CopyToDeviceAsync(device_pairs->data(), pairs.data(),
                                                  pairs.size() * sizeof(int32_t), stream));
    const int head_dim = config.head_dim();
    const auto arrays = [&](const DeviceKvShard& s) {
      return gpu::attention::KvShardArrays{s.base,
                                           s.num_blocks,
                                           s.layer_begin,
                                           s.layer_end - s.layer_begin,
                                           s.head_begin,
                                           s.head_end - s.head_begin,
                                           head_dim};
    };
    for (const KvShardCopy& copy : *plan) {
      TROUPE_RETURN_IF_ERROR(gpu::attention::CopyKvBlocks(
          dtype, arrays(sources[copy.source]), arrays(destinations[copy.destination]),
          static_cast<const int32_t*>(device_pairs->data()),
          static_cast<int64_t>(src_blocks.size()), copy.range.layer_begin, copy.range.layer_end,
          copy.range.head_begin, copy.range.head_end, stream));
    }
  }
  TROUPE_RETURN_IF_ERROR(done->Record(stream));
  // The pairs were uploaded from pageable memory: CUDA staged them before returning, so the
  // host vector may go now.
  return std::unique_ptr<PendingKvCopy>(
      std::make_unique<EventKvCopy>(*std::move(done), *std::move(device_pairs)));
}

}  // namespace troupe::serving::engine::internal
