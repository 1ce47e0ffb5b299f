// The device KV transports on a GPU: a prompt prefilled by one CUDA backend moves into another
// backend's blocks by an in-process device copy (kLocal) and, from another process, through
// CUDA IPC (kCudaIpc); the moved KV is byte-identical to the source's, and the next decode step
// gives the source's logits bit for bit (same GPU, same kernels, same inputs).
//
// The test binary is also the importing process: run with --ipc_child=HEX (a CAF-serialized
// KvOffer) it builds its own backend, accepts the offer, and prints the hashes of the imported
// KV and of the next step's logits, which the parent compares with its own.
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "caf/binary_deserializer.hpp"
#include "caf/binary_serializer.hpp"
#include "gmock/gmock.h"
#include "gpu/device.h"
#include "gtest/gtest.h"
#include "serving/engine/cuda_backend.h"
#include "serving/engine/cuda_backend_reference.h"
#include "serving/engine/forward_backend.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"
#include "serving/transfer/cuda_transports.h"
#include "serving/transfer/kv_transport.h"
#include "tools/child_process.h"

namespace troupe::serving::transfer {
namespace {

using engine::ForwardBackend;
using ::testing::HasSubstr;

constexpr char kChildFlag[] = "--ipc_child=";
constexpr uint64_t kSeed = 11;
constexpr int kPromptTokens = 77;  // five blocks, the last one partly filled
const std::vector<int32_t> kSourceBlocks = {9, 2, 14, 0, 5};
const std::vector<int32_t> kSinkBlocks = {1, 30, 7, 8, 3};

model::ModelConfig Config() { return engine::CudaTestModels()[0]; }

std::unique_ptr<ForwardBackend> MakeBackend(int blocks) {
  std::unique_ptr<model::WeightSource> weights = model::RandomWeights(kSeed);
  engine::CudaBackendOptions options;
  options.num_kv_blocks = blocks;
  absl::StatusOr<std::unique_ptr<ForwardBackend>> backend =
      engine::CreateCudaBackend(Config(), *weights, options);
  if (!backend.ok()) {
    std::fprintf(stderr, "CreateCudaBackend: %s\n", backend.status().ToString().c_str());
    return nullptr;
  }
  return *std::move(backend);
}

std::vector<int32_t> Prompt() {
  std::vector<int32_t> prompt(kPromptTokens);
  for (int i = 0; i < kPromptTokens; ++i) prompt[i] = (31 * i + 7) % Config().vocab_size;
  return prompt;
}

uint64_t Hash(const void* data, size_t bytes) {  // FNV-1a
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < bytes; ++i) {
    h ^= static_cast<const uint8_t*>(data)[i];
    h *= 1099511628211ull;
  }
  return h;
}

// Hashes of what a backend holds for the request after the move: its KV, and the logits of the
// next decode step.
struct Hashes {
  uint64_t kv = 0;
  uint64_t logits = 0;
};

absl::StatusOr<Hashes> HashesOf(ForwardBackend& backend, const std::vector<int32_t>& blocks) {
  absl::StatusOr<std::vector<uint8_t>> kv = backend.ExportKv(blocks, {});
  if (!kv.ok()) return kv.status();
  absl::StatusOr<std::vector<std::vector<float>>> logits =
      backend.Forward({{1, {42}, kPromptTokens, blocks}});
  if (!logits.ok()) return logits.status();
  return Hashes{Hash(kv->data(), kv->size()),
                Hash((*logits)[0].data(), (*logits)[0].size() * sizeof(float))};
}

std::string Encode(KvOffer offer) {
  std::vector<char> wire;
  caf::execution_unit* no_context = nullptr;
  caf::binary_serializer sink(no_context, wire);
  if (sink(offer)) return "";
  return absl::BytesToHexString(absl::string_view(wire.data(), wire.size()));
}

absl::StatusOr<KvOffer> Decode(const std::string& hex) {
  const std::string bytes = absl::HexStringToBytes(hex);
  std::vector<char> wire(bytes.begin(), bytes.end());
  KvOffer offer;
  caf::execution_unit* no_context = nullptr;
  caf::binary_deserializer source(no_context, wire);
  if (source(offer)) return absl::InvalidArgumentError("could not decode the KvOffer");
  return offer;
}

// RunChild is the puller in another process: it maps the offer's IPC handles and copies.
int RunChild(const std::string& hex) {
  absl::StatusOr<KvOffer> offer = Decode(hex);
  std::unique_ptr<ForwardBackend> sink = MakeBackend(40);
  if (!offer.ok() || sink == nullptr) return 1;
  KvTransports transports = CudaKvTransports();
  KvTransport* transport = FindTransport(transports, offer->kind);
  if (transport == nullptr) return 2;
  absl::StatusOr<std::unique_ptr<engine::PendingKvCopy>> copy =
      transport->Accept(*sink, *offer, kSinkBlocks);
  absl::Status done = copy.ok() ? (*copy)->Wait() : copy.status();
  if (!done.ok()) {
    std::fprintf(stderr, "child: %s\n", done.ToString().c_str());
    return 3;
  }
  absl::StatusOr<Hashes> hashes = HashesOf(*sink, kSinkBlocks);
  if (!hashes.ok()) {
    std::fprintf(stderr, "child: %s\n", hashes.status().ToString().c_str());
    return 4;
  }
  std::printf("child hashes %llu %llu\n", static_cast<unsigned long long>(hashes->kv),
              static_cast<unsigned long long>(hashes->logits));
  std::fflush(stdout);
  return 0;
}

std::string SelfPath() {
  char path[4096];
  const ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
  return n > 0 ? std::string(path, n) : "/proc/self/exe";
}

class CudaTransportsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (gpu::Device::Count() < 1) GTEST_SKIP() << "skipped: no CUDA device in this process";
    source_ = MakeBackend(16);
    ASSERT_NE(source_, nullptr);
    ASSERT_TRUE(source_->Forward({{1, Prompt(), 0, kSourceBlocks}}).ok());
  }
  std::unique_ptr<ForwardBackend> source_;
};

