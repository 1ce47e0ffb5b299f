#include "serving/engine/cuda_rank_threads.h"

namespace troupe::serving::engine {

RankThreads::RankThreads(int ranks) : results_(ranks) {
  for (int r = 0; r < ranks; ++r) threads_.emplace_back([this, r] { Loop(r); });
}

RankThreads::~RankThreads() {
  {
    absl::MutexLock lock(&mutex_);
    stopping_ = true;
    changed_.SignalAll();
  }
  for (std::thread& thread : threads_) thread.join();
}

std::vector<absl::Status> RankThreads::Run(const std::function<absl::Status(int)>& job) {
  absl::MutexLock lock(&mutex_);
  job_ = &job;
  finished_ = 0;
  ++generation_;
  changed_.SignalAll();
  while (finished_ < ranks()) changed_.Wait(&mutex_);
  job_ = nullptr;
  return results_;
}

void RankThreads::Loop(int rank) {
  int64_t seen = 0;
  absl::MutexLock lock(&mutex_);
  while (true) {
    while (generation_ == seen && !stopping_) changed_.Wait(&mutex_);
    if (generation_ == seen) return;  // stopping, no job left
    seen = generation_;
    const std::function<absl::Status(int)>* job = job_;
    absl::Status result;
    {
      // The job runs unlocked, so that the ranks' parts run at once.
      mutex_.Unlock();
      result = (*job)(rank);
      mutex_.Lock();
    }
    results_[rank] = std::move(result);
    ++finished_;
    changed_.SignalAll();
  }
}

}  // namespace troupe::serving::engine
