#include "gpu/vector_add.h"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "actors/ask.h"
#include "actors/gpu_worker.h"
#include "actors/runtime.h"
#include "gtest/gtest.h"

namespace troupe::gpu {
namespace {

// RelativeError is ||out - ref|| / ||ref||, in double; NaN anywhere makes it NaN.
double RelativeError(const std::vector<float>& out, const std::vector<double>& ref) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    diff += (out[i] - ref[i]) * (out[i] - ref[i]);
    norm += ref[i] * ref[i];
  }
  return std::sqrt(diff) / std::sqrt(norm);
}

class VectorAddTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (CudaDeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device in this process";
  }
};

TEST_F(VectorAddTest, MatchesTheCpuReferenceOnOddSizes) {
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int n : {1, 7, 255, 256, 257, 100003, 1 << 22}) {
    std::vector<float> a(n), b(n);
    for (int i = 0; i < n; ++i) a[i] = normal(rng), b[i] = normal(rng);
    std::vector<double> ref(n);
    for (int i = 0; i < n; ++i) ref[i] = double(a[i]) + double(b[i]);
    // Poison the output: every element must be written.
    std::vector<float> out(n, std::numeric_limits<float>::quiet_NaN());
    ASSERT_TRUE(AddVectors(a.data(), b.data(), out.data(), n, 0).ok()) << n;
    const double error = RelativeError(out, ref);
    EXPECT_LT(error, 1e-5) << "n = " << n;  // NaN fails this too.
  }
}

TEST_F(VectorAddTest, BadArgumentsAreClearErrors) {
  float x = 1;
  absl::Status negative = AddVectors(&x, &x, &x, -1, 0);
  EXPECT_EQ(negative.code(), absl::StatusCode::kInvalidArgument);
  absl::Status missing = AddVectors(&x, &x, &x, 1, 4096);
  EXPECT_EQ(missing.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(missing.message().find("cuda:4096 does not exist"), std::string::npos);
}

TEST_F(VectorAddTest, RunsInsideAGpuWorkerActor) {
  actors::RuntimeOptions options;
  options.load_middleman = false;
  options.scheduler_threads = 2;
  std::unique_ptr<actors::Runtime> runtime = *actors::Runtime::Create(options);
  absl::StatusOr<caf::actor> worker =
      actors::SpawnGpuWorker(runtime->system(), {"gpu0", 0, BindCudaDevice});
  ASSERT_TRUE(worker.ok()) << worker.status();
  runtime->Own(*worker);
  std::vector<float> a(1000, 1.5f), b(1000, 2.25f), out(1000, 0);
  absl::Status status = actors::AskDone(
      runtime->system(), *worker, absl::Seconds(60), actors::WorkItem{"add", [&] {
        return AddVectors(a.data(), b.data(), out.data(), 1000, 0);
      }});
  ASSERT_TRUE(status.ok()) << status;
  for (float v : out) ASSERT_EQ(v, 3.75f);
}

}  // namespace
}  // namespace troupe::gpu
