#include "serving/workload/workload.h"

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::serving::workload {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr int kDraws = 20000;

struct LengthStats {
  double mean_input = 0;
  double mean_output = 0;
  int min_total = 0;
  int max_total = 0;
};

// DrawStats draws kDraws lengths and checks each one's bounds.
LengthStats DrawStats(Dataset dataset, int max_total_tokens, uint64_t seed = 7) {
  absl::StatusOr<LengthDistribution> distribution =
      LengthDistribution::For(dataset, max_total_tokens);
  EXPECT_TRUE(distribution.ok()) << distribution.status();
  std::mt19937_64 random(seed);
  LengthStats stats{.min_total = max_total_tokens, .max_total = 0};
  for (int i = 0; i < kDraws; ++i) {
    LengthDistribution::Lengths lengths = distribution->Draw(random);
    EXPECT_GE(lengths.input_tokens, 1);
    EXPECT_GE(lengths.output_tokens, 1);
    const int total = lengths.input_tokens + lengths.output_tokens;
    EXPECT_LE(total, max_total_tokens);
    stats.mean_input += lengths.input_tokens;
    stats.mean_output += lengths.output_tokens;
    stats.min_total = std::min(stats.min_total, total);
    stats.max_total = std::max(stats.max_total, total);
  }
  stats.mean_input /= kDraws;
  stats.mean_output /= kDraws;
  return stats;
}

TEST(LengthDistributionTest, ChatbotIsShareGptShaped) {
  LengthStats stats = DrawStats(Dataset::kChatbot, 2048);
  EXPECT_GE(stats.mean_input, 300);
  EXPECT_LE(stats.mean_input, 700);
  EXPECT_GE(stats.mean_output, 200);
  EXPECT_LE(stats.mean_output, 300);
}

TEST(LengthDistributionTest, ChatbotKeepsVllmShareGptFilter) {
  absl::StatusOr<LengthDistribution> distribution =
      LengthDistribution::For(Dataset::kChatbot, 2048);
  ASSERT_TRUE(distribution.ok());
  std::mt19937_64 random(3);
  for (int i = 0; i < kDraws; ++i) {
    LengthDistribution::Lengths lengths = distribution->Draw(random);
    EXPECT_GE(lengths.input_tokens, 4);
    EXPECT_LE(lengths.input_tokens, 1024);
    EXPECT_GE(lengths.output_tokens, 4);
  }
}

TEST(LengthDistributionTest, CodeIsHumanEvalShaped) {
  LengthStats stats = DrawStats(Dataset::kCode, 2048);
  EXPECT_GE(stats.mean_input, 130);
  EXPECT_LE(stats.mean_input, 170);
  EXPECT_GE(stats.mean_output, 80);
  EXPECT_LE(stats.mean_output, 120);
}

TEST(LengthDistributionTest, SummarizationIsLongBenchShaped) {
  LengthStats stats = DrawStats(Dataset::kSummarization, 2048);
  EXPECT_GE(stats.min_total, 1900);
  EXPECT_LT(stats.max_total, 2048);
  EXPECT_GE(stats.mean_output, 100);
  EXPECT_LE(stats.mean_output, 200);
  EXPECT_GE(stats.mean_input, 1700);
}

TEST(LengthDistributionTest, BoundsHoldForSmallContexts) {
  for (Dataset dataset : {Dataset::kChatbot, Dataset::kCode, Dataset::kSummarization}) {
    for (int max_total_tokens : {64, 100, 512}) {
      SCOPED_TRACE(absl::StrCat(DatasetName(dataset), " at ", max_total_tokens));
      DrawStats(dataset, max_total_tokens);
    }
  }
}

TEST(LengthDistributionTest, RejectsTooSmallContext) {
  absl::StatusOr<LengthDistribution> distribution = LengthDistribution::For(Dataset::kCode, 63);
  ASSERT_EQ(distribution.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(distribution.status().message(),
              AllOf(HasSubstr("max_total_tokens"), HasSubstr("63")));
}

TEST(DatasetTest, ParsesNamesAndRejectsOthers) {
  for (Dataset dataset : {Dataset::kChatbot, Dataset::kCode, Dataset::kSummarization}) {
    absl::StatusOr<Dataset> parsed = ParseDataset(DatasetName(dataset));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, dataset);
  }
  absl::StatusOr<Dataset> bad = ParseDataset("sharegpt");
  ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), AllOf(HasSubstr("sharegpt"), HasSubstr("chatbot")));
}

// MeanAndCv are the mean and coefficient of variation of the requests' inter-arrival gaps.
std::pair<double, double> GapMeanAndCv(const std::vector<Request>& requests) {
  std::vector<double> gaps;
  double previous = 0;
  for (const Request& request : requests) {
    gaps.push_back(request.arrival_s - previous);
    previous = request.arrival_s;
  }
  double mean = 0;
  for (double gap : gaps) mean += gap;
  mean /= gaps.size();
  double variance = 0;
  for (double gap : gaps) variance += (gap - mean) * (gap - mean);
  variance /= gaps.size() - 1;
  return {mean, std::sqrt(variance) / mean};
}

