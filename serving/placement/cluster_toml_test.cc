#include "serving/placement/cluster_toml.h"

#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "actors/cluster_config.h"
#include "actors/roles.h"
#include "gtest/gtest.h"
#include "serving/cluster/serving_roles.h"
#include "serving/engine/cuda_parallel_plan.h"
#include "serving/model/config.h"
#include "serving/placement/latency_model.h"
#include "serving/placement/search.h"

namespace troupe::serving::placement {
namespace {

// Check loads `toml` with the runtime's loader and checks it as `troupe check` does (every role
// and parameter known to the serving binaries), then that every instance's GPUs are on its node,
// listed there, shared with no other instance, and placed by the CUDA factory's own rule.
void Check(const std::string& toml, const ClusterSpec& cluster, const std::string& model_name) {
  absl::StatusOr<actors::ClusterConfig> config = actors::ParseClusterConfig(toml, "<plan>");
  ASSERT_TRUE(config.ok()) << config.status() << "\n" << toml;
  actors::RoleCatalog roles = actors::BuiltinRoles();
  cluster::AddServingRoles(roles, {});
  ASSERT_TRUE(roles.Check(*config).ok()) << roles.Check(*config) << "\n" << toml;
  const model::ModelConfig model = *model::ModelPreset(model_name);
  int servers = 0;
  std::set<std::pair<std::string, int>> taken;
  for (const actors::ActorSpec& actor : config->actors) {
    if (actor.role == "server") {
      ++servers;
      continue;
    }
    ASSERT_TRUE(actor.role == "prefill" || actor.role == "decode") << actor.role;
    const int tp = static_cast<int>(std::get<int64_t>(actor.params.at("tensor_parallel")));
    const int pp = static_cast<int>(std::get<int64_t>(actor.params.at("pipeline_stages")));
    EXPECT_GT(std::get<int64_t>(actor.params.at("kv_blocks")), 0);
    const int first = *actors::ParseDevice(actor.device);
    absl::StatusOr<engine::CudaParallelPlan> plan =
        engine::PlanCudaParallelism(model, pp, tp, first, cluster.gpus_per_node);
    ASSERT_TRUE(plan.ok()) << plan.status();
    const actors::NodeSpec* node = config->FindNode(actor.node);
    ASSERT_NE(node, nullptr);
    for (const engine::CudaStagePlan& stage : plan->stages) {
      for (int device : stage.devices) {
        EXPECT_GE(device, first) << actor.name << " wraps around the node's GPUs";
        EXPECT_NE(std::find(node->info.gpus.begin(), node->info.gpus.end(), device),
                  node->info.gpus.end())
            << actor.name << " uses GPU " << device << " its node does not list";
        EXPECT_TRUE(taken.insert({actor.node, device}).second)
            << actor.name << " shares GPU " << device << " on " << actor.node;
      }
    }
  }
  EXPECT_EQ(servers, 1);
}

Plan PairPlan(InstanceConfig prefill, InstanceConfig decode, int pairs, int inter_op) {
  Plan plan;
  plan.affinity = Affinity::kLow;
  plan.inter_op_nodes = inter_op;
  plan.prefill = {prefill, pairs, 5000, 1};
  plan.decode = {decode, pairs, 4000, 1};
  return plan;
}

TEST(ClusterTomlTest, PairsOnTwoNodesStartAsTheRuntimeReadsThem) {
  ClusterSpec cluster;
  cluster.nodes = 2;
  cluster.gpus_per_node = 8;
  ClusterTomlOptions options;
  options.model = "opt-13b";
  options.header = {"troupe plan --model=opt-13b", "second line"};
  absl::StatusOr<std::string> toml = ClusterToml(PairPlan({2, 1}, {1, 1}, 4, 1), cluster, options);
  ASSERT_TRUE(toml.ok()) << toml.status();
  Check(*toml, cluster, "opt-13b");
  EXPECT_TRUE(absl::StartsWith(*toml, "# troupe plan --model=opt-13b\n# second line\n"));
  absl::StatusOr<actors::ClusterConfig> config = actors::ParseClusterConfig(*toml, "<plan>");
  ASSERT_TRUE(config.ok());
  ASSERT_EQ(config->nodes.size(), 2u);
  EXPECT_EQ(config->nodes[0].info.port, 4200);
  EXPECT_EQ(config->nodes[1].info.gpus, (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
  const actors::ActorSpec& server = config->actors[0];
  EXPECT_EQ(std::get<std::string>(server.params.at("prefill")),
            "node0/prefill0, node0/prefill1, node1/prefill2, node1/prefill3");
  EXPECT_EQ(std::get<std::string>(server.params.at("decode")),
            "node0/decode0, node0/decode1, node1/decode2, node1/decode3");
  EXPECT_EQ(config->actors[1].device, "cuda:0");
  EXPECT_EQ(std::get<int64_t>(config->actors[1].params.at("kv_blocks")), 5000);
  EXPECT_EQ(std::get<int64_t>(config->actors[1].params.at("max_batch_tokens")), 8192);
}

TEST(ClusterTomlTest, ASearchedPlanIsWrittenAndValid) {
  const model::ModelConfig model = *model::ModelPreset("opt-13b");
  ClusterSpec cluster;
  cluster.nodes = 1;
  cluster.gpus_per_node = 8;
  cluster.gpu = *GpuPreset("a100-80gb");
  RooflineModel times(model, cluster.gpu);
  SearchOptions search;
  search.slo = {0.25, 0.1};
  search.num_requests = 100;
  search.rate_precision = 0.1;
  for (Affinity affinity : {Affinity::kLow, Affinity::kHigh}) {
    absl::StatusOr<Plan> plan = PlanPlacement(model, times, cluster, affinity, 0, search);
    ASSERT_TRUE(plan.ok()) << plan.status();
    ClusterTomlOptions options;
    options.model = "opt-13b";
    options.hosts = {"10.0.0.1"};
    absl::StatusOr<std::string> toml = ClusterToml(*plan, cluster, options);
    ASSERT_TRUE(toml.ok()) << toml.status();
    Check(*toml, cluster, "opt-13b");
    EXPECT_TRUE(absl::StrContains(*toml, "host = \"10.0.0.1\""));
  }
}

TEST(ClusterTomlTest, InstancesSpanningNodesAreRefusedWithTheFix) {
  ClusterSpec cluster;
  cluster.nodes = 4;
  cluster.gpus_per_node = 8;
  ClusterTomlOptions options;
  options.model = "opt-175b";
  absl::StatusOr<std::string> toml = ClusterToml(PairPlan({3, 3}, {4, 3}, 1, 3), cluster, options);
  ASSERT_EQ(toml.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(toml.status().message(), "span 3 nodes"));
  EXPECT_TRUE(absl::StrContains(toml.status().message(), "--nodes_per_instance=1"));
}

TEST(ClusterTomlTest, BadInputsAreClearErrors) {
  ClusterSpec cluster;
  cluster.nodes = 2;
  cluster.gpus_per_node = 8;
  const Plan plan = PairPlan({2, 1}, {1, 1}, 2, 1);
  EXPECT_TRUE(absl::StrContains(ClusterToml(plan, cluster, {}).status().message(), "model"));
  ClusterTomlOptions options;
  options.model = "opt-13b";
  options.hosts = {"a"};
  EXPECT_TRUE(absl::StrContains(ClusterToml(plan, cluster, options).status().message(), "--hosts"));
  options.hosts.clear();
  EXPECT_TRUE(absl::StrContains(
      ClusterToml(PairPlan({2, 1}, {1, 1}, 9, 1), cluster, options).status().message(), "GPUs"));
  EXPECT_FALSE(ClusterToml(PairPlan({2, 1}, {1, 1}, 0, 1), cluster, options).ok());
}

}  // namespace
}  // namespace troupe::serving::placement
