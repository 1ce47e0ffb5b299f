// The KV transports that run on a CPU (bytes between two LibTorch backends; the in-process device
// transport's offer and hand-off, against a backend that records what it is asked to copy), the
// choice of transport for a puller, and the planning of device copies between shards of
// different tensor- and pipeline-parallel layouts. The device copies themselves run in the GPU
// tests (gpu/attention:paged_kv_test, serving/engine:cuda_backend_test).
#include "serving/transfer/kv_transport.h"

#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "serving/engine/cpu_backend.h"
#include "serving/engine/forward_backend.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"

namespace troupe::serving::transfer {
namespace {

using engine::DeviceKvShard;
using engine::ForwardBackend;
using ::testing::HasSubstr;

uint32_t Bit(KvTransportKind kind) { return uint32_t{1} << static_cast<int>(kind); }

TEST(KvTransportMaskTest, NamesAndAuto) {
  EXPECT_EQ(*KvTransportMask("bytes"), Bit(KvTransportKind::kBytes));
  EXPECT_EQ(*KvTransportMask("cuda_ipc"), Bit(KvTransportKind::kCudaIpc));
  EXPECT_EQ(*KvTransportMask("nccl"), Bit(KvTransportKind::kNccl));
  EXPECT_EQ(*KvTransportMask("local"), Bit(KvTransportKind::kLocal));
  EXPECT_EQ(*KvTransportMask("auto"), 0xFu);
  absl::StatusOr<uint32_t> bad = KvTransportMask("ipc");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("kv_transport \"ipc\" is not one of \"auto\""));
  EXPECT_THAT(bad.status().message(), HasSubstr("\"cuda_ipc\""));
}

class CpuTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = *model::ModelPreset("tiny");
    weights_ = model::RandomWeights(/*seed=*/5);
    engine::CpuBackendOptions options;
    options.num_kv_blocks = 16;
    prefill_ = *engine::CreateCpuBackend(config_, *weights_, options);
    decode_ = *engine::CreateCpuBackend(config_, *weights_, options);
  }

  model::ModelConfig config_;
  std::unique_ptr<model::WeightSource> weights_;
  std::unique_ptr<ForwardBackend> prefill_;
  std::unique_ptr<ForwardBackend> decode_;
};

TEST_F(CpuTransportTest, BytesMoveAPromptsKvAndDecodingContinuesTheSame) {
  std::vector<int32_t> prompt(21);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>(3 + 5 * i);
  const std::vector<int32_t> prefill_blocks = {4, 9};
  const std::vector<int32_t> decode_blocks = {11, 2};
  ASSERT_TRUE(prefill_->Forward({{1, prompt, 0, prefill_blocks}}).ok());

  KvTransports transports = CpuKvTransports();
  KvPullSpec spec = PullSpecFor(transports, *decode_, *KvTransportMask("auto"));
  // A CPU cache can only take bytes, whatever its setting allows.
  EXPECT_EQ(spec.allowed, Bit(KvTransportKind::kBytes));
  EXPECT_EQ(spec.process, ThisProcess());
  KvTransport* chosen = ChooseTransport(transports, *prefill_, spec);
  ASSERT_NE(chosen, nullptr);
  ASSERT_EQ(chosen->kind(), KvTransportKind::kBytes);

  absl::StatusOr<KvOffer> offer = chosen->Offer(*prefill_, prefill_blocks, 1, {});
  ASSERT_TRUE(offer.ok()) << offer.status();
  EXPECT_FALSE(offer->holds_blocks());
  EXPECT_EQ(static_cast<int64_t>(offer->bytes.size()),
            engine::KvBytes(config_, prefill_->kv_dtype(), 2, *engine::KvRangeOf({}, config_)));
  KvTransport* receiver = FindTransport(transports, offer->kind);
  ASSERT_NE(receiver, nullptr);
  absl::StatusOr<std::unique_ptr<engine::PendingKvCopy>> copy =
      receiver->Accept(*decode_, *offer, decode_blocks);
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_TRUE(*(*copy)->Done());

  // The next token decodes to the same logits on both sides.
  const int32_t next = 17;
  auto a = prefill_->Forward({{1, {next}, 21, prefill_blocks}});
  auto b = decode_->Forward({{1, {next}, 21, decode_blocks}});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ((*a)[0], (*b)[0]);
}

