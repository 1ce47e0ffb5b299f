#include "serving/transfer/kv_transport.h"

#include <unistd.h>

#include <fstream>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace troupe::serving::transfer {
namespace {

constexpr KvTransportKind kAllKinds[] = {KvTransportKind::kBytes, KvTransportKind::kLocal,
                                         KvTransportKind::kCudaIpc, KvTransportKind::kNccl};

uint32_t Bit(KvTransportKind kind) { return uint32_t{1} << static_cast<int>(kind); }

class FinishedKvCopy : public engine::PendingKvCopy {
 public:
  explicit FinishedKvCopy(absl::Status status) : status_(std::move(status)) {}
  absl::StatusOr<bool> Done() override {
    if (!status_.ok()) return status_;
    return true;
  }
  absl::Status Wait() override { return status_; }

 private:
  absl::Status status_;
};

class BytesKvTransport : public KvTransport {
 public:
  KvTransportKind kind() const override { return KvTransportKind::kBytes; }
  bool Receives(const engine::ForwardBackend&) const override { return true; }
  bool Reaches(const engine::ForwardBackend&, const KvPullSpec&) const override { return true; }

  absl::StatusOr<KvOffer> Offer(const engine::ForwardBackend& source,
                                const std::vector<int32_t>& blocks, int64_t request_id,
                                const KvPullSpec&) override {
    absl::StatusOr<std::vector<uint8_t>> bytes = source.ExportKv(blocks, {});
    if (!bytes.ok()) return bytes.status();
    KvOffer offer;
    offer.request_id = request_id;
    offer.kind = static_cast<int32_t>(kind());
    offer.blocks = blocks;
    offer.bytes = *std::move(bytes);
    return offer;
  }

  absl::StatusOr<std::unique_ptr<engine::PendingKvCopy>> Accept(
      engine::ForwardBackend& sink, const KvOffer& offer,
      const std::vector<int32_t>& dst_blocks) override {
    if (offer.blocks.size() != dst_blocks.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("KV offer for request ", offer.request_id, ": ", offer.blocks.size(),
                       " blocks offered for ", dst_blocks.size(), " blocks here"));
    }
    if (absl::Status s = sink.ImportKv(dst_blocks, {}, offer.bytes); !s.ok()) return s;
    return DoneKvCopy();
  }
};

class LocalKvTransport : public DeviceKvTransport {
 public:
  KvTransportKind kind() const override { return KvTransportKind::kLocal; }
  bool Reaches(const engine::ForwardBackend& source, const KvPullSpec& spec) const override {
    return spec.process == ThisProcess() && !source.DeviceKvShards().empty();
  }

  absl::StatusOr<KvOffer> Offer(const engine::ForwardBackend& source,
                                const std::vector<int32_t>& blocks, int64_t request_id,
                                const KvPullSpec&) override {
    return ShardOffer(source, blocks, request_id);
  }

  absl::StatusOr<std::unique_ptr<engine::PendingKvCopy>> Accept(
      engine::ForwardBackend& sink, const KvOffer& offer,
      const std::vector<int32_t>& dst_blocks) override {
    std::vector<engine::DeviceKvShard> sources;
    for (const KvShardOffer& shard : offer.shards) {
      sources.push_back(ToDeviceShard(shard, reinterpret_cast<void*>(shard.address)));
    }
    return sink.CopyKvFromDevice(sources, offer.blocks, dst_blocks);
  }
};

std::string ReadBootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return std::string(absl::StripAsciiWhitespace(id));
}

}  // namespace

const char* KvTransportName(KvTransportKind kind) {
  switch (kind) {
    case KvTransportKind::kBytes:
      return "bytes";
    case KvTransportKind::kLocal:
      return "local";
    case KvTransportKind::kCudaIpc:
      return "cuda_ipc";
    case KvTransportKind::kNccl:
      return "nccl";
  }
  return "unknown";
}