TEST(GenerateTest, PoissonHasTheRateAndCvOfOne) {
  absl::StatusOr<std::vector<Request>> requests =
      Generate({.rate_per_s = 4.0, .cv = 1.0, .num_requests = kDraws, .seed = 11});
  ASSERT_TRUE(requests.ok()) << requests.status();
  ASSERT_EQ(requests->size(), static_cast<size_t>(kDraws));
  auto [mean_gap, cv] = GapMeanAndCv(*requests);
  EXPECT_NEAR(1.0 / mean_gap, 4.0, 0.1);
  EXPECT_NEAR(cv, 1.0, 0.05);
  for (size_t i = 1; i < requests->size(); ++i) {
    EXPECT_GE((*requests)[i].arrival_s, (*requests)[i - 1].arrival_s);
  }
  EXPECT_GT(requests->front().arrival_s, 0);
}

TEST(GenerateTest, GammaArrivalsHaveTheRequestedCv) {
  for (double cv : {0.5, 2.0}) {
    absl::StatusOr<std::vector<Request>> requests =
        Generate({.rate_per_s = 2.0, .cv = cv, .num_requests = kDraws, .seed = 5});
    ASSERT_TRUE(requests.ok()) << requests.status();
    auto [mean_gap, measured_cv] = GapMeanAndCv(*requests);
    EXPECT_NEAR(1.0 / mean_gap, 2.0, 0.1) << "cv " << cv;
    EXPECT_NEAR(measured_cv, cv, 0.1 * cv) << "cv " << cv;
  }
}

TEST(GenerateTest, SameSeedKeepsLengthsAtEveryRateAndCv) {
  WorkloadSpec spec{
      .dataset = Dataset::kChatbot, .rate_per_s = 1.0, .num_requests = 200, .seed = 42};
  absl::StatusOr<std::vector<Request>> slow = Generate(spec);
  spec.rate_per_s = 8.0;
  spec.cv = 3.0;
  absl::StatusOr<std::vector<Request>> fast = Generate(spec);
  ASSERT_TRUE(slow.ok() && fast.ok());
  bool any_arrival_differs = false;
  for (size_t i = 0; i < slow->size(); ++i) {
    EXPECT_EQ((*slow)[i].input_tokens, (*fast)[i].input_tokens) << i;
    EXPECT_EQ((*slow)[i].output_tokens, (*fast)[i].output_tokens) << i;
    any_arrival_differs |= (*slow)[i].arrival_s != (*fast)[i].arrival_s;
  }
  EXPECT_TRUE(any_arrival_differs);

  spec.seed = 43;
  absl::StatusOr<std::vector<Request>> other = Generate(spec);
  ASSERT_TRUE(other.ok());
  int same = 0;
  for (size_t i = 0; i < slow->size(); ++i) {
    same += (*slow)[i].input_tokens == (*other)[i].input_tokens;
  }
  EXPECT_LT(same, 20);
}

TEST(GenerateTest, SameSpecIsDeterministic) {
  WorkloadSpec spec{.dataset = Dataset::kCode, .rate_per_s = 3.0, .num_requests = 50, .seed = 9};
  absl::StatusOr<std::vector<Request>> first = Generate(spec);
  absl::StatusOr<std::vector<Request>> second = Generate(spec);
  ASSERT_TRUE(first.ok() && second.ok());
  for (size_t i = 0; i < first->size(); ++i) {
    EXPECT_EQ((*first)[i].arrival_s, (*second)[i].arrival_s);
    EXPECT_EQ((*first)[i].input_tokens, (*second)[i].input_tokens);
  }
}

TEST(GenerateTest, BadFieldsAreNamed) {
  struct Case {
    WorkloadSpec spec;
    const char* field;
  };
  for (const Case& bad :
       {Case{{.rate_per_s = 0}, "rate_per_s"}, Case{{.rate_per_s = -1}, "rate_per_s"},
        Case{{.rate_per_s = INFINITY}, "rate_per_s"}, Case{{.cv = 0}, "cv"},
        Case{{.num_requests = 0}, "num_requests"},
        Case{{.max_total_tokens = 10}, "max_total_tokens"}}) {
    absl::StatusOr<std::vector<Request>> requests = Generate(bad.spec);
    ASSERT_EQ(requests.status().code(), absl::StatusCode::kInvalidArgument) << bad.field;
    EXPECT_THAT(requests.status().message(), HasSubstr(bad.field));
  }
}

