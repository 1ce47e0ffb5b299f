#include "serving/transfer/cuda_transports.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gpu/device.h"
#include "gpu/dtype.h"
#include "gpu/ipc.h"

namespace troupe::serving::transfer {
namespace {

int64_t ShardBytes(const engine::ForwardBackend& backend, const engine::DeviceKvShard& shard) {
  return 2LL * (shard.layer_end - shard.layer_begin) * shard.num_blocks *
         (shard.head_end - shard.head_begin) * engine::kKvBlockTokens *
         backend.config().head_dim() * static_cast<int64_t>(gpu::SizeOf(backend.kv_dtype()));
}

class CudaIpcKvTransport : public DeviceKvTransport {
 public:
  KvTransportKind kind() const override { return KvTransportKind::kCudaIpc; }
  bool Reaches(const engine::ForwardBackend& source, const KvPullSpec& spec) const override {
    // CUDA does not let a process map its own handles: one process uses kLocal instead.
    return spec.host == ThisHost() && spec.process != ThisProcess() &&
           !source.DeviceKvShards().empty();
  }

  absl::StatusOr<KvOffer> Offer(const engine::ForwardBackend& source,
                                const std::vector<int32_t>& blocks, int64_t request_id,
                                const KvPullSpec&) override {
    KvOffer offer = ShardOffer(source, blocks, request_id);
    const std::vector<engine::DeviceKvShard> shards = source.DeviceKvShards();
    absl::MutexLock lock(&mutex_);
    for (size_t i = 0; i < shards.size(); ++i) {
      auto it = exported_.find(shards[i].base);
      if (it == exported_.end()) {
        absl::StatusOr<gpu::IpcHandle> handle = gpu::ExportIpcHandle(
            shards[i].base, ShardBytes(source, shards[i]), shards[i].device);
        if (!handle.ok()) {
          return absl::Status(handle.status().code(),
                              absl::StrCat("exporting the KV cache of cuda:", shards[i].device,
                                           " for CUDA IPC: ", handle.status().message()));
        }
        it = exported_.emplace(shards[i].base, *std::move(handle)).first;
      }
      offer.shards[i].ipc = it->second;
      offer.shards[i].address = 0;  // meaningless in another process
    }
    return offer;
  }

  absl::StatusOr<std::unique_ptr<engine::PendingKvCopy>> Accept(
      engine::ForwardBackend& sink, const KvOffer& offer,
      const std::vector<int32_t>& dst_blocks) override {
    std::vector<engine::DeviceKvShard> sources;
    absl::MutexLock lock(&mutex_);
    for (const KvShardOffer& shard : offer.shards) {
      auto it = mapped_.find(shard.ipc.handle);
      if (it == mapped_.end()) {
        // Mapped on the device that holds it (this process numbers the GPUs as the exporter does
        // when CUDA_VISIBLE_DEVICES agrees); other devices here reach it through peer access.
        absl::StatusOr<gpu::IpcMappedBuffer> mapped =
            gpu::IpcMappedBuffer::Open(shard.ipc, shard.ipc.device);
        if (!mapped.ok()) {
          return absl::Status(mapped.status().code(),
                              absl::StrCat("request ", offer.request_id,
                                           ": mapping the prefill instance's KV cache: ",
                                           mapped.status().message()));
        }
        it = mapped_.emplace(shard.ipc.handle, *std::move(mapped)).first;
      }
      sources.push_back(ToDeviceShard(shard, it->second.data()));
      sources.back().device = it->second.device();
    }
    return sink.CopyKvFromDevice(sources, offer.blocks, dst_blocks);
  }

 private:
  absl::Mutex mutex_;
  std::map<void*, gpu::IpcHandle> exported_ ABSL_GUARDED_BY(mutex_);     // prefill side
  std::map<std::string, gpu::IpcMappedBuffer> mapped_ ABSL_GUARDED_BY(mutex_);  // puller side
};

}  // namespace

std::shared_ptr<KvTransport> MakeCudaIpcKvTransport() {
  return std::make_shared<CudaIpcKvTransport>();
}

KvTransports CudaKvTransports() {
  return {MakeLocalKvTransport(), MakeCudaIpcKvTransport(), MakeNcclKvTransport(),
          MakeBytesKvTransport()};
}

}  // namespace troupe::serving::transfer
