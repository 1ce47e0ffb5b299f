// KvTransport: how a request's KV cache moves from a prefill instance to the decode instance
// that pulls it (DistServe's migration), behind one interface with four implementations:
//
//   kind        where it works                        how
//   kBytes      anywhere (other hosts, CPU backends)  ExportKv -> bytes in an actor message ->
//                                                     ImportKv (CAF's middleman across processes)
//   kLocal      both instances in one process         the decode side's GPU reads the prefill
//                                                     side's cache directly (peer copies)
//   kCudaIpc    two processes on one host             the prefill cache exported once as CUDA IPC
//                                                     handles, mapped by the puller, read directly
//   kNccl       GPUs on any hosts                     NCCL send/recv between the two caches
//                                                     (nccl_transport.h)
//
// The pull protocol (serving/instance): the decode instance admits a request, allocates its
// blocks and sends (pull_atom, id, KvPullSpec) to the prefill instance: what it can receive and
// where it runs. The prefill instance picks the first of its transports that reaches the puller
// and that the puller allows, and answers with a KvOffer: the bytes themselves (kBytes; the
// prefill blocks are free at once), or where its blocks are (the device kinds; the blocks stay
// until (release_atom, id) says the copy is done). The decode side's transport of the offer's
// kind starts the copy (Accept), on the decode backend's transfer stream, and the request
// decodes once it is done.
//
// Device copies move only the layers and kv heads that a prefill shard (a GPU's part of the
// cache: a tensor-parallel rank's heads, a pipeline stage's layers) shares with a decode shard,
// every block of the request in one launch per pair of shards (ForwardBackend::CopyKvFromDevice).
//
//   std::vector<std::unique_ptr<KvTransport>> transports = CpuKvTransports();  // or CUDA's
//   KvPullSpec spec = PullSpecFor(transports, KvTransportMask("auto"));
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "caf/meta/type_name.hpp"
#include "gpu/ipc_handle.h"
#include "serving/engine/forward_backend.h"

namespace troupe::serving::transfer {

enum class KvTransportKind : int32_t { kBytes = 0, kLocal = 1, kCudaIpc = 2, kNccl = 3 };

// KvTransportName is the kind's config name: "bytes", "local", "cuda_ipc", "nccl".
const char* KvTransportName(KvTransportKind kind);

// KvTransportMask parses a puller's `kv_transport` setting: "auto" (every kind), or one kind's
// name; bit (1 << kind) is set for each allowed kind. Anything else is InvalidArgument listing
// the names.
absl::StatusOr<uint32_t> KvTransportMask(const std::string& setting);

// KvPullSpec is what a puller tells the prefill instance with each pull.
struct KvPullSpec {
  std::string host;     // ThisHost(): one machine (and kernel boot)
  std::string process;  // ThisProcess(): one process of that machine
  uint32_t allowed = 0;  // bit (1 << kind) per kind the puller can receive and its config allows

  friend bool operator==(const KvPullSpec& a, const KvPullSpec& b) {
    return a.host == b.host && a.process == b.process && a.allowed == b.allowed;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, KvPullSpec& x) {
  return f(caf::meta::type_name("KvPullSpec"), x.host, x.process, x.allowed);
}

// KvShardOffer describes one device shard of the prefill cache (engine::DeviceKvShard) to the
// puller: its address in the prefill process (kLocal) or its IPC handle (kCudaIpc).
struct KvShardOffer {
  int32_t device = -1;
  uint64_t address = 0;
  gpu::IpcHandle ipc;
  std::string nccl_id;  // kNccl, the first offer to a puller: the shard's communicator's id
  int64_t num_blocks = 0;
  int32_t layer_begin = 0;
  int32_t layer_end = 0;
  int32_t head_begin = 0;
  int32_t head_end = 0;

  friend bool operator==(const KvShardOffer& a, const KvShardOffer& b) {
    return a.device == b.device && a.address == b.address && a.ipc == b.ipc &&
           a.nccl_id == b.nccl_id &&
           a.num_blocks == b.num_blocks && a.layer_begin == b.layer_begin &&
           a.layer_end == b.layer_end && a.head_begin == b.head_begin &&
           a.head_end == b.head_end;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, KvShardOffer& x) {
  return f(caf::meta::type_name("KvShardOffer"), x.device, x.address, x.ipc, x.nccl_id,
           x.num_blocks, x.layer_begin, x.layer_end, x.head_begin, x.head_end);
}

// KvOffer is the prefill instance's answer to a pull: the request's KV as bytes (kBytes), or
// where its blocks are (the device kinds). NCCL offers name their sender (`source`, one per
// prefill-side transport) and number their sends on its channel to the puller (`channel`).
struct KvOffer {
  int64_t request_id = 0;
  int32_t kind = 0;             // KvTransportKind
  std::vector<int32_t> blocks;  // the prefill cache's block ids, in token order
  std::vector<KvShardOffer> shards;
  std::vector<uint8_t> bytes;  // kBytes: ExportKv's bytes of every layer and head
  std::string source;
  int64_t channel = 0;

