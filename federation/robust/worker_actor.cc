#include "federation/robust/worker_actor.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "actors/errors.h"
#include "caf/all.hpp"
#include "federation/aggregators/aggregators.h"
#include "federation/robust/parameter_server_actor.h"

namespace troupe::federation::robust {
namespace {

// Forge applies the worker's attack to its own gradient.
absl::StatusOr<std::vector<float>> Forge(const WorkerOptions& options, int64_t step,
                                         const std::vector<float>& parameters,
                                         std::vector<float> own) {
  if (!options.attack) return own;
  const Eigen::Index d = static_cast<Eigen::Index>(own.size());
  Eigen::Map<const Eigen::MatrixXf> own_matrix(own.data(), d, 1);
  Eigen::MatrixXf honest(d, 0);
  if (attacks::IsOmniscient(options.attack->kind())) {
    if (!options.honest_gradients) {
      return absl::FailedPreconditionError(absl::StrCat(
          "worker \"", options.id, "\": the attack \"", attacks::AttackName(options.attack->kind()),
          "\" reads the honest gradients; set WorkerOptions::honest_gradients"));
    }
    absl::StatusOr<std::vector<std::vector<float>>> gradients =
        options.honest_gradients(step, parameters);
    if (!gradients.ok()) return gradients.status();
    absl::StatusOr<Eigen::MatrixXf> stacked = aggregators::StackWorkerGradients(*gradients);
    if (!stacked.ok()) return stacked.status();
    honest = *std::move(stacked);
  }
  absl::StatusOr<Eigen::MatrixXf> forged = options.attack->Forge(own_matrix, honest);
  if (!forged.ok()) return forged.status();
  return std::vector<float>(forged->data(), forged->data() + forged->rows());
}

struct WorkerState {
  WorkerOptions options;
  caf::actor server;
  // The run in progress.
  int64_t remaining = 0;
  WorkerReport report;
  caf::response_promise promise;
};

void Fetch(caf::event_based_actor* self, std::shared_ptr<WorkerState> state);

void Finish(std::shared_ptr<WorkerState> state) { state->promise.deliver(state->report); }

// Step computes, forges and submits the gradient at `snapshot`, then goes on with the reply.
void Step(caf::event_based_actor* self, std::shared_ptr<WorkerState> state,
          ParameterSnapshot snapshot) {
  state->report.last_step = snapshot.step;
  if (state->remaining <= 0) return Finish(state);
  --state->remaining;
  absl::StatusOr<std::vector<float>> gradient =
      state->options.gradient(snapshot.step, snapshot.parameters);
  if (gradient.ok()) {
    gradient = Forge(state->options, snapshot.step, snapshot.parameters, *std::move(gradient));
  }
  if (!gradient.ok()) {
    state->report.errors.push_back(std::string(gradient.status().message()));
    return Fetch(self, state);
  }
  ++state->report.submitted;
  self->request(state->server, caf::infinite,
                GradientSubmission{state->options.id, snapshot.step, *std::move(gradient)})
      .then(
          [self, state](ParameterSnapshot& next) {
            ++state->report.accepted;
            Step(self, state, std::move(next));
          },
          [self, state](caf::error& error) {
            state->report.errors.push_back(actors::RenderError(error));
            Fetch(self, state);
          });
}

void Fetch(caf::event_based_actor* self, std::shared_ptr<WorkerState> state) {
  if (state->remaining <= 0) return Finish(state);
  self->request(state->server, caf::infinite, GetParameters{})
      .then([self, state](ParameterSnapshot& snapshot) { Step(self, state, std::move(snapshot)); },
            [state](caf::error& error) {
              state->report.errors.push_back(actors::RenderError(error));
              Finish(state);
            });
}

caf::behavior WorkerActor(caf::event_based_actor* self, std::shared_ptr<WorkerState> state) {
  return {
      [self, state](RunWorker run) -> caf::result<WorkerReport> {
        state->remaining = run.submissions;
        state->report = WorkerReport{state->options.id, 0, 0, {}, 0};
        state->promise = self->make_response_promise();
        Fetch(self, state);
        return state->promise;
      },
  };
}

}  // namespace

caf::actor SpawnWorker(caf::actor_system& system, caf::actor server, WorkerOptions options) {
  auto state = std::make_shared<WorkerState>();
  state->options = std::move(options);
  state->server = std::move(server);
  return system.spawn(WorkerActor, state);
}

}  // namespace troupe::federation::robust
