#include "federation/robust/parameter_server_actor.h"

#include <chrono>
#include <map>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "actors/errors.h"
#include "caf/all.hpp"
#include "spdlog/spdlog.h"

namespace troupe::federation::robust {
namespace {

// RoundDeadline is the watchdog's timer message for the round numbered `round`.
struct RoundDeadline {
  int64_t round = 0;
};

}  // namespace
}  // namespace troupe::federation::robust

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::federation::robust::RoundDeadline)

namespace troupe::federation::robust {
namespace {

struct ServerState {
  explicit ServerState(ParameterServer s) : server(std::move(s)) {}

  ParameterServer server;
  // Rounds opened so far (a failed round reopens the same step under a new number), so a
  // timer of an earlier round is recognised and ignored.
  int64_t round = 0;
  bool watchdog_armed = false;
  // The valid submitters of the open round, waiting for it to close.
  std::map<std::string, caf::response_promise> waiting;
};

ParameterSnapshot Snapshot(const ParameterServer& server) {
  return ParameterSnapshot{server.step(), server.parameters()};
}

void OpenNextRound(ServerState& state) {
  ++state.round;
  state.watchdog_armed = false;
  state.waiting.clear();
}

void CloseRound(ServerState& state) {
  absl::StatusOr<RoundResult> result = state.server.Close();
  if (!result.ok()) {
    spdlog::warn("parameter server: the round failed: {}", std::string(result.status().message()));
    caf::error error = actors::ToCafError(result.status());
    for (auto& [worker, promise] : state.waiting) promise.deliver(error);
    state.server.FailRound();
  } else {
    ParameterSnapshot next = Snapshot(state.server);
    for (auto& [worker, promise] : state.waiting) promise.deliver(next);
  }
  OpenNextRound(state);
}

void OnDeadline(ServerState& state) {
  const ParameterServerRound& round = state.server.round();
  const int quorum = state.server.quorum();
  if (round.NumValid() >= quorum) {
    spdlog::warn(
        "parameter server: step {} timed out; closing with {} valid gradients "
        "(quorum {}); silent: {}",
        round.step(), round.NumValid(), quorum, absl::StrJoin(round.Silent(), ", "));
    CloseRound(state);
    return;
  }
  std::string message = absl::StrCat(
      "step ", round.step(), " failed: ", round.NumValid(), " valid gradients within ",
      absl::FormatDuration(state.server.options().round_timeout), ", below the quorum ", quorum,
      "; missing workers: ", absl::StrJoin(round.Silent(), ", "));
  std::vector<std::string> rejected = round.RejectedWorkers();
  if (!rejected.empty()) absl::StrAppend(&message, "; rejected: ", absl::StrJoin(rejected, ", "));
  absl::StrAppend(&message,
                  ". Check that these workers run and reach the server, or lower the quorum");
  spdlog::warn("parameter server: {}", message);
  caf::error error = actors::MakeCafError(absl::StatusCode::kDeadlineExceeded, message);
  for (auto& [worker, promise] : state.waiting) promise.deliver(error);
  state.server.FailRound();
  OpenNextRound(state);
}

caf::behavior ParameterServerActor(caf::event_based_actor* self,
                                   std::shared_ptr<ServerState> state) {
  return {
      [self, state](GradientSubmission& submission) -> caf::result<ParameterSnapshot> {
        if (!state->watchdog_armed && submission.step == state->server.step()) {
          state->watchdog_armed = true;
          auto timeout = std::chrono::microseconds(
              absl::ToInt64Microseconds(state->server.options().round_timeout));
          self->delayed_send(self, timeout, RoundDeadline{state->round});
        }
        const std::string worker = submission.worker;
        std::optional<Rejection> rejection = state->server.Submit(std::move(submission));
        if (rejection) {
          if (state->server.round().Complete()) CloseRound(*state);
          return actors::MakeCafError(absl::StatusCode::kInvalidArgument, rejection->message);
        }
        caf::response_promise promise = self->make_response_promise();
        state->waiting.emplace(worker, promise);
        if (state->server.round().Complete()) CloseRound(*state);
        return promise;
      },
      [state](GetParameters) -> ParameterSnapshot { return Snapshot(state->server); },
      [state](RoundDeadline deadline) {
        if (deadline.round == state->round) OnDeadline(*state);
      },
  };
}

}  // namespace

absl::StatusOr<caf::actor> SpawnParameterServer(caf::actor_system& system,
                                                const ParameterServerOptions& options) {
  absl::StatusOr<ParameterServer> server = ParameterServer::Create(options);
  if (!server.ok()) return server.status();
  return system.spawn(ParameterServerActor, std::make_shared<ServerState>(*std::move(server)));
}

}  // namespace troupe::federation::robust