TEST_F(CudaTransportsTest, InProcessDeviceCopyMovesTheKvExactly) {
  std::unique_ptr<ForwardBackend> sink = MakeBackend(40);
  ASSERT_NE(sink, nullptr);
  KvTransports transports = CudaKvTransports();
  KvPullSpec spec = PullSpecFor(transports, *sink, *KvTransportMask("auto"));
  KvTransport* chosen = ChooseTransport(transports, *source_, spec);
  ASSERT_NE(chosen, nullptr);
  ASSERT_EQ(chosen->kind(), KvTransportKind::kLocal);
  absl::StatusOr<KvOffer> offer = chosen->Offer(*source_, kSourceBlocks, 1, {});
  ASSERT_TRUE(offer.ok()) << offer.status();
  absl::StatusOr<std::unique_ptr<engine::PendingKvCopy>> copy =
      FindTransport(transports, offer->kind)->Accept(*sink, *offer, kSinkBlocks);
  ASSERT_TRUE(copy.ok()) << copy.status();
  ASSERT_TRUE((*copy)->Wait().ok());
  EXPECT_TRUE(*(*copy)->Done());
  absl::StatusOr<Hashes> moved = HashesOf(*sink, kSinkBlocks);
  absl::StatusOr<Hashes> original = HashesOf(*source_, kSourceBlocks);
  ASSERT_TRUE(moved.ok() && original.ok());
  EXPECT_EQ(moved->kv, original->kv);
  EXPECT_EQ(moved->logits, original->logits);

  // A bad offer is refused and writes nothing.
  const std::vector<uint8_t> before = *sink->ExportKv({10, 11}, {});
  offer->blocks = {9, 99};  // 99 is outside the source's 16 blocks
  copy = FindTransport(transports, offer->kind)->Accept(*sink, *offer, {10, 11});
  ASSERT_FALSE(copy.ok());
  EXPECT_THAT(copy.status().message(), HasSubstr("source block 99 is outside"));
  EXPECT_EQ(*sink->ExportKv({10, 11}, {}), before);
}

TEST_F(CudaTransportsTest, CudaIpcMovesTheKvToAnotherProcessExactly) {
  KvTransports transports = CudaKvTransports();
  KvPullSpec spec;
  spec.host = ThisHost();
  spec.process = "another process";
  spec.allowed = *KvTransportMask("auto");
  KvTransport* chosen = ChooseTransport(transports, *source_, spec);
  ASSERT_NE(chosen, nullptr);
  ASSERT_EQ(chosen->kind(), KvTransportKind::kCudaIpc);
  absl::StatusOr<KvOffer> offer = chosen->Offer(*source_, kSourceBlocks, 1, {});
  ASSERT_TRUE(offer.ok()) << offer.status();
  ASSERT_EQ(offer->shards.size(), 1u);
  EXPECT_EQ(offer->shards[0].ipc.handle.size(), gpu::IpcHandle::kSize);

  absl::StatusOr<std::unique_ptr<tools::ChildProcess>> child =
      tools::ChildProcess::Start({SelfPath(), absl::StrCat(kChildFlag, Encode(*offer))});
  ASSERT_TRUE(child.ok()) << child.status();
  absl::StatusOr<std::string> line = (*child)->WaitForLine("child hashes", absl::Seconds(120));
  ASSERT_TRUE(line.ok()) << line.status();
  absl::StatusOr<int> exit_code = (*child)->Wait(absl::Seconds(60));
  ASSERT_TRUE(exit_code.ok() && *exit_code == 0) << (*child)->Output();

  absl::StatusOr<Hashes> original = HashesOf(*source_, kSourceBlocks);
  ASSERT_TRUE(original.ok());
  EXPECT_THAT(*line, HasSubstr(absl::StrCat("child hashes ", original->kv, " ", original->logits)))
      << "the imported KV or the next logits differ from the exporter's";
}

TEST_F(CudaTransportsTest, ThePullerChoosesAndTheSourceRespects) {
  KvTransports transports = CudaKvTransports();
  KvPullSpec spec;
  spec.host = "another host";
  spec.process = "another process";
  spec.allowed = *KvTransportMask("auto");
  // Another host: neither in-process nor IPC reaches it; NCCL does, and bytes when NCCL is not
  // allowed.
  EXPECT_EQ(ChooseTransport(transports, *source_, spec)->kind(), KvTransportKind::kNccl);
  spec.host = ThisHost();
  spec.allowed = *KvTransportMask("bytes");
  EXPECT_EQ(ChooseTransport(transports, *source_, spec)->kind(), KvTransportKind::kBytes);
}

}  // namespace
}  // namespace troupe::serving::transfer

int main(int argc, char** argv) {
  if (argc == 2 && absl::StartsWith(argv[1], troupe::serving::transfer::kChildFlag)) {
    return troupe::serving::transfer::RunChild(argv[1] +
                                               sizeof(troupe::serving::transfer::kChildFlag) - 1);
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
