#include "gpu/nccl_rendezvous.h"

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "actors/ask.h"
#include "actors/errors.h"
#include "caf/all.hpp"

namespace troupe::gpu {
namespace {

struct RendezvousState {
  int world_size = 0;
  std::optional<std::string> id;
  // Ranks that asked before rank 0 published; answered on publish.
  std::vector<caf::typed_response_promise<std::string>> waiting;
};

using RendezvousActor = caf::stateful_actor<RendezvousState>;

caf::result<void> Publish(RendezvousActor* self, const std::string& id) {
  RendezvousState& state = self->state;
  if (absl::Status valid = NcclUniqueId{id}.Validate(); !valid.ok()) {
    return actors::ToCafError(valid);
  }
  if (state.id.has_value()) {
    if (*state.id == id) return caf::unit;  // Rank 0 retried after a lost reply.
    return actors::MakeCafError(
        absl::StatusCode::kFailedPrecondition,
        "the NCCL rendezvous already has a different unique id: a rendezvous serves one "
        "communicator; spawn a new one for the next");
  }
  state.id = id;
  for (auto& promise : state.waiting) promise.deliver(id);
  state.waiting.clear();
  return caf::unit;
}

caf::result<std::string> Fetch(RendezvousActor* self, int32_t rank) {
  RendezvousState& state = self->state;
  if (rank < 1 || rank >= state.world_size) {
    return actors::MakeCafError(
        absl::StatusCode::kInvalidArgument,
        absl::StrCat("rank ", rank, " cannot fetch the NCCL unique id: ranks 1..",
                     state.world_size - 1, " fetch it (world_size ", state.world_size,
                     "), rank 0 makes and publishes it"));
  }
  if (state.id.has_value()) return *state.id;
  state.waiting.push_back(self->make_response_promise<std::string>());
  return state.waiting.back();
}

caf::behavior Rendezvous(RendezvousActor* self, int world_size) {
  self->state.world_size = world_size;
  return {
      [self](nccl_publish_atom, const std::string& id) { return Publish(self, id); },
      [self](nccl_fetch_atom, int32_t rank) { return Fetch(self, rank); },
  };
}

}  // namespace

absl::StatusOr<caf::actor> SpawnNcclRendezvous(caf::actor_system& system, int world_size) {
  if (world_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("SpawnNcclRendezvous: world_size = ", world_size, " must be at least 1"));
  }
  return system.spawn(Rendezvous, world_size);
}

absl::Status PublishNcclUniqueId(caf::actor_system& system, const caf::actor& rendezvous,
                                 const NcclUniqueId& id, absl::Duration timeout) {
  if (absl::Status valid = id.Validate(); !valid.ok()) return valid;
  return actors::AskDone(system, rendezvous, timeout, nccl_publish_atom::value, id.bytes);
}

absl::StatusOr<NcclUniqueId> FetchNcclUniqueId(caf::actor_system& system,
                                               const caf::actor& rendezvous, int rank,
                                               absl::Duration timeout) {
  absl::StatusOr<std::string> bytes = actors::Ask<std::string>(
      system, rendezvous, timeout, nccl_fetch_atom::value, static_cast<int32_t>(rank));
  if (!bytes.ok()) {
    return absl::Status(bytes.status().code(),
                        absl::StrCat("rank ", rank, " could not fetch the NCCL unique id: ",
                                     bytes.status().message()));
  }
  return NcclUniqueId::FromBytes(*std::move(bytes));
}

absl::StatusOr<NcclUniqueId> ExchangeNcclUniqueId(caf::actor_system& system,
                                                  const caf::actor& rendezvous, int rank,
                                                  const NcclIdGenerator& generate,
                                                  absl::Duration timeout) {
  if (rank != 0) return FetchNcclUniqueId(system, rendezvous, rank, timeout);
  if (!generate) {
    return absl::InvalidArgumentError(
        "ExchangeNcclUniqueId: rank 0 needs a generator; pass GenerateNcclUniqueId");
  }
  absl::StatusOr<NcclUniqueId> id = generate();
  if (!id.ok()) return id.status();
  if (absl::Status published = PublishNcclUniqueId(system, rendezvous, *id, timeout);
      !published.ok()) {
    return published;
  }
  return id;
}

}  // namespace troupe::gpu