  // holds_blocks: whether the prefill side keeps the blocks until (release_atom, id).
  bool holds_blocks() const { return kind != static_cast<int32_t>(KvTransportKind::kBytes); }

  friend bool operator==(const KvOffer& a, const KvOffer& b) {
    return a.request_id == b.request_id && a.kind == b.kind && a.blocks == b.blocks &&
           a.shards == b.shards && a.bytes == b.bytes && a.source == b.source &&
           a.channel == b.channel;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, KvOffer& x) {
  return f(caf::meta::type_name("KvOffer"), x.request_id, x.kind, x.blocks, x.shards, x.bytes,
           x.source, x.channel);
}

class KvTransport {
 public:
  virtual ~KvTransport() = default;
  virtual KvTransportKind kind() const = 0;

  // Receives says whether a puller whose cache is `sink` can take this kind (device kinds need
  // device shards); it sets the kind's bit in the puller's KvPullSpec.
  virtual bool Receives(const engine::ForwardBackend& sink) const = 0;

  // Reaches says whether the prefill side (`source`) can send this kind to the puller of
  // `spec` (same process, same host, ...), the kind being allowed there.
  virtual bool Reaches(const engine::ForwardBackend& source, const KvPullSpec& spec) const = 0;

  // Offer is the prefill side's answer to the puller of `spec` for `blocks` of `source`
  // (request `request_id`).
  virtual absl::StatusOr<KvOffer> Offer(const engine::ForwardBackend& source,
                                        const std::vector<int32_t>& blocks, int64_t request_id,
                                        const KvPullSpec& spec) = 0;

  // Accept starts moving `offer` into `dst_blocks` of `sink` (the puller's blocks for the
  // request, in token order). The copy may still run when it returns; the request may decode
  // once it is done. An offer that does not fit (block counts, shards, bytes) is an error that
  // names what did not fit, and nothing is written.
  virtual absl::StatusOr<std::unique_ptr<engine::PendingKvCopy>> Accept(
      engine::ForwardBackend& sink, const KvOffer& offer,
      const std::vector<int32_t>& dst_blocks) = 0;

  // Drain is the puller's answer to an offer it will not use (the request was cancelled while
  // its pull was on the way): NCCL still receives the send, which every later one queues behind.
  virtual void Drain(engine::ForwardBackend& /*sink*/, const KvOffer& /*offer*/) {}
};

// DeviceKvTransport is a transport that copies between caches in device memory (local,
// cuda_ipc, nccl): it reaches only pullers whose cache has device shards.
class DeviceKvTransport : public KvTransport {
 public:
  bool Receives(const engine::ForwardBackend& sink) const override {
    return !sink.DeviceKvShards().empty();
  }

 protected:
  // ShardOffer is an offer of this kind for `blocks` of `source`, naming its device shards
  // (OfferShards) for the kind to complete (IPC handles, NCCL ids).
  KvOffer ShardOffer(const engine::ForwardBackend& source, const std::vector<int32_t>& blocks,
                     int64_t request_id) const;
};

// KvTransports is an instance's set of transports, in order of preference (the first that
// reaches a puller serves it).
using KvTransports = std::vector<std::shared_ptr<KvTransport>>;

// ThisHost and ThisProcess identify this machine (hostname and kernel boot id) and this
// process (host, pid and a random token), for KvPullSpec.
const std::string& ThisHost();
const std::string& ThisProcess();

// PullSpecFor is the spec a puller with `transports` and cache `sink` sends, restricted to
// `allowed` (KvTransportMask).
KvPullSpec PullSpecFor(const KvTransports& transports, const engine::ForwardBackend& sink,
                       uint32_t allowed);

// ChooseTransport is the prefill side's choice for `spec`: the first of `transports` that the
// puller allows and that reaches it; kBytes when the puller allows it and none other does;
// null when the puller allows nothing this side can send.
KvTransport* ChooseTransport(const KvTransports& transports, const engine::ForwardBackend& source,
                             const KvPullSpec& spec);

// FindTransport is the puller's transport for an offer of `kind`; null if it has none.
KvTransport* FindTransport(const KvTransports& transports, int32_t kind);

// BytesKvTransport: ExportKv -> bytes -> ImportKv, anywhere.
std::shared_ptr<KvTransport> MakeBytesKvTransport();

// LocalKvTransport: device caches in one process, read directly (CopyKvFromDevice).
std::shared_ptr<KvTransport> MakeLocalKvTransport();

// CpuKvTransports are the transports of a binary without CUDA: bytes, and local (which no CPU
// backend can use, but a device backend in the same process could).
KvTransports CpuKvTransports();

// DoneKvCopy is a PendingKvCopy that finished before it was returned (with `status`).
std::unique_ptr<engine::PendingKvCopy> DoneKvCopy(absl::Status status = absl::OkStatus());

// ToDeviceShard turns an offered shard into the engine's shard, at `base` in this process.
engine::DeviceKvShard ToDeviceShard(const KvShardOffer& shard, void* base);

// OfferShards describes `source`'s device shards (their addresses; no IPC handles).
std::vector<KvShardOffer> OfferShards(const engine::ForwardBackend& source);

}  // namespace troupe::serving::transfer