TEST_F(CpuTransportTest, AnOfferThatDoesNotFitIsRefusedAndWritesNothing) {
  KvTransports transports = CpuKvTransports();
  KvTransport* bytes = FindTransport(transports, static_cast<int32_t>(KvTransportKind::kBytes));
  absl::StatusOr<KvOffer> offer = bytes->Offer(*prefill_, {1, 2}, 7, {});
  ASSERT_TRUE(offer.ok());
  const std::vector<uint8_t> before = *decode_->ExportKv({0, 1, 2}, {});
  absl::StatusOr<std::unique_ptr<engine::PendingKvCopy>> copy =
      bytes->Accept(*decode_, *offer, {0, 1, 2});
  ASSERT_FALSE(copy.ok());
  EXPECT_THAT(copy.status().message(), HasSubstr("2 blocks offered for 3 blocks here"));
  offer->bytes.pop_back();
  copy = bytes->Accept(*decode_, *offer, {0, 1});
  ASSERT_FALSE(copy.ok());
  EXPECT_THAT(copy.status().message(), HasSubstr("bytes for 2 blocks"));
  EXPECT_EQ(*decode_->ExportKv({0, 1, 2}, {}), before);
}

TEST_F(CpuTransportTest, APullerThatAllowsNothingThisSideSendsGetsNoTransport) {
  KvTransports transports = CpuKvTransports();
  KvPullSpec spec = PullSpecFor(transports, *decode_, *KvTransportMask("local"));
  EXPECT_EQ(spec.allowed, 0u);  // a CPU cache cannot take device copies
  spec.allowed = Bit(KvTransportKind::kLocal);
  EXPECT_EQ(ChooseTransport(transports, *prefill_, spec), nullptr);  // no device shards here
}

// A backend whose "device" cache is host memory: it records what it is asked to copy.
class RecordingDeviceBackend : public ForwardBackend {
 public:
  RecordingDeviceBackend(model::ModelConfig config, std::vector<DeviceKvShard> shards)
      : config_(std::move(config)), shards_(std::move(shards)) {}
  const model::ModelConfig& config() const override { return config_; }
  int num_kv_blocks() const override { return 32; }
  absl::StatusOr<std::vector<std::vector<float>>> Forward(
      const std::vector<engine::SequenceStep>&) override {
    return absl::UnimplementedError("not in this test");
  }
  gpu::DType kv_dtype() const override { return gpu::DType::kFloat16; }
  absl::StatusOr<std::vector<uint8_t>> ExportKv(const std::vector<int32_t>&,
                                                const engine::KvRange&) const override {
    return absl::UnimplementedError("not in this test");
  }
  absl::Status ImportKv(const std::vector<int32_t>&, const engine::KvRange&,
                        const std::vector<uint8_t>&) override {
    return absl::UnimplementedError("not in this test");
  }
  std::vector<DeviceKvShard> DeviceKvShards() const override { return shards_; }
  absl::StatusOr<std::unique_ptr<engine::PendingKvCopy>> CopyKvFromDevice(
      const std::vector<DeviceKvShard>& sources, const std::vector<int32_t>& src_blocks,
      const std::vector<int32_t>& dst_blocks) override {
    absl::StatusOr<std::vector<engine::KvShardCopy>> plan =
        engine::PlanKvShardCopies(config_, sources, shards_, src_blocks, dst_blocks);
    if (!plan.ok()) return plan.status();
    copied_from = sources;
    copied_blocks = {src_blocks, dst_blocks};
    launches = plan->size();
    return DoneKvCopy();
  }

  std::vector<DeviceKvShard> copied_from;
  std::vector<std::vector<int32_t>> copied_blocks;
  size_t launches = 0;

 private:
  model::ModelConfig config_;
  std::vector<DeviceKvShard> shards_;
};

