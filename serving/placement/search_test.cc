#include "serving/placement/search.h"

#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "serving/engine/cuda_parallel_plan.h"
#include "serving/model/config.h"
#include "serving/placement/latency_model.h"
#include "serving/placement/simulator.h"
#include "serving/workload/workload.h"

namespace troupe::serving::placement {
namespace {

using workload::Request;

class ConstantModel : public StepTimeModel {
 public:
  double PrefillSeconds(int, int64_t, int64_t) const override { return 0.1; }
  double DecodeSeconds(int, int64_t) const override { return 0.01; }
};

// Requests one second apart at rate 1, so at rate r one every 1/r seconds.
std::vector<Request> Regular(int n) {
  std::vector<Request> requests;
  for (int i = 0; i < n; ++i) requests.push_back({1.0 * (i + 1), 100, 1});
  return requests;
}

TEST(MaxGoodputTest, FindsTheRateWhereTheQueueStartsToGrow) {
  ConstantModel model;
  SimulatedCluster cluster;
  cluster.mode = SimulationMode::kPrefillOnly;
  cluster.prefill = {1, {1, 1}, &model, 1000};
  SimulatorOptions options;
  options.prefill_max_batch_requests = 1;  // 0.1 s per request: at most 10 requests/s
  absl::StatusOr<Simulator> simulator = Simulator::Create(cluster, options);
  ASSERT_TRUE(simulator.ok());
  absl::StatusOr<GoodputResult> goodput =
      MaxGoodput(*simulator, Regular(200), {0.15, 1.0}, /*attainment_target=*/0.9,
                 /*rate_precision=*/0.01);
  ASSERT_TRUE(goodput.ok()) << goodput.status();
  EXPECT_NEAR(goodput->rate, 10.0, 0.15);
  EXPECT_NEAR(goodput->saturated_rate, 10.0, 1e-6);

  // A TTFT SLO under the prefill time is missed even alone: no goodput, found without a run.
  absl::StatusOr<GoodputResult> none = MaxGoodput(*simulator, Regular(200), {0.05, 1.0}, 0.9, 0.01);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->rate, 0);
  EXPECT_EQ(none->simulations, 0);
  EXPECT_FALSE(MaxGoodput(*simulator, {}, {0.15, 1.0}, 0.9, 0.01).ok());
}

TEST(KvCapacityTest, WeightsFirstThenBlocks) {
  const model::ModelConfig opt13b = *model::ModelPreset("opt-13b");
  const model::ModelConfig opt175b = *model::ModelPreset("opt-175b");
  const GpuSpec a100 = *GpuPreset("a100-80gb");
  SearchOptions options;
  const double usable = 2 * (0.95 * a100.memory_bytes - options.reserved_bytes_per_gpu);
  const double weights = 2.0 * model::ParameterCount(opt13b);
  const double block = 16.0 * model::KvBytesPerToken(opt13b, gpu::DType::kFloat16);
  EXPECT_EQ(KvCapacityBlocks(opt13b, {2, 1}, a100, options),
            static_cast<int64_t>((usable - weights) / block));
  EXPECT_EQ(KvCapacityBlocks(opt175b, {1, 1}, a100, options), 0);  // 350 GB on one GPU
  EXPECT_EQ(KvCapacityBlocks(opt175b, {2, 2}, a100, options), 0);
  EXPECT_GT(KvCapacityBlocks(opt175b, {4, 2}, a100, options), 128);
}

SearchOptions SmallSearch() {
  SearchOptions options;
  options.slo = {0.25, 0.1};  // DistServe's OPT-13B chatbot SLO
  options.num_requests = 200;
  options.rate_precision = 0.05;
  return options;
}

TEST(PlanPlacementTest, LowAffinityPairsFitOneNodeAndAreDeterministic) {
  const model::ModelConfig model = *model::ModelPreset("opt-13b");
  ClusterSpec cluster;
  cluster.nodes = 1;
  cluster.gpus_per_node = 8;
  cluster.gpu = *GpuPreset("a100-80gb");
  RooflineModel times(model, cluster.gpu);
  SearchOptions options = SmallSearch();
  options.threads = 1;
  std::vector<std::string> progress;
  options.progress = [&](const std::string& line) { progress.push_back(line); };
  absl::StatusOr<Plan> plan = PlanPlacement(model, times, cluster, Affinity::kLow, 0, options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->inter_op_nodes, 1);
  EXPECT_TRUE(engine::CheckTensorParallel(model, plan->prefill.config.tensor_parallel).ok());
  EXPECT_TRUE(engine::CheckTensorParallel(model, plan->decode.config.tensor_parallel).ok());
  EXPECT_LE(plan->prefill.config.gpus() + plan->decode.config.gpus(), 8);
  EXPECT_EQ(plan->prefill.instances, plan->decode.instances);
  EXPECT_GE(plan->prefill.instances, 1);
  EXPECT_LE(plan->gpus, 8);
  EXPECT_TRUE(plan->fits_cluster);
  EXPECT_GT(plan->goodput_per_gpu, 0);
  EXPECT_NEAR(plan->rate, plan->prefill.instances * plan->prefill.goodput, 1e-9);
  EXPECT_GT(plan->attainment, 0);
  EXPECT_FALSE(progress.empty());
  ASSERT_FALSE(plan->candidates.empty());
  EXPECT_EQ(plan->candidates[0].prefill, plan->prefill.config);
  for (size_t i = 1; i < plan->candidates.size(); ++i) {
    EXPECT_GE(plan->candidates[i - 1].goodput_per_gpu, plan->candidates[i].goodput_per_gpu);
  }

  options.threads = 2;
  options.progress = nullptr;
  absl::StatusOr<Plan> again = PlanPlacement(model, times, cluster, Affinity::kLow, 0, options);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->prefill.config, plan->prefill.config);
  EXPECT_EQ(again->decode.config, plan->decode.config);
  EXPECT_EQ(again->goodput_per_gpu, plan->goodput_per_gpu);
  EXPECT_EQ(again->attainment, plan->attainment);
  ASSERT_EQ(again->candidates.size(), plan->candidates.size());
  for (size_t i = 0; i < plan->candidates.size(); ++i) {
    EXPECT_EQ(again->candidates[i].goodput, plan->candidates[i].goodput);
  }
}

