// NcclKvTransport: KV between GPUs that cannot map each other's memory (other hosts), by NCCL
// send/recv. One channel per (prefill transport, puller): a communicator of two ranks per source
// shard (rank 0 the shard's GPU, rank 1 the puller's receiving GPU) and a worker thread on each
// side, so that the blocking parts (ncclCommInitRank, waiting for a send to finish) never block
// an instance's actor. On the prefill side the worker packs each offered request's blocks of a
// shard into staging memory (CopyKvBlocks) and sends them; on the puller's side the worker
// receives them, in the same order (NCCL matches a pair's sends and receives in order, which is
// why a cancelled request's offer is still received and dropped: Drain), and the instance's
// PendingKvCopy, polled on its own thread, then copies the shards' shared layers and heads into
// its cache (CopyKvFromDevice, with the staging memory as the source shards).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gpu/attention/paged_kv.h"
#include "gpu/buffer.h"
#include "gpu/cuda_allocator.h"
#include "gpu/device.h"
#include "gpu/dtype.h"
#include "gpu/memory_pool.h"
#include "gpu/nccl.h"
#include "gpu/nccl_id.h"
#include "gpu/stream.h"
#include "serving/transfer/cuda_transports.h"

namespace troupe::serving::transfer {
namespace {

int64_t ShardBlockBytes(const engine::ForwardBackend& backend, const KvShardOffer& shard) {
  return 2LL * (shard.layer_end - shard.layer_begin) * (shard.head_end - shard.head_begin) *
         engine::kKvBlockTokens * backend.config().head_dim() *
         static_cast<int64_t>(gpu::SizeOf(backend.kv_dtype()));
}

// Worker runs jobs in order on a thread of its own; the first job of a channel joins its
// communicators, which blocks until the other side joins too. Its state is shared with the
// thread, and the jobs hold what they use (their channel, the pool), so that a worker stuck in
// NCCL (a peer that never joined or died mid-transfer) can be left behind at shutdown instead of
// hanging it: the destructor drops the queued jobs and waits a few seconds for the running one.
class Worker {
 public:
  Worker() : state_(std::make_shared<State>()) {
    std::thread([state = state_] { Loop(*state); }).detach();
  }
  ~Worker() {
    std::unique_lock<std::mutex> lock(state_->mutex);
    state_->stopping = true;
    state_->jobs.clear();
    state_->wake.notify_all();
    state_->wake.wait_for(lock, kShutdownGrace, [this] { return state_->exited; });
  }
  void Post(std::function<void()> job) {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->jobs.push_back(std::move(job));
    state_->wake.notify_all();
  }

 private:
  static constexpr auto kShutdownGrace = std::chrono::seconds(5);
  struct State {
    std::mutex mutex;
    std::condition_variable wake;
    std::deque<std::function<void()>> jobs;
    bool stopping = false;
    bool exited = false;
  };

  static void Loop(State& state) {
    while (true) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(state.mutex);
        state.wake.wait(lock, [&] { return state.stopping || !state.jobs.empty(); });
        if (state.stopping) {
          state.exited = true;
          state.wake.notify_all();
          return;
        }
        job = std::move(state.jobs.front());
        state.jobs.pop_front();
      }
      job();
    }
  }

  std::shared_ptr<State> state_;
};

// A side of a channel: per source shard a communicator, a stream on its device, and (once
// joined) whether joining failed. Touched by the channel's worker only.
struct Peer {
  int device = -1;
  std::optional<gpu::Stream> stream;
  std::optional<gpu::Communicator> comm;
};

// A channel's communicators and state, shared by its jobs (touched by its worker only, but for
// `next`, which the instance's thread numbers offers with).
struct Channel {
  std::vector<Peer> peers;
  absl::Status status;  // a failed join or transfer fails every later job
  int64_t next = 0;     // the sequence number of the next offer (prefill side)
};

// A channel and the worker that runs its jobs.
struct ChannelSlot {
  std::shared_ptr<Channel> channel;
  std::unique_ptr<Worker> worker;
};

