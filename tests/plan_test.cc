// `troupe plan` as a user runs it: a real process, its TOML loaded and checked as `troupe check`
// does, its JSON read back, a plan from a profile, and every bad flag naming its fix.
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "actors/cluster_config.h"
#include "actors/roles.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "serving/cluster/serving_roles.h"
#include "serving/model/config.h"
#include "serving/placement/latency_model.h"
#include "serving/placement/profile.h"
#include "tests/troupe_command.h"

namespace troupe {
namespace {

using ::testing::HasSubstr;

using Outcome = testing::CommandOutcome;
using testing::TestTempPath;

Outcome Plan(const std::vector<std::string>& flags) {
  return testing::RunTroupeCommand("plan", flags);
}

std::string TempPath(const std::string& name) { return TestTempPath(name); }

// A small, quick search.
const std::vector<std::string> kSmall = {"--nodes=1", "--gpus_per_node=4", "--num_requests=100",
                                         "--compare_colocated=false"};

// With is the small search's flags, then `flags` (the later of two flags wins).
std::vector<std::string> With(const std::vector<std::string>& flags) {
  std::vector<std::string> all = kSmall;
  all.insert(all.end(), flags.begin(), flags.end());
  return all;
}

TEST(PlanTest, WritesATomlTheRuntimeLoadsAndAJsonOfThePlan) {
  const std::string toml = TempPath("plan.toml"), json = TempPath("plan.json");
  const Outcome run =
      Plan(With({"--model=opt-13b", "--out=" + toml, "--json_out=" + json, "--rate=5"}));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("DistServe's SLO for this model and dataset"));
  EXPECT_THAT(run.output, HasSubstr("plan (low affinity, Algorithm 2)"));
  EXPECT_THAT(run.output, HasSubstr("best configurations"));
  EXPECT_THAT(run.output, HasSubstr("wrote " + toml));

  absl::StatusOr<actors::ClusterConfig> config = actors::LoadClusterConfig(toml);
  ASSERT_TRUE(config.ok()) << config.status();
  actors::RoleCatalog roles = actors::BuiltinRoles();
  serving::cluster::AddServingRoles(roles, {});
  EXPECT_TRUE(roles.Check(*config).ok()) << roles.Check(*config);

  std::ifstream in(json);
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json plan = nlohmann::json::parse(text.str());
  EXPECT_EQ(plan["model"], "opt-13b");
  EXPECT_EQ(plan["slo"]["ttft_s"], 0.25);
  EXPECT_GE(plan["plan"]["prefill"]["tensor_parallel"].get<int>(), 1);
  EXPECT_GE(plan["plan"]["decode"]["instances"].get<int>(), 1);
  EXPECT_EQ(plan["plan"]["rate"], 5.0);
  EXPECT_FALSE(plan["candidates"].empty());
}

TEST(PlanTest, FitsAProfileInsteadOfTheRoofline) {
  // A profile measured "by" the H200 roofline itself.
  const serving::model::ModelConfig model = *serving::model::ModelPreset("opt-13b");
  serving::placement::RooflineModel roofline(model, *serving::placement::GpuPreset("h200"));
  std::unique_ptr<serving::placement::StepTimeModel> times = *roofline.For(1, 1);
  serving::placement::Profile profile{"opt-13b", "roofline", "fp16", {}};
  for (int batch : {1, 2, 4, 8}) {
    for (int length : {64, 256, 1024}) {
      const int64_t t = int64_t{batch} * length, t2 = t * length;
      profile.samples.push_back({serving::placement::Phase::kPrefill, 1, batch, t, t2,
                                 times->PrefillSeconds(batch, t, t2)});
      profile.samples.push_back({serving::placement::Phase::kDecode, 1, batch * 8, t * 8, 0,
                                 times->DecodeSeconds(batch * 8, t * 8)});
    }
  }
  const std::string path = TempPath("profile.json");
  ASSERT_TRUE(serving::placement::WriteProfile(path, profile).ok());
  const Outcome run = Plan(With({"--model=opt-13b", "--gpu=h200", "--profile=" + path}));
  ASSERT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("latency model fitted to " + path));
  EXPECT_THAT(run.output, HasSubstr("rel. error"));
  EXPECT_THAT(run.output, HasSubstr("other degrees scaled from TP1"));

  const Outcome other_model = Plan(With({"--model=opt-66b", "--profile=" + path}));
  EXPECT_EQ(other_model.exit_code, 1);
  EXPECT_THAT(other_model.output, HasSubstr("measured on model \"opt-13b\""));
}

TEST(PlanTest, APlanSpanningNodesIsPrintedButNotWritten) {
  const Outcome run = Plan({"--model=opt-175b", "--num_requests=100", "--compare_colocated=false",
                            "--out=" + TempPath("spanning.toml")});
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_THAT(run.output, HasSubstr("prefill  TP3"));
  EXPECT_THAT(run.output, HasSubstr("--nodes_per_instance=1"));
}

TEST(PlanTest, BadFlagsNameTheFix) {
  struct Case {
    std::vector<std::string> flags;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{}, "--model is the test model tiny"},
      {{"--model=opt-99b"}, "--model"},
      {{"--model=opt-13b", "--gpu=v100"}, "--gpu: unknown GPU \"v100\""},
      {{"--model=opt-13b", "--affinity=medium"}, "--affinity"},
      {{"--model=opt-13b", "--dataset=poetry"}, "--dataset"},
      {{"--model=opt-13b", "--dataset=code"}, "give one with --ttft_s and --tpot_s"},
      {{"--model=opt-13b", "--profile=/nonexistent/profile.json"}, "cannot open the profile"},
      {{"--model=opt-13b", "--nodes=0"}, "--nodes"},
      {{"--model=opt-13b", "--rate=-1"}, "--rate"},
      {{"--model=opt-13b", "--attainment_target=2"}, "--attainment"},
      {{"--model=opt-13b", "--cross_node_gbps=0"}, "--cross_node_gbps"},
      {{"--model=opt-13b", "--ttft_s=0.001"}, "relax the SLO"},
      {{"--model=opt-13b", "--out=/nonexistent/dir/plan.toml"}, "--out=/nonexistent/dir"},
  };
  for (const Case& c : cases) {
    const Outcome run = Plan(With(c.flags));
    EXPECT_EQ(run.exit_code, 1) << run.output;
    EXPECT_THAT(run.output, HasSubstr(c.says));
  }
}

}  // namespace
}  // namespace troupe