TEST(PlanPlacementTest, HighAffinitySizesEachPhaseForTheRate) {
  const model::ModelConfig model = *model::ModelPreset("opt-13b");
  ClusterSpec cluster;
  cluster.nodes = 2;
  cluster.gpus_per_node = 4;
  cluster.gpu = *GpuPreset("a100-80gb");
  RooflineModel times(model, cluster.gpu);
  absl::StatusOr<Plan> plan =
      PlanPlacement(model, times, cluster, Affinity::kHigh, /*rate=*/3.0, SmallSearch());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->inter_op_nodes, 0);
  EXPECT_EQ(plan->rate, 3.0);
  EXPECT_EQ(plan->prefill.instances, static_cast<int>(std::ceil(3.0 / plan->prefill.goodput)));
  EXPECT_EQ(plan->decode.instances, static_cast<int>(std::ceil(3.0 / plan->decode.goodput)));
  EXPECT_GT(plan->attainment, 0.5);
  bool prefill = false, decode = false;
  for (const Candidate& c : plan->candidates) {
    prefill |= c.kind == Candidate::Kind::kPrefill;
    decode |= c.kind == Candidate::Kind::kDecode;
  }
  EXPECT_TRUE(prefill && decode);
}

TEST(PlanPlacementTest, ARateBeyondTheClusterIsNotedNotHidden) {
  const model::ModelConfig model = *model::ModelPreset("opt-13b");
  ClusterSpec cluster;
  cluster.nodes = 1;
  cluster.gpus_per_node = 4;
  cluster.gpu = *GpuPreset("a100-80gb");
  RooflineModel times(model, cluster.gpu);
  absl::StatusOr<Plan> plan =
      PlanPlacement(model, times, cluster, Affinity::kLow, /*rate=*/1000, SmallSearch());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_FALSE(plan->fits_cluster);
  ASSERT_FALSE(plan->notes.empty());
  EXPECT_TRUE(absl::StrContains(plan->notes[0], "GPUs")) << plan->notes[0];
}

TEST(PlanPlacementTest, ImpossibleSlosAndMemoryAreClearErrors) {
  const model::ModelConfig model = *model::ModelPreset("opt-13b");
  ClusterSpec cluster;
  cluster.nodes = 1;
  cluster.gpus_per_node = 2;
  cluster.gpu = *GpuPreset("a100-80gb");
  RooflineModel times(model, cluster.gpu);
  SearchOptions options = SmallSearch();
  options.slo = {0.001, 0.1};
  absl::StatusOr<Plan> plan = PlanPlacement(model, times, cluster, Affinity::kLow, 0, options);
  ASSERT_EQ(plan.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(plan.status().message(), "relax the SLO"));

  const model::ModelConfig opt175b = *model::ModelPreset("opt-175b");
  RooflineModel big(opt175b, cluster.gpu);
  plan = PlanPlacement(opt175b, big, cluster, Affinity::kHigh, 0, SmallSearch());
  ASSERT_EQ(plan.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(plan.status().message(), "fits no instance"));
}

TEST(PlanPlacementTest, BadInputsNameTheirFlag) {
  const model::ModelConfig model = *model::ModelPreset("opt-13b");
  ClusterSpec cluster;
  cluster.gpu = *GpuPreset("a100-80gb");
  RooflineModel times(model, cluster.gpu);
  const auto error = [&](ClusterSpec c, double rate, SearchOptions o) {
    return std::string(PlanPlacement(model, times, c, Affinity::kLow, rate, o).status().message());
  };
  ClusterSpec no_nodes = cluster;
  no_nodes.nodes = 0;
  EXPECT_TRUE(absl::StrContains(error(no_nodes, 0, SmallSearch()), "--nodes"));
  EXPECT_TRUE(absl::StrContains(error(cluster, -1, SmallSearch()), "--rate"));
  SearchOptions bad = SmallSearch();
  bad.slo.tpot_s = 0;
  EXPECT_TRUE(absl::StrContains(error(cluster, 0, bad), "--tpot_s"));
  bad = SmallSearch();
  bad.attainment_target = 1.5;
  EXPECT_TRUE(absl::StrContains(error(cluster, 0, bad), "attainment"));
  bad = SmallSearch();
  bad.num_requests = 0;
  EXPECT_TRUE(absl::StrContains(error(cluster, 0, bad), "--num_requests"));
  ClusterSpec no_gpu = cluster;
  no_gpu.gpu = {};
  EXPECT_TRUE(absl::StrContains(error(no_gpu, 0, SmallSearch()), "--gpu"));
  EXPECT_TRUE(absl::StrContains(ParseAffinity("medium").status().message(), "high"));
  EXPECT_EQ(*ParseAffinity("low"), Affinity::kLow);
}

