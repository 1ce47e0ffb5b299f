// NCCL rendezvous over actor messages: rank 0 makes the unique id, the other ranks fetch it.
//
// Every rank of a communicator needs the same NcclUniqueId before Communicator::Create. Rank 0
// makes it and publishes it to a rendezvous actor; ranks 1..world_size-1, in this process or
// in others, ask that actor for it. The actor answers a rank as soon as it has the id, so ranks
// may ask before rank 0 has published (their Ask timeout bounds the wait).
//
// On the wire the id is a std::string of exactly 128 bytes, not an NcclUniqueId: every message
// element needs a CAF type ID, Troupe's one type-ID block lives in actors/messages.h (the
// actors layer's), and std::string is one of CAF's built-in types. NcclUniqueId::FromBytes turns
// the string back into an id, checking its size.
//
// Protocol (atoms are CAF atom constants, which need no type ID):
//   (nccl_publish_atom, std::string id)  -> void          rank 0, once per rendezvous
//   (nccl_fetch_atom, int32_t rank)      -> std::string    ranks 1..world_size-1
//
//   caf::actor rendezvous = *SpawnNcclRendezvous(system, /*world_size=*/2);
//   // On each rank's thread or process (a remote rank holds a handle to the same actor):
//   absl::StatusOr<NcclUniqueId> id = ExchangeNcclUniqueId(
//       system, rendezvous, rank, GenerateNcclUniqueId, absl::Seconds(30));
//   absl::StatusOr<Communicator> comm = Communicator::Create(*id, rank, 2, device);
#pragma once

#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "caf/actor.hpp"
#include "caf/actor_system.hpp"
#include "caf/atom.hpp"
#include "gpu/nccl_id.h"

namespace troupe::gpu {

using nccl_publish_atom = caf::atom_constant<caf::atom("ncclpub")>;
using nccl_fetch_atom = caf::atom_constant<caf::atom("ncclfetch")>;

// SpawnNcclRendezvous starts the rendezvous actor of one communicator of `world_size` ranks
// (at least 1). The caller owns it: it stays until it is sent an exit.
absl::StatusOr<caf::actor> SpawnNcclRendezvous(caf::actor_system& system, int world_size);

// PublishNcclUniqueId hands rank 0's id to the rendezvous. Publishing the same id again is a
// harmless retry; a different id is FailedPrecondition (one rendezvous per communicator).
absl::Status PublishNcclUniqueId(caf::actor_system& system, const caf::actor& rendezvous,
                                 const NcclUniqueId& id, absl::Duration timeout);

// FetchNcclUniqueId asks the rendezvous for the id on behalf of `rank` (1..world_size-1) and
// waits up to `timeout` for rank 0 to publish it.
absl::StatusOr<NcclUniqueId> FetchNcclUniqueId(caf::actor_system& system,
                                               const caf::actor& rendezvous, int rank,
                                               absl::Duration timeout);

// NcclIdGenerator makes a fresh id: GenerateNcclUniqueId (nccl.h) on GPUs. Passed in, so that
// this library needs no NCCL.
using NcclIdGenerator = std::function<absl::StatusOr<NcclUniqueId>()>;

// ExchangeNcclUniqueId is what each rank calls: rank 0 generates the id and publishes it, the
// others fetch it. Every rank gets the same id back.
absl::StatusOr<NcclUniqueId> ExchangeNcclUniqueId(caf::actor_system& system,
                                                  const caf::actor& rendezvous, int rank,
                                                  const NcclIdGenerator& generate,
                                                  absl::Duration timeout);

}  // namespace troupe::gpu
