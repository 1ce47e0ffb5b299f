#include "serving/engine/cuda_parallel_plan.h"

#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "serving/model/config.h"

namespace troupe::serving::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

model::ModelConfig Model(int layers, int heads, int kv_heads, int ffn) {
  model::ModelConfig config = *model::ModelPreset("tiny-llama");
  config.num_layers = layers;
  config.num_heads = heads;
  config.num_kv_heads = kv_heads;
  config.ffn_size = ffn;
  return config;
}

TEST(SplitLayersTest, EarlierStagesTakeTheRemainder) {
  EXPECT_THAT(SplitLayers(4, 1), ElementsAre(Pair(0, 4)));
  EXPECT_THAT(SplitLayers(4, 2), ElementsAre(Pair(0, 2), Pair(2, 4)));
  EXPECT_THAT(SplitLayers(5, 3), ElementsAre(Pair(0, 2), Pair(2, 4), Pair(4, 5)));
  EXPECT_THAT(SplitLayers(3, 3), ElementsAre(Pair(0, 1), Pair(1, 2), Pair(2, 3)));
}

TEST(PlanCudaParallelismTest, ConsecutiveDevicesFromTheInstancesOwn) {
  const model::ModelConfig config = Model(24, 32, 8, 11008);
  absl::StatusOr<CudaParallelPlan> plan = PlanCudaParallelism(config, 2, 2, 4, 8);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->tensor_parallel, 2);
  ASSERT_EQ(plan->stages.size(), 2u);
  EXPECT_EQ(plan->stages[0].layer_begin, 0);
  EXPECT_EQ(plan->stages[0].layer_end, 12);
  EXPECT_THAT(plan->stages[0].devices, ElementsAre(4, 5));
  EXPECT_EQ(plan->stages[1].layer_begin, 12);
  EXPECT_EQ(plan->stages[1].layer_end, 24);
  EXPECT_THAT(plan->stages[1].devices, ElementsAre(6, 7));
}

TEST(PlanCudaParallelismTest, DevicesWrapAroundTheGpusPresent) {
  const model::ModelConfig config = Model(3, 8, 2, 1376);
  // tp = 2 on one GPU: both ranks on cuda:0.
  absl::StatusOr<CudaParallelPlan> one_gpu = PlanCudaParallelism(config, 1, 2, 0, 1);
  ASSERT_TRUE(one_gpu.ok()) << one_gpu.status();
  EXPECT_THAT(one_gpu->stages[0].devices, ElementsAre(0, 0));
  // Three stages of one rank from cuda:1 of 2 GPUs: 1, 0, 1.
  absl::StatusOr<CudaParallelPlan> wrapped = PlanCudaParallelism(config, 3, 1, 1, 2);
  ASSERT_TRUE(wrapped.ok()) << wrapped.status();
  ASSERT_EQ(wrapped->stages.size(), 3u);
  EXPECT_THAT(wrapped->stages[0].devices, ElementsAre(1));
  EXPECT_THAT(wrapped->stages[1].devices, ElementsAre(0));
  EXPECT_THAT(wrapped->stages[2].devices, ElementsAre(1));
  // The whole model on one device is the trivial plan.
  absl::StatusOr<CudaParallelPlan> whole = PlanCudaParallelism(config, 1, 1, 0, 1);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->stages[0].layer_end, 3);
  EXPECT_THAT(whole->stages[0].devices, ElementsAre(0));
}

TEST(PlanCudaParallelismTest, BadDegreesAndDevicesNameTheParameterAndTheFix) {
  const model::ModelConfig config = Model(2, 8, 2, 1376);
  const auto message = [&](int pp, int tp, int device, int count) {
    return std::string(PlanCudaParallelism(config, pp, tp, device, count).status().message());
  };
  EXPECT_THAT(message(3, 1, 0, 1), HasSubstr("pipeline_stages is 3 but tiny-llama has 2 layers"));
  EXPECT_THAT(message(0, 1, 0, 1), HasSubstr("use 1 to 2 stages"));
  EXPECT_THAT(message(1, 4, 0, 1), HasSubstr("tensor_parallel is 4"));
  EXPECT_THAT(message(1, 4, 0, 1), HasSubstr("2 KV heads"));
  EXPECT_THAT(message(1, 4, 0, 1), HasSubstr("use one of 1, 2"));
  EXPECT_THAT(message(1, 0, 0, 1), HasSubstr("tensor_parallel is 0"));
  EXPECT_THAT(message(1, 1, 2, 2), HasSubstr("device is cuda:2 but this process sees 2 GPU(s)"));
  EXPECT_THAT(message(1, 1, 2, 2), HasSubstr("use cuda:0 to cuda:1"));
  EXPECT_EQ(PlanCudaParallelism(config, 1, 1, 0, 0).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // The FFN size must divide too: 8 heads and 8 KV heads, but an FFN of 1020 = 4 * 255.
  EXPECT_TRUE(CheckTensorParallel(Model(2, 8, 8, 1024), 8).ok());
  EXPECT_THAT(std::string(CheckTensorParallel(Model(2, 8, 8, 1020), 8).message()),
              HasSubstr("FFN size 1020"));
}

}  // namespace
}  // namespace troupe::serving::engine