Plan PairPlan(InstanceConfig prefill, InstanceConfig decode, int pairs, int inter_op) {
  Plan plan;
  plan.affinity = Affinity::kLow;
  plan.inter_op_nodes = inter_op;
  plan.prefill = {prefill, pairs, 1000, 1};
  plan.decode = {decode, pairs, 1000, 1};
  return plan;
}

TEST(PlaceInstancesTest, PairsFillNodesSlotBySlot) {
  ClusterSpec cluster;
  cluster.nodes = 2;
  cluster.gpus_per_node = 8;
  absl::StatusOr<std::vector<InstancePlacement>> placed =
      PlaceInstances(PairPlan({2, 1}, {1, 1}, 4, 1), cluster);
  ASSERT_TRUE(placed.ok()) << placed.status();
  ASSERT_EQ(placed->size(), 8u);
  // Two pairs of 3 GPUs per node: prefill at 0 and 3, decode at 2 and 5.
  EXPECT_EQ((*placed)[0].node, 0);
  EXPECT_EQ((*placed)[0].first_gpu, 0);
  EXPECT_EQ((*placed)[1].first_gpu, 3);
  EXPECT_EQ((*placed)[2].node, 1);
  EXPECT_EQ((*placed)[4].phase, Phase::kDecode);
  EXPECT_EQ((*placed)[4].first_gpu, 2);
  EXPECT_EQ((*placed)[5].first_gpu, 5);
  EXPECT_EQ((*placed)[7].node, 1);

  absl::StatusOr<std::vector<InstancePlacement>> too_many =
      PlaceInstances(PairPlan({2, 1}, {1, 1}, 5, 1), cluster);
  ASSERT_FALSE(too_many.ok());
  EXPECT_TRUE(absl::StrContains(too_many.status().message(), "15 GPUs"));

  // Stages across three nodes: every instance spans them.
  cluster.nodes = 4;
  absl::StatusOr<std::vector<InstancePlacement>> spanning =
      PlaceInstances(PairPlan({3, 3}, {4, 3}, 1, 3), cluster);
  ASSERT_TRUE(spanning.ok());
  EXPECT_EQ((*spanning)[0].nodes, 3);
  EXPECT_EQ((*spanning)[0].gpus_per_node, 3);
  EXPECT_EQ((*spanning)[1].first_gpu, 3);
  EXPECT_EQ((*spanning)[1].gpus_per_node, 4);
}

TEST(PlaceInstancesTest, FreePlacementPacksLargestFirst) {
  ClusterSpec cluster;
  cluster.nodes = 2;
  cluster.gpus_per_node = 4;
  Plan plan;
  plan.affinity = Affinity::kHigh;
  plan.prefill = {{2, 1}, 2, 1, 1};
  plan.decode = {{4, 1}, 1, 1, 1};
  absl::StatusOr<std::vector<InstancePlacement>> placed = PlaceInstances(plan, cluster);
  ASSERT_TRUE(placed.ok()) << placed.status();
  EXPECT_EQ((*placed)[2].node, 0);  // the 4-GPU decode instance first
  EXPECT_EQ((*placed)[0].node, 1);
  EXPECT_EQ((*placed)[1].node, 1);
  EXPECT_EQ((*placed)[1].first_gpu, 2);
  plan.decode.instances = 2;
  EXPECT_FALSE(PlaceInstances(plan, cluster).ok());
}

TEST(SearchColocatedTest, RanksEveryInstanceShape) {
  const model::ModelConfig model = *model::ModelPreset("opt-13b");
  ClusterSpec cluster;
  cluster.nodes = 1;
  cluster.gpus_per_node = 4;
  cluster.gpu = *GpuPreset("a100-80gb");
  RooflineModel times(model, cluster.gpu);
  absl::StatusOr<std::vector<Candidate>> colocated =
      SearchColocated(model, times, cluster, SmallSearch());
  ASSERT_TRUE(colocated.ok()) << colocated.status();
  ASSERT_FALSE(colocated->empty());
  EXPECT_EQ((*colocated)[0].kind, Candidate::Kind::kColocated);
  EXPECT_GT((*colocated)[0].goodput_per_gpu, 0);
  EXPECT_TRUE(absl::StrContains((*colocated)[0].Name(), "colocated"));
}

}  // namespace
}  // namespace troupe::serving::placement
