#include "serving/workload/slo.h"

#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::serving::workload {
namespace {

using ::testing::HasSubstr;

constexpr Slo kSlo{.ttft_s = 0.2, .tpot_s = 0.1};

TEST(AttainedTest, NeedsBothSlos) {
  EXPECT_TRUE(Attained({.ttft_s = 0.2, .tpot_s = 0.1}, kSlo));  // the bounds are inclusive
  EXPECT_TRUE(Attained({.ttft_s = 0.05, .tpot_s = 0.01}, kSlo));
  EXPECT_FALSE(Attained({.ttft_s = 0.21, .tpot_s = 0.01}, kSlo));
  EXPECT_FALSE(Attained({.ttft_s = 0.05, .tpot_s = 0.11}, kSlo));
  EXPECT_FALSE(Attained({.ttft_s = 0.01, .tpot_s = 0.01, .failed = true}, kSlo));
}

TEST(AttainedTest, ScaleMultipliesBothSlos) {
  const RequestTiming timing{.ttft_s = 0.3, .tpot_s = 0.15};
  EXPECT_FALSE(Attained(timing, kSlo, 1.0));
  EXPECT_FALSE(Attained(timing, kSlo, 1.4));  // TTFT 0.3 > 0.28
  EXPECT_TRUE(Attained(timing, kSlo, 1.5));   // 0.3 <= 0.3 and 0.15 <= 0.15
  EXPECT_FALSE(Attained({.ttft_s = 0.3, .tpot_s = 0.15, .failed = true}, kSlo, 100));
}

// Required scales (max(ttft / 0.2, tpot / 0.1)): 0.5, 1.0, 1.5, 2.0, 3.0, 0.25, 4.0, 0.1, 0.8,
// and one failed request (never attained).
std::vector<RequestTiming> TenTimings() {
  return {
      {.ttft_s = 0.1, .tpot_s = 0.01},   // 0.5
      {.ttft_s = 0.2, .tpot_s = 0.05},   // 1.0
      {.ttft_s = 0.1, .tpot_s = 0.15},   // 1.5
      {.ttft_s = 0.4, .tpot_s = 0.1},    // 2.0
      {.ttft_s = 0.6, .tpot_s = 0.2},    // 3.0
      {.ttft_s = 0.05, .tpot_s = 0.02},  // 0.25
      {.ttft_s = 0.1, .tpot_s = 0.4},    // 4.0
      {.ttft_s = 0.02, .tpot_s = 0.0},   // 0.1 (a one-token request: TPOT 0)
      {.ttft_s = 0.16, .tpot_s = 0.05},  // 0.8
      {.ttft_s = 0.01, .tpot_s = 0.01, .failed = true},
  };
}

TEST(AttainmentTest, CountsAttainedOverAll) {
  const std::vector<RequestTiming> timings = TenTimings();
  EXPECT_DOUBLE_EQ(Attainment(timings, kSlo), 0.5);         // 0.5, 1.0, 0.25, 0.1, 0.8
  EXPECT_DOUBLE_EQ(Attainment(timings, kSlo, 0.5), 0.3);    // 0.5, 0.25, 0.1
  EXPECT_DOUBLE_EQ(Attainment(timings, kSlo, 2.0), 0.7);    // + 1.5, 2.0
  EXPECT_DOUBLE_EQ(Attainment(timings, kSlo, 100.0), 0.9);  // all but the failed one
  EXPECT_DOUBLE_EQ(Attainment({}, kSlo), 0.0);
}

TEST(MinSloScaleTest, HandComputed) {
  const std::vector<RequestTiming> timings = TenTimings();
  // Sorted required scales: 0.1 0.25 0.5 0.8 1.0 1.5 2.0 3.0 4.0 inf.
  absl::StatusOr<double> scale = MinSloScale(timings, kSlo, 0.5);
  ASSERT_TRUE(scale.ok()) << scale.status();
  EXPECT_NEAR(*scale, 1.0, 1e-9);  // the 5th smallest
  scale = MinSloScale(timings, kSlo, 0.9);
  ASSERT_TRUE(scale.ok()) << scale.status();
  EXPECT_NEAR(*scale, 4.0, 1e-9);  // the 9th smallest
  scale = MinSloScale(timings, kSlo, 0.8);
  ASSERT_TRUE(scale.ok());
  EXPECT_NEAR(*scale, 3.0, 1e-9);
  EXPECT_GE(Attainment(timings, kSlo, *scale), 0.8);
}

TEST(MinSloScaleTest, RoundsUpToThePrecision) {
  const std::vector<RequestTiming> timings = {{.ttft_s = 0.2 * 0.073, .tpot_s = 0}};
  absl::StatusOr<double> scale = MinSloScale(timings, kSlo, 0.9, 100, 0.01);
  ASSERT_TRUE(scale.ok());
  EXPECT_NEAR(*scale, 0.08, 1e-9);
  EXPECT_TRUE(Attained(timings[0], kSlo, *scale));
  // Exactly on a multiple stays there.
  scale = MinSloScale({{.ttft_s = 0.2 * 0.07, .tpot_s = 0}}, kSlo, 0.9, 100, 0.01);
  ASSERT_TRUE(scale.ok());
  EXPECT_NEAR(*scale, 0.07, 1e-9);
}

TEST(MinSloScaleTest, NotFoundWhenTheTargetIsOutOfReach) {
  const std::vector<RequestTiming> timings = TenTimings();
  // One request in ten failed: 100% is never reached.
  EXPECT_EQ(MinSloScale(timings, kSlo, 1.0).status().code(), absl::StatusCode::kNotFound);
  // 90% needs scale 4, over a max of 3.
  EXPECT_EQ(MinSloScale(timings, kSlo, 0.9, 3.0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(MinSloScale({}, kSlo).status().code(), absl::StatusCode::kNotFound);
}

TEST(MinSloScaleTest, BadArgumentsAreNamed) {
  const std::vector<RequestTiming> timings = TenTimings();
  absl::StatusOr<double> scale = MinSloScale(timings, kSlo, 1.5);
  ASSERT_EQ(scale.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(scale.status().message(), HasSubstr("target"));
  scale = MinSloScale(timings, {.ttft_s = 0, .tpot_s = 0.1});
  ASSERT_EQ(scale.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(scale.status().message(), HasSubstr("ttft_s"));
  scale = MinSloScale(timings, kSlo, 0.9, 100, 0);
  ASSERT_EQ(scale.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(scale.status().message(), HasSubstr("precision"));
}

}  // namespace
}  // namespace troupe::serving::workload