TEST(LocalTransportTest, OffersTheSourceShardsAndThePullerCopiesFromThem) {
  const model::ModelConfig config = *model::ModelPreset("tiny");
  const int layers = config.num_layers, heads = config.num_kv_heads;
  ASSERT_EQ(heads % 2, 0);
  static char memory[4];
  // Source: two tensor-parallel ranks (heads split); puller: one shard holding everything.
  RecordingDeviceBackend source(config, {{0, &memory[0], 32, 0, layers, 0, heads / 2},
                                         {1, &memory[1], 32, 0, layers, heads / 2, heads}});
  RecordingDeviceBackend sink(config, {{0, &memory[2], 32, 0, layers, 0, heads}});
  KvTransports transports = CpuKvTransports();
  KvPullSpec spec = PullSpecFor(transports, sink, *KvTransportMask("auto"));
  EXPECT_EQ(spec.allowed, Bit(KvTransportKind::kBytes) | Bit(KvTransportKind::kLocal));
  KvTransport* chosen = ChooseTransport(transports, source, spec);
  ASSERT_NE(chosen, nullptr);
  ASSERT_EQ(chosen->kind(), KvTransportKind::kLocal);

  absl::StatusOr<KvOffer> offer = chosen->Offer(source, {5, 6, 7}, 3, {});
  ASSERT_TRUE(offer.ok());
  EXPECT_TRUE(offer->holds_blocks());
  EXPECT_TRUE(offer->bytes.empty());
  ASSERT_EQ(offer->shards.size(), 2u);
  EXPECT_EQ(offer->shards[1].address, reinterpret_cast<uint64_t>(&memory[1]));
  EXPECT_EQ(offer->shards[1].head_begin, heads / 2);

  absl::StatusOr<std::unique_ptr<engine::PendingKvCopy>> copy =
      FindTransport(transports, offer->kind)->Accept(sink, *offer, {0, 1, 2});
  ASSERT_TRUE(copy.ok()) << copy.status();
  ASSERT_EQ(sink.copied_from.size(), 2u);
  EXPECT_EQ(sink.copied_from[0].base, &memory[0]);
  EXPECT_EQ(sink.copied_from[1].device, 1);
  EXPECT_EQ(sink.copied_blocks[0], (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(sink.copied_blocks[1], (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(sink.launches, 2u);  // one per source rank

  // Another process's puller is not reached in-process.
  spec.process = "elsewhere";
  EXPECT_EQ(ChooseTransport(transports, source, spec)->kind(), KvTransportKind::kBytes);
}

TEST(PlanKvShardCopiesTest, IntersectsTensorAndPipelineLayouts) {
  model::ModelConfig config = *model::ModelPreset("tiny");
  config.num_layers = 4;
  config.num_kv_heads = 4;
  static char memory[8];
  // Prefill: pipeline of 2 stages (layers [0, 2) and [2, 4)). Decode: 2 tensor-parallel ranks.
  const std::vector<DeviceKvShard> stages = {{0, &memory[0], 8, 0, 2, 0, 4},
                                             {1, &memory[1], 8, 2, 4, 0, 4}};
  const std::vector<DeviceKvShard> ranks = {{0, &memory[2], 9, 0, 4, 0, 2},
                                            {1, &memory[3], 9, 0, 4, 2, 4}};
  absl::StatusOr<std::vector<engine::KvShardCopy>> plan =
      engine::PlanKvShardCopies(config, stages, ranks, {1, 2}, {3, 8});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->size(), 4u);
  for (const engine::KvShardCopy& c : *plan) {
    EXPECT_EQ(c.range.layer_begin, c.source == 0 ? 0 : 2);
    EXPECT_EQ(c.range.layer_end, c.source == 0 ? 2 : 4);
    EXPECT_EQ(c.range.head_begin, c.destination == 0 ? 0 : 2);
    EXPECT_EQ(c.range.head_end, c.destination == 0 ? 2 : 4);
  }
}

TEST(PlanKvShardCopiesTest, BadCopiesAreRefusedByName) {
  model::ModelConfig config = *model::ModelPreset("tiny");
  config.num_layers = 4;
  config.num_kv_heads = 4;
  static char memory[4];
  const DeviceKvShard whole{0, &memory[0], 8, 0, 4, 0, 4};
  const DeviceKvShard half{0, &memory[1], 8, 0, 4, 0, 2};
  const auto error = [&](const std::vector<DeviceKvShard>& sources,
                         const std::vector<DeviceKvShard>& destinations,
                         const std::vector<int32_t>& src, const std::vector<int32_t>& dst) {
    return std::string(
        engine::PlanKvShardCopies(config, sources, destinations, src, dst).status().message());
  };
  EXPECT_THAT(error({whole}, {whole}, {1, 2}, {3}), HasSubstr("2 source blocks for 1"));
  EXPECT_THAT(error({}, {whole}, {}, {}), HasSubstr("no source shards"));
  EXPECT_THAT(error({half}, {whole}, {1}, {1}), HasSubstr("no source shard holds layer 0 kv head 2"));
  EXPECT_THAT(error({whole}, {whole}, {8}, {1}), HasSubstr("source block 8 is outside"));
  EXPECT_THAT(error({whole}, {whole}, {1}, {-1}), HasSubstr("destination block -1 is outside"));
  DeviceKvShard too_deep = whole;
  too_deep.layer_end = 5;
  EXPECT_THAT(error({too_deep}, {whole}, {1}, {1}), HasSubstr("does not fit"));
  DeviceKvShard no_memory = whole;
  no_memory.base = nullptr;
  EXPECT_THAT(error({whole}, {no_memory}, {1}, {1}), HasSubstr("no memory"));
}

}  // namespace
}  // namespace troupe::serving::transfer