absl::StatusOr<uint32_t> KvTransportMask(const std::string& setting) {
  if (setting == "auto") {
    uint32_t all = 0;
    for (KvTransportKind kind : kAllKinds) all |= Bit(kind);
    return all;
  }
  std::vector<std::string> names;
  for (KvTransportKind kind : kAllKinds) {
    if (setting == KvTransportName(kind)) return Bit(kind);
    names.push_back(absl::StrCat("\"", KvTransportName(kind), "\""));
  }
  return absl::InvalidArgumentError(absl::StrCat("kv_transport \"", setting,
                                                 "\" is not one of \"auto\", ",
                                                 absl::StrJoin(names, ", ")));
}

const std::string& ThisHost() {
  static const std::string host = [] {
    char name[256] = {};
    gethostname(name, sizeof(name) - 1);
    return absl::StrCat(name, "/", ReadBootId());
  }();
  return host;
}

const std::string& ThisProcess() {
  static const std::string process = [] {
    std::random_device entropy;
    return absl::StrCat(ThisHost(), "/", getpid(), "/", entropy(), entropy());
  }();
  return process;
}

KvPullSpec PullSpecFor(const KvTransports& transports, const engine::ForwardBackend& sink,
                       uint32_t allowed) {
  KvPullSpec spec;
  spec.host = ThisHost();
  spec.process = ThisProcess();
  for (const std::shared_ptr<KvTransport>& t : transports) {
    if (t->Receives(sink)) spec.allowed |= Bit(t->kind()) & allowed;
  }
  return spec;
}

KvTransport* ChooseTransport(const KvTransports& transports, const engine::ForwardBackend& source,
                             const KvPullSpec& spec) {
  KvTransport* bytes = nullptr;
  for (const std::shared_ptr<KvTransport>& t : transports) {
    if ((spec.allowed & Bit(t->kind())) == 0) continue;
    if (t->kind() == KvTransportKind::kBytes) {
      bytes = t.get();  // the fallback: every other allowed kind that reaches comes first
      continue;
    }
    if (t->Reaches(source, spec)) return t.get();
  }
  return bytes;
}

KvTransport* FindTransport(const KvTransports& transports, int32_t kind) {
  for (const std::shared_ptr<KvTransport>& t : transports) {
    if (static_cast<int32_t>(t->kind()) == kind) return t.get();
  }
  return nullptr;
}

KvOffer DeviceKvTransport::ShardOffer(const engine::ForwardBackend& source,
                                      const std::vector<int32_t>& blocks,
                                      int64_t request_id) const {
  KvOffer offer;
  offer.request_id = request_id;
  offer.kind = static_cast<int32_t>(kind());
  offer.blocks = blocks;
  offer.shards = OfferShards(source);
  return offer;
}

std::shared_ptr<KvTransport> MakeBytesKvTransport() {
  return std::make_shared<BytesKvTransport>();
}

std::shared_ptr<KvTransport> MakeLocalKvTransport() {
  return std::make_shared<LocalKvTransport>();
}

KvTransports CpuKvTransports() { return {MakeLocalKvTransport(), MakeBytesKvTransport()}; }

std::unique_ptr<engine::PendingKvCopy> DoneKvCopy(absl::Status status) {
  return std::make_unique<FinishedKvCopy>(std::move(status));
}

engine::DeviceKvShard ToDeviceShard(const KvShardOffer& shard, void* base) {
  engine::DeviceKvShard d;
  d.device = shard.device;
  d.base = base;
  d.num_blocks = shard.num_blocks;
  d.layer_begin = shard.layer_begin;
  d.layer_end = shard.layer_end;
  d.head_begin = shard.head_begin;
  d.head_end = shard.head_end;
  return d;
}

std::vector<KvShardOffer> OfferShards(const engine::ForwardBackend& source) {
  std::vector<KvShardOffer> shards;
  for (const engine::DeviceKvShard& d : source.DeviceKvShards()) {
    KvShardOffer s;
    s.device = d.device;
    s.address = reinterpret_cast<uint64_t>(d.base);
    s.num_blocks = d.num_blocks;
    s.layer_begin = d.layer_begin;
    s.layer_end = d.layer_end;
    s.head_begin = d.head_begin;
    s.head_end = d.head_end;
    shards.push_back(s);
  }
  return shards;
}

}  // namespace troupe::serving::transfer
