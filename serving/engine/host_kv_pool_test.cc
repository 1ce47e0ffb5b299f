#include "serving/engine/host_kv_pool.h"

#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "serving/engine/cpu_backend.h"
#include "serving/engine/forward_backend.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"

namespace troupe::serving::engine {
namespace {

using ::testing::HasSubstr;

class HostKvPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = *model::ModelPreset("tiny");
    weights_ = model::RandomWeights(/*seed=*/5);
    backend_ = *CreateCpuBackend(config_, *weights_, CpuBackendOptions{/*num_kv_blocks=*/8});
    // Three blocks of real KV: a 40-token prompt in blocks 0, 1 and 2.
    std::vector<int32_t> prompt(40);
    for (int i = 0; i < 40; ++i) prompt[i] = (i * 131) % config_.vocab_size;
    ASSERT_TRUE(backend_->Forward({{/*seq_id=*/1, prompt, 0, {0, 1, 2}}}).ok());
  }

  model::ModelConfig config_;
  std::unique_ptr<model::WeightSource> weights_;
  std::unique_ptr<ForwardBackend> backend_;
};

TEST_F(HostKvPoolTest, BlocksAreOneBlockOfExportKv) {
  HostKvPool pool = *HostKvPool::Create(config_, backend_->kv_dtype(), 6);
  EXPECT_EQ(pool.num_blocks(), 6);
  EXPECT_EQ(pool.block_bytes(), KvBytes(config_, backend_->kv_dtype(), 1, *KvRangeOf({}, config_)));
}

// Blocks stored in one order and loaded in another come back as ExportKv gives them, and import
// into other GPU blocks as the same KV.
TEST_F(HostKvPoolTest, StoreThenLoadRoundTripsInAnyOrder) {
  HostKvPool pool = *HostKvPool::Create(config_, backend_->kv_dtype(), 6);
  ASSERT_TRUE(pool.Store({5, 1, 3}, *backend_->ExportKv({2, 0, 1}, {})).ok());
  EXPECT_EQ(*pool.Load({1, 3, 5}), *backend_->ExportKv({0, 1, 2}, {}));
  EXPECT_EQ(*pool.Load({3}), *backend_->ExportKv({1}, {}));
  EXPECT_TRUE(pool.Load({})->empty());
  ASSERT_TRUE(backend_->ImportKv({7, 6, 4}, {}, *pool.Load({1, 3, 5})).ok());
  EXPECT_EQ(*backend_->ExportKv({7, 6, 4}, {}), *backend_->ExportKv({0, 1, 2}, {}));
}

// A swap through the backend's slots is ExportKv and Store, and back Load and ImportKv.
TEST_F(HostKvPoolTest, SwapsThroughTheBackendKeepTheBytes) {
  HostKvPool pool = *HostKvPool::Create(*backend_, 6);
  EXPECT_FALSE(pool.pinned());  // plain memory on the CPU
  EXPECT_EQ(pool.block_bytes(), KvBytes(config_, backend_->kv_dtype(), 1, *KvRangeOf({}, config_)));
  ASSERT_TRUE(pool.SwapOut(*backend_, {2, 0, 1}, {5, 1, 3}).ok());
  EXPECT_EQ(*pool.Load({1, 3, 5}), *backend_->ExportKv({0, 1, 2}, {}));
  ASSERT_TRUE(pool.SwapIn(*backend_, {1, 3, 5}, {7, 6, 4}).ok());
  EXPECT_EQ(*backend_->ExportKv({7, 6, 4}, {}), *backend_->ExportKv({0, 1, 2}, {}));
  EXPECT_TRUE(pool.SwapOut(*backend_, {}, {}).ok());
}

TEST_F(HostKvPoolTest, BadSwapsAreRefusedByName) {
  HostKvPool pool = *HostKvPool::Create(*backend_, 6);
  const std::vector<uint8_t> before = *pool.Load({0, 1, 2, 3, 4, 5});
  EXPECT_THAT(pool.SwapOut(*backend_, {0, 1}, {0, 6}).message(), HasSubstr("host block 6"));
  EXPECT_THAT(pool.SwapOut(*backend_, {0, 1}, {2, 2}).message(), HasSubstr("named twice"));
  EXPECT_THAT(pool.SwapOut(*backend_, {0, 1}, {2}).message(), HasSubstr("one slot per block"));
  EXPECT_THAT(pool.SwapOut(*backend_, {0, 8}, {2, 3}).message(), HasSubstr("8"));
  EXPECT_EQ(*pool.Load({0, 1, 2, 3, 4, 5}), before);  // nothing written
  EXPECT_THAT(pool.SwapIn(*backend_, {-1}, {0}).message(), HasSubstr("host block -1"));
  EXPECT_THAT(pool.SwapIn(*backend_, {0, 1}, {0}).message(), HasSubstr("one slot per block"));
  EXPECT_FALSE(HostKvPool::Create(*backend_, -1).ok());
}

TEST_F(HostKvPoolTest, BadInputsAreRefusedByName) {
  EXPECT_THAT(HostKvPool::Create(config_, backend_->kv_dtype(), -1).status().message(),
              HasSubstr("-1 blocks; the pool needs >= 0"));
  HostKvPool pool = *HostKvPool::Create(config_, backend_->kv_dtype(), 4);
  const std::vector<uint8_t> two = *backend_->ExportKv({0, 1}, {});
  const absl::Status short_bytes = pool.Store({0, 1, 2}, two);
  EXPECT_TRUE(absl::IsInvalidArgument(short_bytes));
  EXPECT_THAT(short_bytes.message(), HasSubstr(absl::StrCat(two.size(),
                                                            " bytes for 3 blocks; "
                                                            "expected ",
                                                            3 * pool.block_bytes())));
  const absl::Status outside = pool.Store({0, 4}, two);
  EXPECT_TRUE(absl::IsOutOfRange(outside));
  EXPECT_THAT(outside.message(), HasSubstr("host block 4 is outside the pool's 4 blocks"));
  EXPECT_THAT(pool.Store({-1, 0}, two).message(), HasSubstr("host block -1 is outside"));
  EXPECT_THAT(pool.Store({2, 2}, two).message(), HasSubstr("host block 2 is named twice"));
  EXPECT_THAT(pool.Load({1, 9}).status().message(),
              HasSubstr("HostKvPool::Load: host block 9 is outside the pool's 4 blocks"));
  // A refused Store writes nothing.
  ASSERT_TRUE(pool.Store({0, 1}, two).ok());
  ASSERT_FALSE(pool.Store({1, 7}, *backend_->ExportKv({2, 2}, {})).ok());
  EXPECT_EQ(*pool.Load({0, 1}), two);
}

}  // namespace
}  // namespace troupe::serving::engine