TEST(WithRateTest, ScalesArrivalsAndKeepsLengths) {
  std::vector<Request> requests = {{1.0, 10, 5}, {2.0, 20, 6}, {4.0, 30, 7}, {4.0, 40, 8}};
  // 4 requests over 4 s is 1 request/s; at 2/s every arrival halves.
  std::vector<Request> faster = WithRate(requests, 2.0);
  ASSERT_EQ(faster.size(), requests.size());
  const double expected[] = {0.5, 1.0, 2.0, 2.0};
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_DOUBLE_EQ(faster[i].arrival_s, expected[i]);
    EXPECT_EQ(faster[i].input_tokens, requests[i].input_tokens);
    EXPECT_EQ(faster[i].output_tokens, requests[i].output_tokens);
  }
  EXPECT_TRUE(WithRate({}, 2.0).empty());
}

std::string TempPath(const std::string& name) {
  return std::string(::testing::TempDir()) + "/" + name;
}

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = TempPath(name);
  std::ofstream(path) << text;
  return path;
}

TEST(TraceTest, RoundTrips) {
  absl::StatusOr<std::vector<Request>> requests =
      Generate({.dataset = Dataset::kSummarization, .rate_per_s = 3.3, .num_requests = 100});
  ASSERT_TRUE(requests.ok());
  const std::string path = TempPath("round_trip.jsonl");
  ASSERT_TRUE(WriteTrace(path, *requests).ok());
  absl::StatusOr<std::vector<Request>> read = ReadTrace(path);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), requests->size());
  for (size_t i = 0; i < read->size(); ++i) {
    EXPECT_EQ((*read)[i].arrival_s, (*requests)[i].arrival_s);  // exactly
    EXPECT_EQ((*read)[i].input_tokens, (*requests)[i].input_tokens);
    EXPECT_EQ((*read)[i].output_tokens, (*requests)[i].output_tokens);
  }
}

TEST(TraceTest, SkipsBlankLines) {
  const std::string path = WriteFile(
      "blank.jsonl",
      "\n{\"arrival_s\": 0, \"input_tokens\": 3, \"output_tokens\": 2}\n  \n"
      "{\"arrival_s\": 0.5, \"input_tokens\": 4, \"output_tokens\": 1, \"note\": \"x\"}\n");
  absl::StatusOr<std::vector<Request>> read = ReadTrace(path);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->size(), 2u);
  EXPECT_EQ((*read)[1].input_tokens, 4);
  EXPECT_EQ((*read)[1].arrival_s, 0.5);
}

TEST(TraceTest, MissingFileIsNotFound) {
  absl::StatusOr<std::vector<Request>> read = ReadTrace(TempPath("no_such_trace.jsonl"));
  ASSERT_EQ(read.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(read.status().message(), HasSubstr("no_such_trace.jsonl"));
}

TEST(TraceTest, BadLinesNameFileLineAndProblem) {
  const std::string good = "{\"arrival_s\": 1, \"input_tokens\": 3, \"output_tokens\": 2}\n";
  struct Case {
    const char* name;
    std::string bad_line;
    const char* problem;
  };
  const std::vector<Case> cases = {
      {"bad_json", "{\"arrival_s\": 1, \"input_tokens\": ", "not valid JSON"},
      {"not_object", "[1, 2, 3]", "not a JSON object"},
      {"missing_arrival", "{\"input_tokens\": 3, \"output_tokens\": 2}", "arrival_s"},
      {"missing_output", "{\"arrival_s\": 2, \"input_tokens\": 3}", "output_tokens"},
      {"string_input", "{\"arrival_s\": 2, \"input_tokens\": \"3\", \"output_tokens\": 2}",
       "input_tokens"},
      {"fractional_output", "{\"arrival_s\": 2, \"input_tokens\": 3, \"output_tokens\": 2.5}",
       "output_tokens"},
      {"negative_arrival", "{\"arrival_s\": -2, \"input_tokens\": 3, \"output_tokens\": 2}",
       "arrival_s"},
      {"negative_input", "{\"arrival_s\": 2, \"input_tokens\": -3, \"output_tokens\": 2}",
       "input_tokens"},
      {"zero_output", "{\"arrival_s\": 2, \"input_tokens\": 3, \"output_tokens\": 0}",
       "output_tokens"},
      {"out_of_order", "{\"arrival_s\": 0.5, \"input_tokens\": 3, \"output_tokens\": 2}",
       "out of order"},
  };
  for (const Case& bad : cases) {
    const std::string name = std::string(bad.name) + ".jsonl";
    // The bad line is line 3: a good line, a blank line, then the bad one.
    const std::string path = WriteFile(name, good + "\n" + bad.bad_line + "\n" + good);
    absl::StatusOr<std::vector<Request>> read = ReadTrace(path);
    ASSERT_EQ(read.status().code(), absl::StatusCode::kInvalidArgument) << bad.name;
    EXPECT_THAT(read.status().message(), AllOf(HasSubstr(path + ":3:"), HasSubstr(bad.problem)))
        << bad.name;
  }
}

TEST(TraceTest, WriteToMissingFolderFails) {
  absl::Status status = WriteTrace(TempPath("no_such_folder/trace.jsonl"), {{0, 1, 1}});
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("no_such_folder"));
}

}  // namespace
}  // namespace troupe::serving::workload
