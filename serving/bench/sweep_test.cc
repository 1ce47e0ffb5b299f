#include "serving/bench/sweep.h"

#include <cmath>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace troupe::serving::bench {
namespace {

using ::testing::HasSubstr;

TEST(ParseGoodputSpecTest, ReadsMilliseconds) {
  absl::StatusOr<workload::Slo> slo = ParseGoodputSpec("ttft:250 tpot:100");
  ASSERT_TRUE(slo.ok()) << slo.status();
  EXPECT_DOUBLE_EQ(slo->ttft_s, 0.25);
  EXPECT_DOUBLE_EQ(slo->tpot_s, 0.1);
  slo = ParseGoodputSpec(" tpot:12.5 ");
  ASSERT_TRUE(slo.ok()) << slo.status();
  EXPECT_TRUE(std::isinf(slo->ttft_s));  // not given: no constraint
  EXPECT_DOUBLE_EQ(slo->tpot_s, 0.0125);
}

TEST(ParseGoodputSpecTest, BadPartsAreNamed) {
  for (const auto& [spec, named] :
       std::vector<std::pair<std::string, std::string>>{{"", "--goodput is empty"},
                                                        {"ttft", "\"ttft\""},
                                                        {"ttft:fast", "\"ttft:fast\""},
                                                        {"ttft:-5", "\"ttft:-5\""},
                                                        {"e2el:900", "\"e2el\""},
                                                        {"ttft:1:2", "\"ttft:1:2\""}}) {
    absl::StatusOr<workload::Slo> slo = ParseGoodputSpec(spec);
    ASSERT_EQ(slo.status().code(), absl::StatusCode::kInvalidArgument) << spec;
    EXPECT_THAT(slo.status().message(), HasSubstr(named)) << spec;
    EXPECT_THAT(slo.status().message(), HasSubstr("ttft:MS tpot:MS")) << spec;
  }
}

TEST(ParsePositiveListTest, ReadsAndRejects) {
  absl::StatusOr<std::vector<double>> rates = ParsePositiveList("1,2.5,4", "rates");
  ASSERT_TRUE(rates.ok());
  EXPECT_EQ(*rates, (std::vector<double>{1, 2.5, 4}));
  for (const char* bad : {"", "1,,2", "1,0", "1,-2", "fast", "1;2"}) {
    absl::StatusOr<std::vector<double>> list = ParsePositiveList(bad, "slo_scales");
    ASSERT_EQ(list.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(list.status().message(), HasSubstr("--slo_scales")) << bad;
  }
}

RequestResult Timed(double ttft_s, double tpot_s, bool success = true) {
  RequestResult result;
  result.input_tokens = 8;
  result.output_tokens = result.generated_tokens = 4;
  result.success = success;
  result.ttft_s = ttft_s;
  result.tpot_s = tpot_s;
  result.e2el_s = ttft_s + 3 * tpot_s;
  return result;
}

constexpr workload::Slo kSlo{.ttft_s = 0.2, .tpot_s = 0.1};

// Rates 1, 2, 4: attainment 100%, 90% (9 of 10), 50%.
std::vector<SweepPoint> ThreePoints() {
  std::vector<SweepPoint> points;
  for (const auto& [rate, good] : std::vector<std::pair<double, int>>{{4, 5}, {1, 10}, {2, 9}}) {
    BenchmarkRun run;
    for (int i = 0; i < 10; ++i) {
      run.results.push_back(i < good ? Timed(0.1, 0.05) : Timed(0.3, 0.05));
    }
    run.duration_s = 10;
    points.push_back(SummarizePoint(rate, std::move(run), kSlo, {1, 2}));
  }
  return points;
}

TEST(SweepTest, SummarizesEachRateAtEachScale) {
  const std::vector<SweepPoint> points = ThreePoints();
  const SweepPoint& at4 = points[0];
  EXPECT_DOUBLE_EQ(at4.rate_per_s, 4);
  EXPECT_DOUBLE_EQ(*at4.summary.slo_attainment, 0.5);
  ASSERT_EQ(at4.attainment_by_scale.size(), 2u);
  EXPECT_DOUBLE_EQ(at4.attainment_by_scale[0].attainment, 0.5);
  EXPECT_DOUBLE_EQ(at4.attainment_by_scale[1].attainment, 1.0);  // TTFT 0.3 <= 0.4
  ASSERT_TRUE(at4.min_slo_scale.has_value());
  EXPECT_NEAR(*at4.min_slo_scale, 1.5, 1e-9);        // 0.3 / 0.2
  EXPECT_NEAR(*points[1].min_slo_scale, 0.5, 1e-9);  // the 9th of 10: 0.1 / 0.2
}

TEST(SweepTest, MaxRateNeedsEveryLowerRateToo) {
  EXPECT_EQ(MaxRateMeetingTarget(ThreePoints(), 0.9), 2.0);
  EXPECT_EQ(MaxRateMeetingTarget(ThreePoints(), 0.95), 1.0);
  EXPECT_EQ(MaxRateMeetingTarget(ThreePoints(), 0.4), 4.0);
  std::vector<SweepPoint> points = ThreePoints();
  points[1].summary.slo_attainment = 0.2;  // rate 1 misses: nothing counts
  EXPECT_EQ(MaxRateMeetingTarget(points, 0.9), std::nullopt);
}

TEST(SweepTest, TableAndJson) {
  const std::vector<SweepPoint> points = ThreePoints();
  const std::string table = FormatSweep(points);
  EXPECT_THAT(table, HasSubstr("x1%"));
  EXPECT_THAT(table, HasSubstr("x2%"));
  EXPECT_THAT(table, HasSubstr("Max rate with >= 90% SLO attainment (req/s): 2.000"));
  const nlohmann::json json = SweepJson({{"dataset", "code"}}, points);
  EXPECT_EQ(json["config"]["dataset"], "code");
  EXPECT_DOUBLE_EQ(json["max_rate_meeting_target"].get<double>(), 2.0);
  ASSERT_EQ(json["runs"].size(), 3u);
  const nlohmann::json& run = json["runs"][0];
  EXPECT_DOUBLE_EQ(run["rate_per_s"].get<double>(), 4);
  EXPECT_EQ(run["requests"].size(), 10u);
  EXPECT_DOUBLE_EQ(run["slo_attainment_by_scale"][1]["attainment"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(run["summary"]["slo_attainment"].get<double>(), 0.5);
  EXPECT_NEAR(run["min_slo_scale"].get<double>(), 1.5, 1e-9);
}

}  // namespace
}  // namespace troupe::serving::bench
