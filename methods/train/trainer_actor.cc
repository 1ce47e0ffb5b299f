#include "methods/train/trainer_actor.h"

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "actors/errors.h"
#include "actors/gpu_worker.h"
#include "caf/all.hpp"
#include "methods/train/trainer.h"

namespace troupe::methods::train {
namespace {

// RunJob builds and runs the job's trainer on the worker's thread.
absl::Status RunJob(const TrainingJob& job, caf::actor listener, TrainingResult& result) {
  if (!job.make) {
    return absl::InvalidArgumentError(
        absl::StrCat("training job \"", job.name, "\" has no trainer factory"));
  }
  absl::StatusOr<std::unique_ptr<Trainer>> trainer = job.make();
  if (!trainer.ok()) {
    return absl::Status(trainer.status().code(), absl::StrCat("training job \"", job.name,
                                                              "\": ", trainer.status().message()));
  }
  std::error_code error;
  if (job.resume && !job.checkpoint_path.empty() &&
      std::filesystem::exists(job.checkpoint_path, error)) {
    if (absl::Status s = (*trainer)->LoadCheckpoint(job.checkpoint_path); !s.ok()) return s;
  }
  (*trainer)->on_progress = [listener, name = job.name](const Progress& progress) {
    if (listener) caf::anon_send(listener, TrainingProgress{name, progress});
  };
  absl::Status status = (*trainer)->Train(job.max_steps);
  if (status.ok() && !job.checkpoint_path.empty()) {
    status = (*trainer)->SaveCheckpoint(job.checkpoint_path);
  }
  result.job = job.name;
  result.steps = (*trainer)->step();
  result.done = (*trainer)->Done();
  result.history = (*trainer)->history();
  return status;
}

caf::behavior TrainerActor(caf::event_based_actor* self, caf::actor worker) {
  return {
      [self, worker](TrainingJob& job) -> caf::result<TrainingResult> {
        // The sender first: making the promise moves it out of the current message.
        caf::actor listener = caf::actor_cast<caf::actor>(self->current_sender());
        caf::response_promise promise = self->make_response_promise();
        auto result = std::make_shared<TrainingResult>();
        actors::WorkItem item{
            absl::StrCat("train ", job.name),
            [job = std::move(job), listener, result]() { return RunJob(job, listener, *result); }};
        self->request(worker, caf::infinite, std::move(item))
            .then([promise, result]() mutable { promise.deliver(std::move(*result)); },
                  [promise](caf::error& error) mutable { promise.deliver(std::move(error)); });
        return promise;
      },
  };
}

}  // namespace

caf::actor SpawnTrainerActor(caf::actor_system& system, caf::actor worker) {
  return system.spawn(TrainerActor, std::move(worker));
}

}  // namespace troupe::methods::train