absl::Status Join(Channel& channel, const std::vector<std::string>& ids, int rank,
                  const std::vector<int>& devices) {
  channel.peers.resize(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    Peer& peer = channel.peers[i];
    peer.device = devices[i];
    absl::StatusOr<gpu::NcclUniqueId> id = gpu::NcclUniqueId::FromBytes(ids[i]);
    if (!id.ok()) return id.status();
    absl::StatusOr<gpu::Stream> stream = gpu::Stream::Create(peer.device);
    if (!stream.ok()) return stream.status();
    peer.stream.emplace(*std::move(stream));
    absl::StatusOr<gpu::Communicator> comm =
        gpu::Communicator::Create(*id, rank, /*world_size=*/2, peer.device);
    if (!comm.ok()) {
      return absl::Status(comm.status().code(),
                          absl::StrCat("joining the KV channel's NCCL communicator on cuda:",
                                       peer.device, ": ", comm.status().message()));
    }
    peer.comm.emplace(*std::move(comm));
  }
  return absl::OkStatus();
}

// A puller's copy: first the worker's receive (`received`), then, polled on the instance's
// thread, the copy from the staging memory into the cache.
class NcclKvCopy : public engine::PendingKvCopy {
 public:
  struct Shared {
    std::mutex mutex;
    bool received = false;
    absl::Status status;
    std::vector<gpu::PooledBuffer> staging;
  };

  NcclKvCopy(std::shared_ptr<Shared> shared, engine::ForwardBackend* sink, KvOffer offer,
             std::vector<int32_t> dst_blocks, int receive_device)
      : shared_(std::move(shared)),
        sink_(sink),
        offer_(std::move(offer)),
        dst_blocks_(std::move(dst_blocks)),
        receive_device_(receive_device) {}

  absl::StatusOr<bool> Done() override {
    if (!copy_) {
      std::lock_guard<std::mutex> lock(shared_->mutex);
      if (!shared_->status.ok()) return shared_->status;
      if (!shared_->received) return false;
      std::vector<engine::DeviceKvShard> sources;
      std::vector<int32_t> staged(offer_.blocks.size());
      for (size_t i = 0; i < staged.size(); ++i) staged[i] = static_cast<int32_t>(i);
      for (size_t s = 0; s < offer_.shards.size(); ++s) {
        engine::DeviceKvShard shard = ToDeviceShard(offer_.shards[s], shared_->staging[s].data());
        shard.device = receive_device_;
        shard.num_blocks = std::max<int64_t>(1, static_cast<int64_t>(staged.size()));
        sources.push_back(shard);
      }
      absl::StatusOr<std::unique_ptr<engine::PendingKvCopy>> copy =
          sink_->CopyKvFromDevice(sources, staged, dst_blocks_);
      if (!copy.ok()) return copy.status();
      copy_ = *std::move(copy);
    }
    return copy_->Done();
  }

