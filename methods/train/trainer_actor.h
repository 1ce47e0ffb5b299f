// The trainer actor: runs training jobs on a worker (actors/gpu_worker.h) bound to the CPU (or
// a GPU where LibTorch has CUDA), so that several jobs share a node, each on a worker thread of
// its own and none on CAF's scheduler threads. The requester gets TrainingProgress messages as
// the job runs and a TrainingResult as the reply.
//
//   caf::actor worker = *actors::SpawnGpuWorker(system, {.name = "train0", .device = -1});
//   caf::actor trainer = SpawnTrainerActor(system, worker);
//   self->request(trainer, caf::infinite, TrainingJob{"fmnist", [&] {
//     return Trainer::Create(model, train, &test, options);  // runs on the worker's thread
//   }}).receive([](const TrainingResult& result) { ... }, [](caf::error& e) { ... });
//
// Protocol (local only: a job holds code):
//   (TrainingJob) -> TrainingResult, or the job's error (its status as a caf::error);
//                    TrainingProgress messages go to the requester while it runs (none when
//                    the job was sent anonymously).
// Jobs sent to one trainer actor run one after another, in order, on its worker.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "caf/actor.hpp"
#include "caf/actor_system.hpp"
#include "caf/allowed_unsafe_message_type.hpp"
#include "methods/train/progress.h"

namespace troupe::methods::train {

class Trainer;

// TrainingJob is a training run: `make` builds the trainer (on the worker's thread), which then
// trains for at most max_steps steps (< 0: to the end). A trainer with a checkpoint path
// resumes from it when `resume` is set and the file exists.
struct TrainingJob {
  std::string name;
  std::function<absl::StatusOr<std::unique_ptr<Trainer>>()> make;
  int64_t max_steps = -1;
  bool resume = false;
  std::string checkpoint_path;
};

// TrainingProgress is sent to the job's requester at every step.
struct TrainingProgress {
  std::string job;
  Progress progress;
};

// TrainingResult is the reply to a finished job.
struct TrainingResult {
  std::string job;
  int64_t steps = 0;  // steps done, over all runs of the job
  bool done = false;  // all epochs trained
  std::vector<EpochLog> history;
};

// SpawnTrainerActor starts a trainer actor that runs its jobs on `worker`.
caf::actor SpawnTrainerActor(caf::actor_system& system, caf::actor worker);

}  // namespace troupe::methods::train

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::methods::train::TrainingJob)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::methods::train::TrainingProgress)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::methods::train::TrainingResult)
