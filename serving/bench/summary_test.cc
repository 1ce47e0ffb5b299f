#include "serving/bench/summary.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace troupe::serving::bench {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(PercentileTest, InterpolatesLikeNumpy) {
  const std::vector<double> values = {4, 1, 3, 2};  // unsorted on purpose
  EXPECT_DOUBLE_EQ(Percentile(values, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile(values, 50), 2.5);
  EXPECT_DOUBLE_EQ(Percentile(values, 99), 3.97);  // numpy.percentile([1, 2, 3, 4], 99)
  EXPECT_DOUBLE_EQ(Percentile(values, 100), 4);
  EXPECT_DOUBLE_EQ(Percentile({7}, 99), 7);
  EXPECT_DOUBLE_EQ(Percentile({}, 50), 0);
}

RequestResult Succeeded(int input_tokens, int generated_tokens, double ttft_s, double tpot_s,
                        double e2el_s, std::vector<double> itl_s) {
  RequestResult result;
  result.input_tokens = input_tokens;
  result.output_tokens = generated_tokens;
  result.generated_tokens = generated_tokens;
  result.success = true;
  result.ttft_s = ttft_s;
  result.tpot_s = tpot_s;
  result.e2el_s = e2el_s;
  result.itl_s = std::move(itl_s);
  return result;
}

// Three successful requests and one failed one over 2 s.
std::vector<RequestResult> FourResults() {
  std::vector<RequestResult> results = {
      Succeeded(10, 3, 0.1, 0.05, 0.2, {0.05, 0.05}),
      Succeeded(20, 1, 0.3, 0, 0.3, {}),
      Succeeded(30, 5, 0.2, 0.15, 0.8, {0.1, 0.2, 0.1, 0.2}),
      RequestResult(),
  };
  results[3].input_tokens = 40;
  results[3].output_tokens = 4;
  results[3].error = "HTTP 429: busy";
  for (size_t i = 0; i < results.size(); ++i) results[i].index = static_cast<int>(i);
  return results;
}

constexpr workload::Slo kSlo{.ttft_s = 0.25, .tpot_s = 0.1};

TEST(SummarizeTest, HandComputedTotalsAndLatencies) {
  const BenchmarkSummary s = Summarize(FourResults(), 2.0);
  EXPECT_EQ(s.completed, 3);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.total_input_tokens, 60);  // completed requests only
  EXPECT_EQ(s.total_generated_tokens, 9);
  EXPECT_DOUBLE_EQ(s.request_throughput, 1.5);
  EXPECT_DOUBLE_EQ(s.output_throughput, 4.5);
  EXPECT_DOUBLE_EQ(s.total_token_throughput, 34.5);
  // TTFT 0.1 0.2 0.3 s.
  EXPECT_NEAR(s.ttft.mean_ms, 200, 1e-9);
  EXPECT_NEAR(s.ttft.median_ms, 200, 1e-9);
  EXPECT_NEAR(s.ttft.p99_ms, 298, 1e-9);
  // TPOT leaves out the one-token request: 0.05 0.15 s.
  EXPECT_NEAR(s.tpot.mean_ms, 100, 1e-9);
  EXPECT_NEAR(s.tpot.median_ms, 100, 1e-9);
  EXPECT_NEAR(s.tpot.p99_ms, 149, 1e-9);
  // ITL pools every gap: 0.05 0.05 0.1 0.1 0.2 0.2 s.
  EXPECT_NEAR(s.itl.mean_ms, 700.0 / 6, 1e-9);
  EXPECT_NEAR(s.itl.median_ms, 100, 1e-9);
  EXPECT_NEAR(s.itl.p99_ms, 200, 1e-9);
  // E2EL 0.2 0.3 0.8 s.
  EXPECT_NEAR(s.e2el.mean_ms, 1300.0 / 3, 1e-9);
  EXPECT_NEAR(s.e2el.median_ms, 300, 1e-9);
  EXPECT_NEAR(s.e2el.p99_ms, 790, 1e-9);
  EXPECT_FALSE(s.request_goodput.has_value());
  EXPECT_FALSE(s.slo_attainment.has_value());
}

TEST(SummarizeTest, GoodputAndAttainmentUseTheJointRule) {
  // Only request 0 meets both (TTFT 0.1 <= 0.25, TPOT 0.05 <= 0.1); request 1 misses TTFT,
  // request 2 misses TPOT, request 3 failed.
  const BenchmarkSummary s = Summarize(FourResults(), 2.0, kSlo);
  ASSERT_TRUE(s.request_goodput.has_value());
  EXPECT_DOUBLE_EQ(*s.request_goodput, 0.5);  // 1 good request / 2 s
  ASSERT_TRUE(s.slo_attainment.has_value());
  EXPECT_DOUBLE_EQ(*s.slo_attainment, 0.25);  // 1 of 4: the failed one counts as a miss
}

