#include "serving/placement/simulator.h"

#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "serving/placement/latency_model.h"
#include "serving/workload/slo.h"
#include "serving/workload/workload.h"

namespace troupe::serving::placement {
namespace {

using workload::Request;
using workload::RequestTiming;

// Step times that are easy to compute by hand:
//   prefill = base + per_token · t;  decode = decode_base + per_sequence · batch.
class LinearModel : public StepTimeModel {
 public:
  double base = 0.1;
  double per_token = 0.001;
  double decode_base = 0.02;
  double per_sequence = 0.0;
  double per_context_token = 0.0;

  double PrefillSeconds(int batch, int64_t tokens, int64_t tokens_squared) const override {
    return base + per_token * tokens;
  }
  double DecodeSeconds(int batch, int64_t context_tokens) const override {
    return decode_base + per_sequence * batch + per_context_token * context_tokens;
  }
};

SimulatedCluster OnePair(const StepTimeModel* prefill, const StepTimeModel* decode) {
  SimulatedCluster cluster;
  cluster.mode = SimulationMode::kDisaggregated;
  cluster.prefill = {1, {1, 1}, prefill, 1000};
  cluster.decode = {1, {1, 1}, decode, 1000};
  return cluster;
}

TEST(SimulatorTest, OneRequestAloneTakesThePrefillAndTheDecodeStep) {
  LinearModel model;
  const SimulatedCluster cluster = OnePair(&model, &model);
  absl::StatusOr<std::vector<RequestTiming>> timings = Simulate(cluster, {Request{1.0, 100, 11}});
  ASSERT_TRUE(timings.ok()) << timings.status();
  ASSERT_EQ(timings->size(), 1u);
  EXPECT_DOUBLE_EQ((*timings)[0].ttft_s, 0.1 + 0.001 * 100);
  EXPECT_NEAR((*timings)[0].tpot_s, 0.02, 1e-12);
  EXPECT_FALSE((*timings)[0].failed);
}

TEST(SimulatorTest, TheKvTransferDelaysTheSecondToken) {
  LinearModel model;
  SimulatedCluster cluster = OnePair(&model, &model);
  cluster.kv_bytes_per_token = 1000;
  cluster.kv_transfer_bytes_per_s = 1e6;  // 100 tokens: 0.1 s
  absl::StatusOr<Simulator> simulator = Simulator::Create(cluster);
  ASSERT_TRUE(simulator.ok());
  absl::StatusOr<const std::vector<RequestTiming>*> timings =
      simulator->Run({Request{0.0, 100, 11}});
  ASSERT_TRUE(timings.ok());
  EXPECT_DOUBLE_EQ((**timings)[0].ttft_s, 0.2);  // the first token comes from the prefill
  EXPECT_NEAR((**timings)[0].tpot_s, (0.1 + 10 * 0.02) / 10, 1e-12);
  EXPECT_NEAR(simulator->stats().transfer_s, 0.1, 1e-12);
}

TEST(SimulatorTest, OneOutputTokenEndsAtThePrefill) {
  LinearModel model;
  absl::StatusOr<std::vector<RequestTiming>> timings =
      Simulate(OnePair(&model, &model), {Request{0.0, 50, 1}});
  ASSERT_TRUE(timings.ok());
  EXPECT_DOUBLE_EQ((*timings)[0].ttft_s, 0.15);
  EXPECT_EQ((*timings)[0].tpot_s, 0);
}

TEST(SimulatorTest, SimultaneousRequestsShareAPrefillBatchAndDecodeSteps) {
  LinearModel model;
  model.per_sequence = 0.01;
  absl::StatusOr<Simulator> simulator = Simulator::Create(OnePair(&model, &model));
  ASSERT_TRUE(simulator.ok());
  absl::StatusOr<const std::vector<RequestTiming>*> timings =
      simulator->Run({Request{0.5, 100, 5}, Request{0.5, 200, 5}});
  ASSERT_TRUE(timings.ok());
  // One batch of 300 tokens.
  EXPECT_DOUBLE_EQ((**timings)[0].ttft_s, 0.1 + 0.3);
  EXPECT_DOUBLE_EQ((**timings)[1].ttft_s, 0.1 + 0.3);
  // Decode steps of batch 2.
  EXPECT_NEAR((**timings)[0].tpot_s, 0.04, 1e-12);
  EXPECT_NEAR((**timings)[1].tpot_s, 0.04, 1e-12);
  EXPECT_EQ(simulator->stats().prefill_batches, 1);
  EXPECT_EQ(simulator->stats().decode_steps, 4);
}

TEST(SimulatorTest, FcfsQueueingCountsInTheTtft) {
  LinearModel model;
  SimulatorOptions options;
  options.prefill_max_batch_tokens = 100;  // one 100-token prompt per batch
  absl::StatusOr<std::vector<RequestTiming>> timings =
      Simulate(OnePair(&model, &model), {Request{0.0, 100, 2}, Request{0.0, 100, 2}}, options);
  ASSERT_TRUE(timings.ok());
  EXPECT_DOUBLE_EQ((*timings)[0].ttft_s, 0.2);
  EXPECT_DOUBLE_EQ((*timings)[1].ttft_s, 0.4);  // waited for the first batch
}

TEST(SimulatorTest, NoSkippingInTheFcfsQueue) {
  LinearModel model;
  SimulatorOptions options;
  options.prefill_max_batch_tokens = 150;
  // The second prompt does not fit the first batch; the third would, but may not jump the queue.
  absl::StatusOr<Simulator> simulator = Simulator::Create(OnePair(&model, &model), options);
  ASSERT_TRUE(simulator.ok());
  absl::StatusOr<const std::vector<RequestTiming>*> timings =
      simulator->Run({Request{0.0, 100, 2}, Request{0.0, 100, 2}, Request{0.0, 10, 2}});
  ASSERT_TRUE(timings.ok());
  EXPECT_DOUBLE_EQ((**timings)[0].ttft_s, 0.2);
  EXPECT_DOUBLE_EQ((**timings)[1].ttft_s, 0.2 + 0.21);
  EXPECT_DOUBLE_EQ((**timings)[2].ttft_s, 0.2 + 0.21);
  EXPECT_EQ(simulator->stats().prefill_batches, 2);
}

TEST(SimulatorTest, DecodeWaitsForFreeBlocks) {
  LinearModel model;
  SimulatedCluster cluster = OnePair(&model, &model);
  // The first request's 17-token prompt takes both blocks of the decode instance, so the
  // second request's pull waits until the first finishes.
  cluster.decode.kv_blocks = 2;
  absl::StatusOr<std::vector<RequestTiming>> timings =
      Simulate(cluster, {Request{0.0, 17, 5}, Request{0.0, 16, 5}});
  ASSERT_TRUE(timings.ok());
  const double prefill = 0.1 + 0.001 * 33;
  EXPECT_DOUBLE_EQ((*timings)[0].ttft_s, prefill);
  EXPECT_DOUBLE_EQ((*timings)[1].ttft_s, prefill);
  EXPECT_NEAR((*timings)[0].tpot_s, 0.02, 1e-12);
  // Its first decode step starts only when the first request's four steps are done.
  EXPECT_NEAR((*timings)[1].tpot_s, (4 * 0.02 + 4 * 0.02) / 4, 1e-12);
}

TEST(SimulatorTest, PrefillWaitsWhileItsCacheHoldsUnpulledPrompts) {
  LinearModel model;
  SimulatedCluster cluster = OnePair(&model, &model);
  cluster.prefill.kv_blocks = 1;  // one 16-token prompt at a time, until it is pulled
  cluster.kv_bytes_per_token = 1000;
  cluster.kv_transfer_bytes_per_s = 16000;  // a 16-token pull: 1 s
  absl::StatusOr<std::vector<RequestTiming>> timings =
      Simulate(cluster, {Request{0.0, 16, 2}, Request{0.0, 16, 2}});
  ASSERT_TRUE(timings.ok());
  const double prefill = 0.1 + 0.016;
  EXPECT_DOUBLE_EQ((*timings)[0].ttft_s, prefill);
  // The second prefill starts once the first prompt's KV has left: prefill + 1 s.
  EXPECT_NEAR((*timings)[1].ttft_s, prefill + 1.0 + prefill, 1e-12);
}

TEST(SimulatorTest, PreemptionSwapsTheNewestAndBringsItBack) {
  LinearModel model;
  SimulatedCluster cluster;
  cluster.mode = SimulationMode::kDecodeOnly;
  cluster.decode = {1, {1, 1}, &model, 3};
  // Two requests of 15-token prompts each take a block; growing past 16 tokens each needs a
  // second block; three blocks cannot hold both: the newer is swapped out until the older ends.
  absl::StatusOr<Simulator> simulator = Simulator::Create(cluster);
  ASSERT_TRUE(simulator.ok());
  absl::StatusOr<const std::vector<RequestTiming>*> timings =
      simulator->Run({Request{0.0, 15, 20}, Request{0.0, 15, 20}});
  ASSERT_TRUE(timings.ok());
  EXPECT_GT(simulator->stats().preemptions, 0);
  EXPECT_FALSE((**timings)[0].failed);
  EXPECT_FALSE((**timings)[1].failed);
  EXPECT_GT((**timings)[1].tpot_s, (**timings)[0].tpot_s);
}

TEST(SimulatorTest, PipelineStagesOverlapBatches) {
  LinearModel model;
  model.base = 0.0;
  model.per_token = 0.001;  // a 1000-token prompt: 1 s through all stages
  SimulatorOptions options;
  options.pipeline_stage_overhead_s = 0;
  options.prefill_max_batch_tokens = 1000;
  SimulatedCluster cluster;
  cluster.mode = SimulationMode::kPrefillOnly;
  cluster.prefill = {1, {1, 4}, &model, 10000};
  std::vector<Request> requests(8, Request{0.0, 1000, 1});
  absl::StatusOr<Simulator> simulator = Simulator::Create(cluster, options);
  ASSERT_TRUE(simulator.ok());
  absl::StatusOr<const std::vector<RequestTiming>*> timings = simulator->Run(requests);
  ASSERT_TRUE(timings.ok());
  // Each batch still takes 1 s end to end, but a new one starts every 0.25 s.
  for (int i = 0; i < 8; ++i) EXPECT_NEAR((**timings)[i].ttft_s, 1.0 + 0.25 * i, 1e-9) << i;

  // The same without pipelining: one batch a second.
  cluster.prefill.config = {1, 1};
  simulator = Simulator::Create(cluster, options);
  ASSERT_TRUE(simulator.ok());
  timings = simulator->Run(requests);
  ASSERT_TRUE(timings.ok());
  EXPECT_NEAR((**timings)[7].ttft_s, 8.0, 1e-9);
}

TEST(SimulatorTest, PipelinedDecodeStepsAreMicroBatches) {
  LinearModel model;
  model.per_sequence = 0.01;
  SimulatorOptions options;
  options.pipeline_stage_overhead_s = 0.001;
  SimulatedCluster cluster;
  cluster.mode = SimulationMode::kDecodeOnly;
  cluster.decode = {1, {1, 2}, &model, 1000};
  absl::StatusOr<std::vector<RequestTiming>> timings =
      Simulate(cluster, {Request{0.0, 10, 3}, Request{0.0, 10, 3}}, options);
  ASSERT_TRUE(timings.ok());
  // Two micro-batches of one: T(1) + 2 stages' overhead per token.
  EXPECT_NEAR((*timings)[0].tpot_s, 0.02 + 0.01 + 2 * 0.001, 1e-12);
  EXPECT_EQ((*timings)[0].ttft_s, 0);
}

TEST(SimulatorTest, ShortestQueueSpreadsOverPrefillInstances) {
  LinearModel model;
  SimulatedCluster cluster = OnePair(&model, &model);
  cluster.prefill.instances = 2;
  SimulatorOptions options;
  options.prefill_max_batch_tokens = 100;
  absl::StatusOr<std::vector<RequestTiming>> timings =
      Simulate(cluster, {Request{0.0, 100, 2}, Request{0.0, 100, 2}}, options);
  ASSERT_TRUE(timings.ok());
  EXPECT_DOUBLE_EQ((*timings)[0].ttft_s, 0.2);
  EXPECT_DOUBLE_EQ((*timings)[1].ttft_s, 0.2);  // the other instance, no queueing
}

TEST(SimulatorTest, ColocatedStepsRunPrefillAndDecodeInOnePass) {
  LinearModel model;
  model.per_context_token = 1e-4;
  SimulatedCluster cluster;
  cluster.mode = SimulationMode::kColocated;
  cluster.prefill = {1, {1, 1}, &model, 1000};
  // The second request arrives while the first decodes: its prefill rides along a decode step,
  // one pass of 100 + 1 tokens (the prefill model) plus the running sequence's attention over
  // its 101-token context (the decode model's context term, 0.0101 s).
  absl::StatusOr<std::vector<RequestTiming>> timings =
      Simulate(cluster, {Request{0.0, 100, 4}, Request{0.21, 100, 2}});
  ASSERT_TRUE(timings.ok());
  EXPECT_DOUBLE_EQ((*timings)[0].ttft_s, 0.2);
  // Steps of the first: [0.2, 0.2301] (decode at context 101), [0.2301, 0.2301 + 0.201 +
  // 0.0102] (mixed, context 102), then a decode step with both (contexts 103 and 101).
  const double mixed_end = 0.2301 + 0.201 + 0.0102;
  EXPECT_NEAR((*timings)[1].ttft_s, mixed_end - 0.21, 1e-12);
  const double last = mixed_end + 0.02 + 1e-4 * (103 + 101);
  EXPECT_NEAR((*timings)[0].tpot_s, (last - 0.2) / 3, 1e-12);
}

TEST(SimulatorTest, ChunkedPrefillSplitsLongPromptsOverSteps) {
  LinearModel model;
  SimulatorOptions options;
  options.chunked_prefill = true;
  options.colocated_max_batch_tokens = 64;
  SimulatedCluster cluster;
  cluster.mode = SimulationMode::kColocated;
  cluster.prefill = {1, {1, 1}, &model, 1000};
  absl::StatusOr<Simulator> simulator = Simulator::Create(cluster, options);
  ASSERT_TRUE(simulator.ok());
  absl::StatusOr<const std::vector<RequestTiming>*> timings =
      simulator->Run({Request{0.0, 128, 2}});
  ASSERT_TRUE(timings.ok());
  EXPECT_EQ(simulator->stats().prefill_batches, 2);  // two chunks of 64
  EXPECT_NEAR((**timings)[0].ttft_s, 2 * (0.1 + 0.064), 1e-12);
}

TEST(SimulatorTest, RequestsTooLargeForTheCacheFail) {
  LinearModel model;
  SimulatedCluster cluster = OnePair(&model, &model);
  cluster.decode.kv_blocks = 4;  // 64 tokens
  absl::StatusOr<Simulator> simulator = Simulator::Create(cluster);
  ASSERT_TRUE(simulator.ok());
  absl::StatusOr<const std::vector<RequestTiming>*> timings =
      simulator->Run({Request{0.0, 60, 10}, Request{0.0, 10, 10}});
  ASSERT_TRUE(timings.ok());
  EXPECT_TRUE((**timings)[0].failed);
  EXPECT_FALSE((**timings)[1].failed);
  EXPECT_EQ(simulator->stats().failed, 1);
}

TEST(SimulatorTest, RunsAreDeterministicAndReuseTheSimulator) {
  absl::StatusOr<std::vector<Request>> requests = workload::Generate(
      {.dataset = workload::Dataset::kChatbot, .rate_per_s = 1.0, .num_requests = 300, .seed = 7});
  ASSERT_TRUE(requests.ok()) << requests.status();
  LinearModel model;
  model.per_token = 1e-4;
  model.per_sequence = 1e-4;
  SimulatedCluster cluster = OnePair(&model, &model);
  cluster.decode.instances = 2;
  cluster.kv_bytes_per_token = 1e5;
  cluster.kv_transfer_bytes_per_s = 1e9;
  absl::StatusOr<Simulator> simulator = Simulator::Create(cluster);
  ASSERT_TRUE(simulator.ok());
  std::vector<RequestTiming> first = **simulator->Run(*requests, 1 / 4.0);
  const SimulationStats stats = simulator->stats();
  (void)**simulator->Run(*requests, 1 / 40.0);  // another rate in between
  std::vector<RequestTiming> again = **simulator->Run(*requests, 1 / 4.0);
  ASSERT_EQ(first.size(), again.size());
  for (size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(first[i].ttft_s, again[i].ttft_s);
    EXPECT_EQ(first[i].tpot_s, again[i].tpot_s);
  }
  EXPECT_EQ(stats.decode_steps, simulator->stats().decode_steps);
  // A heavier load cannot be served better.
  const workload::Slo slo{0.5, 0.05};
  EXPECT_GE(workload::Attainment(first, slo),
            workload::Attainment(**simulator->Run(*requests, 1 / 40.0), slo));
}

TEST(SimulatorTest, BadInputsAreClearErrors) {
  LinearModel model;
  SimulatedCluster cluster = OnePair(&model, &model);
  cluster.decode.model = nullptr;
  absl::StatusOr<Simulator> no_model = Simulator::Create(cluster);
  ASSERT_FALSE(no_model.ok());
  EXPECT_TRUE(absl::StrContains(no_model.status().message(), "decode.model"));

  cluster = OnePair(&model, &model);
  cluster.prefill.kv_blocks = 0;
  EXPECT_TRUE(
      absl::StrContains(Simulator::Create(cluster).status().message(), "prefill.kv_blocks"));

  SimulatorOptions options;
  options.decode_pull_share = 0;
  EXPECT_TRUE(absl::StrContains(
      Simulator::Create(OnePair(&model, &model), options).status().message(), "decode_pull_share"));

  absl::StatusOr<Simulator> simulator = Simulator::Create(OnePair(&model, &model));
  ASSERT_TRUE(simulator.ok());
  absl::StatusOr<const std::vector<RequestTiming>*> unsorted =
      simulator->Run({Request{1.0, 10, 2}, Request{0.5, 10, 2}});
  ASSERT_FALSE(unsorted.ok());
  EXPECT_TRUE(absl::StrContains(unsorted.status().message(), "requests[1]"));
  EXPECT_FALSE(simulator->Run({Request{0.0, 0, 2}}).ok());
  EXPECT_FALSE(simulator->Run({Request{0.0, 10, 2}}, 0.0).ok());
}

}  // namespace
}  // namespace troupe::serving::placement
