#include "serving/placement/profiler.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "serving/engine/cuda_backend_reference.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"

namespace troupe::serving::placement {
namespace {

// The plain C++ twin of CpuBackend: a real ForwardBackend that builds without LibTorch.
class ProfilerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = *model::ModelPreset("tiny");
    weights_ = model::RandomWeights(1);
    absl::StatusOr<std::unique_ptr<engine::ForwardBackend>> backend =
        engine::CreateReferenceBackend(config_, *weights_, kBlocks);
    ASSERT_TRUE(backend.ok()) << backend.status();
    backend_ = *std::move(backend);
  }

  static constexpr int kBlocks = 64;
  model::ModelConfig config_;
  std::unique_ptr<model::WeightSource> weights_;
  std::unique_ptr<engine::ForwardBackend> backend_;
};

ProfileGrid SmallGrid() {
  ProfileGrid grid;
  grid.prefill_batches = {1, 2};
  grid.prefill_lengths = {8, 40};
  grid.max_prefill_tokens = 64;
  grid.decode_batches = {1, 3};
  grid.decode_contexts = {20, 100};
  grid.repeats = 2;
  return grid;
}

TEST_F(ProfilerTest, MeasuresEveryPointThatFits) {
  int reported = 0;
  std::vector<std::string> skips;
  absl::StatusOr<Profile> profile =
      MeasureProfile(*backend_, config_, SmallGrid(), /*tensor_parallel=*/1,
                     [&](int index, int total, const ProfileSample&, const std::string& skipped) {
                       EXPECT_EQ(index, reported);
                       EXPECT_EQ(total, 7);
                       ++reported;
                       if (!skipped.empty()) skips.push_back(skipped);
                     });
  ASSERT_TRUE(profile.ok()) << profile.status();
  // 3 prefill points (1 x 8, 1 x 40, 2 x 8; 2 x 40 passes max_prefill_tokens) and 4 decode.
  EXPECT_EQ(reported, 7);
  ASSERT_EQ(profile->samples.size(), 7u);
  EXPECT_TRUE(skips.empty());
  const ProfileSample& prefill = profile->samples[1];  // 1 x 40
  EXPECT_EQ(prefill.phase, Phase::kPrefill);
  EXPECT_EQ(prefill.batch, 1);
  EXPECT_EQ(prefill.tokens, 40);
  EXPECT_EQ(prefill.tokens_squared, 1600);
  const ProfileSample& pair = profile->samples[2];  // 2 x 8
  EXPECT_EQ(pair.tokens, 16);
  EXPECT_EQ(pair.tokens_squared, 128);
  const ProfileSample& decode = profile->samples.back();  // 3 sequences of 100 cached tokens
  EXPECT_EQ(decode.phase, Phase::kDecode);
  EXPECT_EQ(decode.batch, 3);
  EXPECT_EQ(decode.tokens, 300);
  EXPECT_EQ(decode.tokens_squared, 0);
  for (const ProfileSample& sample : profile->samples) {
    EXPECT_GT(sample.seconds, 0.0);
    EXPECT_EQ(sample.tensor_parallel, 1);
  }
}

TEST_F(ProfilerTest, SkipsPointsPastTheContextOrTheCacheAndSaysWhy) {
  ProfileGrid grid = SmallGrid();
  grid.decode_batches = {1, 16};
  grid.decode_contexts = {100, 600};  // tiny's context is 512
  std::vector<std::string> skips;
  absl::StatusOr<Profile> profile = MeasureProfile(
      *backend_, config_, grid, 1, [&](int, int, const ProfileSample&, const std::string& skipped) {
        if (!skipped.empty()) skips.push_back(skipped);
      });
  ASSERT_TRUE(profile.ok()) << profile.status();
  // 16 x 100 tokens need 16 x 7 = 112 blocks of the 64; both 600-token contexts pass 512.
  ASSERT_EQ(skips.size(), 3u);
  EXPECT_TRUE(absl::StrContains(skips[0], "pass tiny's context of 512")) << skips[0];
  EXPECT_TRUE(absl::StrContains(skips[1], "needs 112 KV blocks; the cache has 64")) << skips[1];
  EXPECT_EQ(profile->samples.size(), 4u);
}

TEST_F(ProfilerTest, BadGridsAreErrorsNamingTheField) {
  const auto expect_error = [&](ProfileGrid grid, const std::string& field) {
    absl::StatusOr<Profile> profile = MeasureProfile(*backend_, config_, grid, 1);
    ASSERT_FALSE(profile.ok()) << field;
    EXPECT_EQ(profile.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(profile.status().message(), field)) << profile.status();
  };
  ProfileGrid grid = SmallGrid();
  grid.prefill_batches = {};
  expect_error(grid, "prefill_batches is empty");
  grid = SmallGrid();
  grid.decode_contexts = {128, 0};
  expect_error(grid, "decode_contexts holds 0");
  grid = SmallGrid();
  grid.repeats = 0;
  expect_error(grid, "repeats (0)");
  grid = SmallGrid();
  grid.prefill_lengths = {1000};
  grid.decode_contexts = {1000};
  expect_error(grid, "no point of the grid fits tiny");
}

}  // namespace
}  // namespace troupe::serving::placement
