// A synchronous worker for the parameter server (parameter_server_actor.h): fetches the
// parameters, computes a gradient with a caller-given source, lets an optional Byzantine
// behaviour (federation/attacks) forge it, submits it, and continues with the parameters of
// the next step from the reply.
//
//   WorkerOptions options;
//   options.id = "w4";
//   options.gradient = [](int64_t step, const std::vector<float>& w) { return QuadraticGrad(w); };
//   options.attack = *attacks::MakeAttack("sign_flip", {});  // omit for an honest worker
//   caf::actor worker = SpawnWorker(system, server, std::move(options));
//   absl::StatusOr<WorkerReport> report =
//       actors::Ask<WorkerReport>(system, worker, absl::Minutes(1), RunWorker{100});
//
// Omniscient attacks (alie, ipm) read the honest workers' gradients of the round. The server
// never forwards gradients, so in this design they reach the attacker only through
// `honest_gradients`, a callback the simulation harness provides (computing the honest
// workers' gradients at the same parameters from their sources). A real deployment has no such
// channel; the callback models the worst case of colluding with whoever sees the honest traffic.
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
#include "federation/attacks/attack.h"

namespace troupe::federation::robust {

// GradientSource returns a worker's gradient at `parameters` for `step`. The LibTorch model's
// source is a later piece; tests use synthetic gradients.
using GradientSource =
    std::function<absl::StatusOr<std::vector<float>>(int64_t step, const std::vector<float>&)>;

// HonestGradients returns the honest workers' gradients of the step (one vector each), for an
// omniscient attacker; see the file comment.
using HonestGradients = std::function<absl::StatusOr<std::vector<std::vector<float>>>(
    int64_t step, const std::vector<float>&)>;

// WorkerOptions configures one worker.
struct WorkerOptions {
  std::string id;
  GradientSource gradient;
  // Null: an honest worker. Owned by this worker (gaussian and drop keep their generator).
  std::shared_ptr<attacks::Attack> attack;
  // Needed (only) when the attack is omniscient.
  HonestGradients honest_gradients;
};

// RunWorker asks the worker to make `submissions` submissions (one per step it takes part in).
struct RunWorker {
  int64_t submissions = 0;
};

// WorkerReport is the reply to RunWorker.
struct WorkerReport {
  std::string id;
  int64_t submitted = 0;
  int64_t accepted = 0;  // submissions whose round closed with the parameters of a next step
  std::vector<std::string> errors;  // rejections, failed rounds, gradient-source errors
  int64_t last_step = 0;            // the server's step at the last reply
};

// SpawnWorker starts a worker that submits to `server` when asked (RunWorker).
caf::actor SpawnWorker(caf::actor_system& system, caf::actor server, WorkerOptions options);

}  // namespace troupe::federation::robust

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::federation::robust::RunWorker)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::federation::robust::WorkerReport)
