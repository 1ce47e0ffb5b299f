// The parameter-server actor: ParameterServer (parameter_server.h) behind a CAF mailbox, with a
// watchdog so that no round, and no worker waiting on it, waits forever.
//
//   absl::StatusOr<caf::actor> server = SpawnParameterServer(system, options);
//   // a worker: fetch, compute, submit; the reply comes when the round closes
//   self->request(*server, caf::infinite, GetParameters{}).then([](ParameterSnapshot& s) {...});
//   self->request(*server, caf::infinite, GradientSubmission{"w0", s.step, gradient})
//       .then([](ParameterSnapshot& next) {...}, [](caf::error& rejected_or_failed) {...});
//
// Protocol (local only for now: the messages are CAF_ALLOW_UNSAFE_MESSAGE_TYPE, no inspect):
//   (GradientSubmission) -> ParameterSnapshot of the next step once the round closes; or, at
//       once, an InvalidArgument error with the rejection's message (see RejectionReason); or,
//       when the round fails, a DeadlineExceeded error naming the missing workers.
//   (GetParameters) -> ParameterSnapshot: the current step and parameters.
// A round closes when every known worker has a valid or a rejected submission. Its watchdog
// starts at the round's first submission (so an idle server does nothing); after
// options.round_timeout it closes the round with the valid gradients it has if there are at
// least the quorum of them, else fails it: the waiting submitters get the error, the
// parameters and step stay, and a fresh round for the same step opens. A round whose close
// fails (e.g. the aggregator's bound on n is not met) fails the same way.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "caf/actor.hpp"
#include "caf/actor_system.hpp"
#include "caf/allowed_unsafe_message_type.hpp"
#include "federation/robust/parameter_server.h"

namespace troupe::federation::robust {

// GetParameters asks the server for its step and parameters.
struct GetParameters {};

// ParameterSnapshot is the model at a step: the parameters a worker computes step's gradient at.
struct ParameterSnapshot {
  int64_t step = 0;
  std::vector<float> parameters;
};

// SpawnParameterServer checks the options (ParameterServer::Create) and starts the actor.
absl::StatusOr<caf::actor> SpawnParameterServer(caf::actor_system& system,
                                                const ParameterServerOptions& options);

}  // namespace troupe::federation::robust

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::federation::robust::GradientSubmission)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::federation::robust::GetParameters)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::federation::robust::ParameterSnapshot)