  absl::Status Wait() override {
    while (true) {
      absl::StatusOr<bool> done = Done();
      if (!done.ok()) return done.status();
      if (*done) return absl::OkStatus();
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

  ~NcclKvCopy() override {
    if (copy_) (void)copy_->Wait();  // before the staging memory goes
  }

 private:
  std::shared_ptr<Shared> shared_;
  engine::ForwardBackend* sink_;
  KvOffer offer_;
  std::vector<int32_t> dst_blocks_;
  int receive_device_;
  std::unique_ptr<engine::PendingKvCopy> copy_;
};

class NcclKvTransport : public DeviceKvTransport {
 public:
  NcclKvTransport() {
    static std::atomic<int64_t> count{0};
    name_ = absl::StrCat(ThisProcess(), "/nccl", count++);
  }


  KvTransportKind kind() const override { return KvTransportKind::kNccl; }
  bool Reaches(const engine::ForwardBackend& source, const KvPullSpec&) const override {
    return !source.DeviceKvShards().empty();
  }

  absl::StatusOr<KvOffer> Offer(const engine::ForwardBackend& source,
                                const std::vector<int32_t>& blocks, int64_t request_id,
                                const KvPullSpec& spec) override {
    if (absl::Status pool = EnsurePool(); !pool.ok()) return pool;
    const std::vector<engine::DeviceKvShard> shards = source.DeviceKvShards();
    KvOffer offer = ShardOffer(source, blocks, request_id);
    offer.source = name_;
    ChannelSlot& slot = sending_[spec.process];
    if (!slot.channel) {
      // A new puller: one communicator per shard; the ids travel with this first offer and the
      // worker joins as rank 0 (it waits there until the puller's worker joins as rank 1).
      slot.channel = std::make_shared<Channel>();
      slot.worker = std::make_unique<Worker>();
      std::vector<std::string> ids;
      std::vector<int> devices;
      for (size_t s = 0; s < shards.size(); ++s) {
        absl::StatusOr<gpu::NcclUniqueId> id = gpu::GenerateNcclUniqueId();
        if (!id.ok()) return id.status();
        offer.shards[s].nccl_id = id->bytes;
        ids.push_back(id->bytes);
        devices.push_back(shards[s].device);
      }
      slot.worker->Post([c = slot.channel, ids, devices] {
        c->status = Join(*c, ids, /*rank=*/0, devices);
      });
    }
    offer.channel = slot.channel->next++;
    std::shared_ptr<Channel> c = slot.channel;
    std::shared_ptr<gpu::MemoryPool> pool = pool_;
    const gpu::DType dtype = source.kv_dtype();
    const int head_dim = source.config().head_dim();
    std::vector<int64_t> block_bytes;
    for (const KvShardOffer& shard : offer.shards) block_bytes.push_back(ShardBlockBytes(source, shard));
    slot.worker->Post([c, shards, blocks, pool, dtype, head_dim, block_bytes] {
      if (!c->status.ok() || blocks.empty()) return;
      c->status = [&]() -> absl::Status {
        std::vector<int32_t> pairs;
        for (size_t i = 0; i < blocks.size(); ++i) {
          pairs.push_back(blocks[i]);
          pairs.push_back(static_cast<int32_t>(i));
        }
        for (size_t s = 0; s < shards.size(); ++s) {
          Peer& peer = c->peers[s];
          const int64_t bytes = block_bytes[s] * static_cast<int64_t>(blocks.size());
          absl::StatusOr<gpu::PooledBuffer> staging = pool->Allocate(bytes, peer.device);
          if (!staging.ok()) return staging.status();
          absl::StatusOr<gpu::PooledBuffer> ids =
              pool->Allocate(pairs.size() * sizeof(int32_t), peer.device);
          if (!ids.ok()) return ids.status();
          if (absl::Status s2 = gpu::CopyToDeviceAsync(ids->data(), pairs.data(),
                                                       pairs.size() * sizeof(int32_t), *peer.stream);
              !s2.ok()) {
            return s2;
          }
          const engine::DeviceKvShard& from = shards[s];
          const gpu::attention::KvShardArrays source_arrays{
              from.base, from.num_blocks, from.layer_begin, from.layer_end - from.layer_begin,
              from.head_begin, from.head_end - from.head_begin, head_dim};
          gpu::attention::KvShardArrays packed = source_arrays;
          packed.base = staging->data();
          packed.num_blocks = static_cast<int64_t>(blocks.size());
          if (absl::Status s2 = gpu::attention::CopyKvBlocks(
                  dtype, source_arrays, packed, static_cast<const int32_t*>(ids->data()),
                  static_cast<int64_t>(blocks.size()), from.layer_begin, from.layer_end,
                  from.head_begin, from.head_end, *peer.stream);
              !s2.ok()) {
            return s2;
          }
          if (absl::Status s2 = peer.comm->Send(staging->data(), bytes / gpu::SizeOf(dtype),
                                                dtype, /*peer=*/1, *peer.stream);
              !s2.ok()) {
            return s2;
          }
          // The staging memory goes back to the pool only once the send has read it.
          if (absl::Status s2 = peer.stream->Synchronize(); !s2.ok()) return s2;
        }
        return absl::OkStatus();
      }();
    });
    return offer;
  }

  absl::StatusOr<std::unique_ptr<engine::PendingKvCopy>> Accept(
      engine::ForwardBackend& sink, const KvOffer& offer,
      const std::vector<int32_t>& dst_blocks) override {
    if (absl::Status pool = EnsurePool(); !pool.ok()) return pool;
    // Received even if the offer does not fit here: later receives depend on this one's.
    std::shared_ptr<NcclKvCopy::Shared> shared = Receive(sink, offer);
    if (offer.blocks.size() != dst_blocks.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("KV offer for request ", offer.request_id, ": ", offer.blocks.size(),
                       " blocks offered for ", dst_blocks.size(), " blocks here"));
    }
    if (shared == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("request ", offer.request_id, ": an NCCL offer without a channel (",
                       offer.source, ", send ", offer.channel,
                       "); the prefill instance's first offer to this instance was lost"));
    }
    return std::unique_ptr<engine::PendingKvCopy>(std::make_unique<NcclKvCopy>(
        shared, &sink, offer, dst_blocks, sink.DeviceKvShards().front().device));
  }

