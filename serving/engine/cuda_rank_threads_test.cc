#include "serving/engine/cuda_rank_threads.h"

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/barrier.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace troupe::serving::engine {
namespace {

TEST(RankThreadsTest, EveryRankRunsEachJobOnItsOwnThreadAtOnce) {
  RankThreads threads(3);
  EXPECT_EQ(threads.ranks(), 3);
  for (int job = 0; job < 50; ++job) {
    // A barrier of all three ranks passes only if their parts run at the same time.
    absl::Barrier* barrier = new absl::Barrier(3);
    absl::Mutex mutex;
    std::set<std::thread::id> ids;
    std::vector<absl::Status> results = threads.Run([&](int rank) {
      {
        absl::MutexLock lock(&mutex);
        ids.insert(std::this_thread::get_id());
      }
      if (barrier->Block()) delete barrier;
      if (rank == 1 && job % 7 == 0) return absl::InternalError(absl::StrCat("job ", job));
      return absl::OkStatus();
    });
    ASSERT_EQ(results.size(), 3u);
    EXPECT_TRUE(results[0].ok());
    EXPECT_EQ(results[1].ok(), job % 7 != 0) << results[1];
    EXPECT_TRUE(results[2].ok());
    EXPECT_EQ(ids.size(), 3u);
    EXPECT_EQ(ids.count(std::this_thread::get_id()), 0u) << "a rank ran on the caller's thread";
  }
}

TEST(RankThreadsTest, StopsWithoutAJob) {
  std::atomic<int> calls{0};
  {
    RankThreads threads(2);
    threads.Run([&](int) {
      ++calls;
      return absl::OkStatus();
    });
  }
  EXPECT_EQ(calls.load(), 2);
  RankThreads idle(4);  // destroyed at once
}

}  // namespace
}  // namespace troupe::serving::engine
