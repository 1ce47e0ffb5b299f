// The node directory: named actors per node, node membership, and lookup across nodes.
//
// Every node runs one directory actor and publishes it on the node's port through CAF's
// middleman. Local actors register under a name; any node resolves "node/name" through its own
// directory, which asks the owning node's directory over the middleman, retrying with backoff
// until the lookup's deadline (the node may not have joined yet, or the actor may be restarting).
//
// Membership: a node joins by saying hello to any member (the seed); the seed answers with every
// member it knows, and the new node connects to each of them directly, so no route depends on
// the seed staying up. Each directory monitors every other: a node that dies (SIGKILL, a cut
// link) shows up as a kDown MembershipEvent, a node that leaves politely as kLeft.
//
// Protocol (every reply may instead be a caf::error from actors/errors.h):
//   (register_atom, name, role, actor)           -> void              AlreadyExists if taken
//   (unregister_atom, name)                      -> void
//   (lookup_atom, node, name, timespan timeout)  -> actor             DeadlineExceeded at last
//   (lookup_local_atom, name)                    -> actor             NotFound if absent
//   (list_atom)                                  -> vector<ActorInfo> this node's actors
//   (port_atom, port)                            -> void              set by PublishDirectory
//   (members_atom)                               -> vector<NodeInfo>  this node first
//   (join_atom, host, port, timespan timeout)    -> vector<NodeInfo>  join via a seed
//   (leave_atom)                                 -> void              say bye to every peer
//   (subscribe_atom, actor)                      -> vector<NodeInfo>  then MembershipEvents
//   (hello_atom, Member), (bye_atom, name)                            between directories
//
//   caf::actor directory = SpawnDirectory(system, {.self = {"n0", "127.0.0.1", 0, {}}});
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "actors/messages.h"
#include "caf/actor.hpp"
#include "caf/actor_system.hpp"

namespace troupe::actors {

struct DirectoryOptions {
  NodeInfo self;
  // Lookup retries start at `retry_initial` and double up to `retry_max`.
  absl::Duration retry_initial = absl::Milliseconds(10);
  absl::Duration retry_max = absl::Milliseconds(500);
};

// SpawnDirectory starts a directory actor for the node `options.self`.
caf::actor SpawnDirectory(caf::actor_system& system, DirectoryOptions options);

// PublishDirectory makes `directory` reachable on `host:port` (port 0 picks one), tells the
// directory its port, and returns it. The error names the address and what to change.
absl::StatusOr<uint16_t> PublishDirectory(caf::actor_system& system, const caf::actor& directory,
                                          const std::string& host, uint16_t port);

// ConnectDirectory returns the directory published at `host:port`.
absl::StatusOr<caf::actor> ConnectDirectory(caf::actor_system& system, const std::string& host,
                                            uint16_t port);

// Blocking conveniences over the protocol, for code outside actors (main, tests, tools).
absl::Status RegisterActor(caf::actor_system& system, const caf::actor& directory,
                           const std::string& name, const std::string& role,
                           const caf::actor& actor);
absl::StatusOr<caf::actor> LookupActor(caf::actor_system& system, const caf::actor& directory,
                                       const std::string& node, const std::string& name,
                                       absl::Duration timeout);
absl::StatusOr<std::vector<NodeInfo>> JoinCluster(caf::actor_system& system,
                                                  const caf::actor& directory,
                                                  const std::string& seed_host,
                                                  uint16_t seed_port, absl::Duration timeout);
absl::StatusOr<std::vector<NodeInfo>> ListMembers(caf::actor_system& system,
                                                  const caf::actor& directory);
absl::StatusOr<std::vector<ActorInfo>> ListActors(caf::actor_system& system,
                                                  const caf::actor& directory);

// ToTimespan converts a duration for the lookup and join messages.
caf::timespan ToTimespan(absl::Duration d);

}  // namespace troupe::actors