  void Drain(engine::ForwardBackend& sink, const KvOffer& offer) override {
    if (EnsurePool().ok()) (void)Receive(sink, offer);
  }

 private:
  absl::Status EnsurePool() {
    if (pool_ != nullptr) return absl::OkStatus();
    absl::StatusOr<std::shared_ptr<gpu::MemoryPool>> pool = gpu::CreateCudaMemoryPool();
    if (!pool.ok()) return pool.status();
    pool_ = *std::move(pool);
    return absl::OkStatus();
  }

  // Receive queues the receive of `offer` on its channel (joining it on the first offer), so
  // that receives keep the order of the sends; null when the offer names no known channel.
  std::shared_ptr<NcclKvCopy::Shared> Receive(engine::ForwardBackend& sink, const KvOffer& offer) {
    ChannelSlot& slot = receiving_[offer.source];
    if (!slot.channel) {
      if (offer.shards.empty() || offer.shards.front().nccl_id.empty()) return nullptr;
      slot.channel = std::make_shared<Channel>();
      slot.worker = std::make_unique<Worker>();
      std::vector<std::string> ids;
      const int device = sink.DeviceKvShards().front().device;
      for (const KvShardOffer& shard : offer.shards) ids.push_back(shard.nccl_id);
      slot.worker->Post([c = slot.channel, ids, device] {
        c->status = Join(*c, ids, /*rank=*/1, std::vector<int>(ids.size(), device));
      });
    }
    auto shared = std::make_shared<NcclKvCopy::Shared>();
    std::shared_ptr<Channel> c = slot.channel;
    std::shared_ptr<gpu::MemoryPool> pool = pool_;
    const gpu::DType dtype = sink.kv_dtype();
    std::vector<int64_t> bytes;
    for (const KvShardOffer& shard : offer.shards) {
      bytes.push_back(ShardBlockBytes(sink, shard) * static_cast<int64_t>(offer.blocks.size()));
    }
    slot.worker->Post([c, shared, pool, dtype, bytes] {
      absl::Status status = c->status;
      std::vector<gpu::PooledBuffer> staging;
      for (size_t s = 0; status.ok() && s < bytes.size() && s < c->peers.size(); ++s) {
        Peer& peer = c->peers[s];
        absl::StatusOr<gpu::PooledBuffer> buffer =
            pool->Allocate(std::max<int64_t>(bytes[s], 1), peer.device);
        if (!buffer.ok()) {
          status = buffer.status();
          break;
        }
        if (bytes[s] > 0) {
          status = peer.comm->Recv(buffer->data(), bytes[s] / gpu::SizeOf(dtype), dtype,
                                   /*peer=*/0, *peer.stream);
          if (status.ok()) status = peer.stream->Synchronize();
        }
        staging.push_back(*std::move(buffer));
      }
      if (!status.ok()) c->status = status;  // the channel is out of step: fail what follows
      std::lock_guard<std::mutex> lock(shared->mutex);
      shared->status = status;
      shared->staging = std::move(staging);
      shared->received = true;
    });
    return shared;
  }

  std::string name_;
  std::shared_ptr<gpu::MemoryPool> pool_;
  std::map<std::string, ChannelSlot> sending_;    // by puller
  std::map<std::string, ChannelSlot> receiving_;  // by source
};

}  // namespace

std::shared_ptr<KvTransport> MakeNcclKvTransport() { return std::make_shared<NcclKvTransport>(); }

}  // namespace troupe::serving::transfer
