#include "actors/torch_threads.h"

#include "actors/runtime.h"
#include "gtest/gtest.h"

namespace troupe::actors {
namespace {

TEST(TorchThreadsTest, SetsTheIntraOpPool) {
  ASSERT_TRUE(SetTorchThreads(3).ok());
  EXPECT_EQ(TorchThreads(), 3);
  ASSERT_TRUE(SetTorchThreads(1).ok());
  EXPECT_EQ(TorchThreads(), 1);
  EXPECT_EQ(SetTorchThreads(0).code(), absl::StatusCode::kInvalidArgument);
}

TEST(TorchThreadsTest, RuntimeSizesBothPoolsWithoutOversubscribing) {
  RuntimeOptions options;
  options.scheduler_threads = 2;
  options.compute_threads = 0;  // Derived from the core count.
  options.load_middleman = false;
  options.set_compute_threads = SetTorchThreads;
  absl::StatusOr<std::unique_ptr<Runtime>> runtime = Runtime::Create(options);
  ASSERT_TRUE(runtime.ok()) << runtime.status();
  EXPECT_EQ((*runtime)->threads().scheduler, 2);
  EXPECT_EQ(TorchThreads(), (*runtime)->threads().compute);
}

TEST(ResolveThreadCountsTest, SplitsTheCoresBetweenThePools) {
  EXPECT_EQ(ResolveThreadCounts(0, 0, 16).scheduler, 8);
  EXPECT_EQ(ResolveThreadCounts(0, 0, 16).compute, 8);
  EXPECT_EQ(ResolveThreadCounts(0, 0, 2).scheduler, 1);
  EXPECT_EQ(ResolveThreadCounts(0, 0, 2).compute, 1);
  EXPECT_EQ(ResolveThreadCounts(0, 0, 1).compute, 1);
  EXPECT_EQ(ResolveThreadCounts(3, 0, 16).compute, 13);
  EXPECT_EQ(ResolveThreadCounts(3, 5, 16).compute, 5);
  EXPECT_EQ(ResolveThreadCounts(0, 0, 0).scheduler, 1);  // Unknown core count.
}

}  // namespace
}  // namespace troupe::actors
