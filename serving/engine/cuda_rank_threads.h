// RankThreads: one long-lived thread per tensor-parallel rank, each running its rank's part of
// a job while the caller waits for all of them.
//
// Why plain threads rather than GPU worker actors (actors/gpu_worker.h): a tensor-parallel step
// is bulk-synchronous (every rank runs the same step, and the step is over when the slowest rank
// is), the backend is made by CreateCudaBackend, which has no actor system, and a rank's part
// blocks its thread on purpose (the in-process collective's host barrier, the step's final
// synchronize). A thread per rank gives each rank's host launches their own core, so the ranks
// enqueue in parallel and the collectives synchronize them on the GPUs; the threads live as long
// as the backend, so a step costs two condition-variable hand-offs per rank, not a thread start.
//
//   RankThreads threads(/*ranks=*/2);
//   std::vector<absl::Status> done = threads.Run([&](int rank) { return Step(rank); });
#pragma once

#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace troupe::serving::engine {

class RankThreads {
 public:
  explicit RankThreads(int ranks);
  RankThreads(const RankThreads&) = delete;
  RankThreads& operator=(const RankThreads&) = delete;
  // The destructor lets a running job finish, then stops and joins the threads.
  ~RankThreads();

  int ranks() const { return static_cast<int>(threads_.size()); }

  // Run calls job(rank) on every rank's thread at once and returns, in rank order, what each
  // returned, once all have. One Run at a time (callers hold the backend, which is not shared).
  std::vector<absl::Status> Run(const std::function<absl::Status(int rank)>& job);

 private:
  void Loop(int rank);

  absl::Mutex mutex_;
  absl::CondVar changed_;
  const std::function<absl::Status(int)>* job_ = nullptr;  // the current job, while it runs
  int64_t generation_ = 0;  // counts jobs: a thread runs each generation once
  int finished_ = 0;
  bool stopping_ = false;
  std::vector<absl::Status> results_;
  std::vector<std::thread> threads_;  // last: started once the rest is in place
};

}  // namespace troupe::serving::engine