TEST(SummarizeTest, NoRequestsGiveZeros) {
  const BenchmarkSummary s = Summarize({}, 0, kSlo);
  EXPECT_EQ(s.completed, 0);
  EXPECT_EQ(s.request_throughput, 0);
  EXPECT_EQ(s.ttft.p99_ms, 0);
  EXPECT_EQ(*s.slo_attainment, 0);
  EXPECT_EQ(*s.request_goodput, 0);
}

TEST(AttainmentByScaleTest, HandComputed) {
  const std::vector<ScaledAttainment> by_scale =
      AttainmentByScale(FourResults(), kSlo, {0.5, 1, 2, 4});
  ASSERT_EQ(by_scale.size(), 4u);
  // x0.5 (0.125 s, 0.05 s): request 0 only. x2 (0.5 s, 0.2 s): requests 0-2. Never the failed.
  const double expected[] = {0.25, 0.25, 0.75, 0.75};
  for (size_t i = 0; i < by_scale.size(); ++i) {
    EXPECT_DOUBLE_EQ(by_scale[i].attainment, expected[i]) << "scale " << by_scale[i].scale;
  }
}

TEST(FormatSummaryTest, PrintsVllmLabelsVerbatim) {
  const std::string text = FormatSummary(Summarize(FourResults(), 2.0, kSlo));
  for (const char* label : {"Successful requests:",
                            "Failed requests:",
                            "Benchmark duration (s):",
                            "Total input tokens:",
                            "Total generated tokens:",
                            "Request throughput (req/s):",
                            "Request goodput (req/s):",
                            "Output token throughput (tok/s):",
                            "Total Token throughput (tok/s):",
                            "SLO attainment (%):",
                            "Mean TTFT (ms):",
                            "Median TTFT (ms):",
                            "P99 TTFT (ms):",
                            "Mean TPOT (ms):",
                            "Median TPOT (ms):",
                            "P99 TPOT (ms):",
                            "Mean ITL (ms):",
                            "Median ITL (ms):",
                            "P99 ITL (ms):",
                            "Mean E2EL (ms):",
                            "Median E2EL (ms):",
                            "P99 E2EL (ms):"}) {
    EXPECT_THAT(text, HasSubstr(std::string("\n") + label)) << label;
  }
  // Labels padded to 40 columns, then the value, as vLLM's "{:<40} {:<10}".
  EXPECT_THAT(text, HasSubstr("\nSuccessful requests:" + std::string(21, ' ') + "3\n"));
  EXPECT_THAT(text, HasSubstr("\nBenchmark duration (s):" + std::string(18, ' ') + "2.00\n"));
  EXPECT_THAT(text, HasSubstr("Request goodput (req/s):" + std::string(17, ' ') + "0.50\n"));
  EXPECT_THAT(text, HasSubstr("SLO attainment (%):" + std::string(22, ' ') + "25.00\n"));
  EXPECT_THAT(text, HasSubstr("P99 E2EL (ms):" + std::string(27, ' ') + "790.00\n"));
  EXPECT_EQ(text.rfind("============ Serving Benchmark Result ============\n", 0), 0u);
  EXPECT_THAT(text, HasSubstr("\n---------------Time to First Token----------------\n"));
}

TEST(FormatSummaryTest, GoodputLinesOnlyWithAnSlo) {
  const std::string text = FormatSummary(Summarize(FourResults(), 2.0));
  EXPECT_THAT(text, Not(HasSubstr("goodput")));
  EXPECT_THAT(text, Not(HasSubstr("SLO attainment")));
}

TEST(JsonTest, SummaryAndRequests) {
  const std::vector<RequestResult> results = FourResults();
  const nlohmann::json summary = SummaryJson(Summarize(results, 2.0, kSlo));
  EXPECT_EQ(summary["completed"], 3);
  EXPECT_DOUBLE_EQ(summary["ttft"]["p99_ms"].get<double>(), 298);
  EXPECT_DOUBLE_EQ(summary["slo_attainment"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(summary["slo"]["ttft_s"].get<double>(), 0.25);
  const nlohmann::json request = RequestJson(results[2]);
  EXPECT_EQ(request["generated_tokens"], 5);
  EXPECT_EQ(request["itl_s"].size(), 4u);
  EXPECT_FALSE(request.contains("error"));
  EXPECT_EQ(RequestJson(results[3])["error"], "HTTP 429: busy");
}

}  // namespace
}  // namespace troupe::serving::bench
