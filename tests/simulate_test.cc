// `troupe simulate` as a user runs it: a real process replaying a `troupe bench` JSON in the
// simulator with a profile's fit, its measured attainments checked by hand, and every bad input
// named with its fix.
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "serving/placement/profile.h"
#include "tests/troupe_command.h"

namespace troupe {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

using Outcome = testing::CommandOutcome;
using testing::TestTempPath;

Outcome Simulate(const std::vector<std::string>& flags) {
  return testing::RunTroupeCommand("simulate", flags);
}

std::string TempPath(const std::string& name) { return TestTempPath(name); }

std::string WriteText(const std::string& name, const std::string& text) {
  const std::string path = TempPath(name);
  std::ofstream(path) << text;
  return path;
}

// A profile of the tiny model whose samples follow prefill 1 ms + 10 µs per token and decode
// 2 ms + 0.1 ms per sequence: enough points for the fit.
std::string TinyProfile() {
  serving::placement::Profile profile{"tiny", "cpu", "fp32", {}};
  for (int64_t t : {16, 64, 128, 256, 400}) {
    profile.samples.push_back(
        {serving::placement::Phase::kPrefill, 1, 1, t, t * t, 1e-3 + 1e-5 * t});
  }
  for (int b : {1, 2, 4, 8, 16}) {
    profile.samples.push_back(
        {serving::placement::Phase::kDecode, 1, b, 100LL * b, 0, 2e-3 + 1e-4 * b});
  }
  const std::string path = TempPath("tiny_profile.json");
  EXPECT_TRUE(serving::placement::WriteProfile(path, profile).ok());
  return path;
}

// A bench JSON of two runs of two requests; with the SLO 50 ms / 10 ms, run 0 has one request
// meeting both (the other misses TPOT) and run 1 one failed and one meeting both: 50% each.
std::string Measured() {
  const Json request_ok = {{"arrival_s", 0.0}, {"input_tokens", 32}, {"output_tokens", 4},
                           {"ttft_s", 0.02},   {"tpot_s", 0.005},    {"success", true}};
  Json slow = request_ok;
  slow["arrival_s"] = 0.5;
  slow["tpot_s"] = 0.02;
  Json failed = request_ok;
  failed["arrival_s"] = 0.5;
  failed["success"] = false;
  const Json slo = {{"ttft_s", 0.05}, {"tpot_s", 0.01}};
  const Json j = {
      {"runs",
       {{{"rate_per_s", 2.0}, {"requests", {request_ok, slow}}, {"summary", {{"slo", slo}}}},
        {{"rate_per_s", 4.0}, {"requests", {request_ok, failed}}}}}};
  return WriteText("measured.json", j.dump());
}

TEST(SimulateTest, ReplaysEveryRunAndReportsBothAttainments) {
  const std::string out = TempPath("validation.json");
  const Outcome run = Simulate({"--profile=" + TinyProfile(), "--measured=" + Measured(),
                                "--mode=colocated", "--slo_scales=0.5,1", "--json_out=" + out});
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("SLO: TTFT 50 ms, TPOT 10 ms; colocated"));
  EXPECT_THAT(run.output, HasSubstr("largest |simulated - measured| attainment"));
  std::ifstream in(out);
  const Json j = Json::parse(in);
  ASSERT_EQ(j["runs"].size(), 2u);
  for (const Json& r : j["runs"]) {
    ASSERT_EQ(r["attainment_by_scale"].size(), 2u);
    const Json& at_one = r["attainment_by_scale"][1];
    EXPECT_DOUBLE_EQ(at_one["scale"].get<double>(), 1.0);
    EXPECT_DOUBLE_EQ(at_one["measured_attainment"].get<double>(), 0.5);
    const double simulated = at_one["simulated_attainment"].get<double>();
    EXPECT_GE(simulated, 0.0);
    EXPECT_LE(simulated, 1.0);
  }
  // At half the SLO (25 ms / 5 ms) run 0's first request still meets it: 20 ms and 5 ms.
  EXPECT_DOUBLE_EQ(j["runs"][0]["attainment_by_scale"][0]["measured_attainment"].get<double>(),
                   0.5);
}

TEST(SimulateTest, BadInputsAreErrorsNamingTheFix) {
  const std::string profile = TinyProfile();
  const std::string measured = Measured();
  const auto expect_error = [](const std::vector<std::string>& flags, const std::string& what) {
    const Outcome run = Simulate(flags);
    EXPECT_NE(run.exit_code, 0) << what;
    EXPECT_THAT(run.output, HasSubstr(what));
  };
  expect_error({}, "needs --measured (a `troupe bench --json_out` file) and --profile");
  expect_error({"--profile=" + profile, "--measured=" + TempPath("none.json")},
               "cannot open it; write one with `troupe bench --json_out`");
  expect_error({"--profile=" + profile, "--measured=" + WriteText("bad.json", "{\"runs\": 3}")},
               "no \"runs\" array");
  expect_error(
      {"--profile=" + profile,
       "--measured=" + WriteText("partial.json",
                                 R"({"runs": [{"requests": [{"arrival_s": 0, "input_tokens": 4,
                                   "output_tokens": 2, "ttft_s": 0.1, "tpot_s": 0.1,
                                   "success": true}, {"arrival_s": 1}]}]})")},
      "runs[0].requests[1] lacks one of");
  expect_error({"--profile=" + profile, "--measured=" + measured, "--mode=both"},
               "--mode=both is not one of disaggregated, colocated, chunked");
  expect_error({"--profile=" + TempPath("no_profile.json"), "--measured=" + measured},
               "measure one with `troupe profile --profile_out`");
  expect_error({"--profile=" + profile, "--measured=" + measured, "--slo_scales=0,1"},
               "--slo_scales");
  const std::string no_slo =
      WriteText("no_slo.json", R"({"runs": [{"requests": [{"arrival_s": 0, "input_tokens": 4,
        "output_tokens": 2, "ttft_s": 0.1, "tpot_s": 0.1, "success": true}]}]})");
  expect_error({"--profile=" + profile, "--measured=" + no_slo},
               "no SLO: the measured runs had no --goodput; give --ttft_s and --tpot_s");
}

}  // namespace
}  // namespace troupe
