// Router: DistServe's controller as an actor. It places each request on the prefill instance
// with the fewest requests in flight, and, when the prefill instance hands the request back
// (DecodeRequest), on the decode instance with the fewest; it stays between the client and the
// instances for the request's whole life, so it knows where every request is:
//
//   client --GenerateRequest--> router --GenerateRequest--> prefill
//   client <--first token------ router <--first token------ prefill
//                               router <--DecodeRequest---- prefill (KV waits there)
//                               router --DecodeRequest----> decode  (pulls the KV)
//   client <--tokens----------- router <--tokens----------- decode
//
// Loads are the router's own counts of the requests it has placed and not yet seen finish, so
// placement needs no polling and two requests in a row never pile onto one instance. Instances
// may be given as actors or as directory names ("node/name", resolved through the node's
// directory and again after the instance goes down, so a restarted instance rejoins).
//
// Failures end requests, never hang them. An instance that goes down is dropped; each request
// it held ends with GeneratedToken{id, -1, true, kFinishedByFailure}, and the other phase's
// instance is told to cancel it (an unpulled KV is freed). A client that goes down (an HTTP
// client that disconnected) has its requests cancelled on every instance, freeing their blocks.
//
// Protocol (serving/instance/messages.h):
//   (GenerateRequest)           -> unit once a prefill instance has queued it, or its error;
//                                  then GeneratedToken messages to the sender, the last finished
//   (DecodeRequest)             -> from a prefill instance: placed on a decode instance
//   (cancel_atom, int64_t id)   -> bool: whether the request was in flight; its instances drop
//                                  it and the client gets GeneratedToken{id, -1, true, cancel}
//   (stats_atom)                -> InstanceStats summed over the instances' last polled stats
//   (router_stats_atom)         -> RouterStats: instances up, requests in flight and finished,
//                                  and the mean time of each phase
//
//   caf::actor router = *SpawnRouter(system, {.prefill = {p0, p1}, .decode = {d0, d1}});
//   // prefill instances are spawned without a decode actor: they hand requests to the router
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "caf/actor.hpp"
#include "caf/actor_system.hpp"

namespace troupe::serving::instance {

struct RouterOptions {
  std::vector<caf::actor> prefill;
  std::vector<caf::actor> decode;
  // Instances by directory name ("node/name"), resolved through `directory`, each waited for
  // up to `lookup_timeout` and looked up again whenever it goes down.
  std::vector<std::string> prefill_names;
  std::vector<std::string> decode_names;
  caf::actor directory;
  absl::Duration lookup_timeout = absl::Seconds(60);
  // How often the instances' stats are polled for (stats_atom).
  absl::Duration poll_interval = absl::Milliseconds(100);
};

// SpawnRouter checks the options (at least one prefill instance, names of the form
// "node/name" and a directory to resolve them) and starts a router. Without decode instances,
// the "prefill" instances are colocated ones, which generate every token themselves.
absl::StatusOr<caf::actor> SpawnRouter(caf::actor_system& system, RouterOptions options);

}  // namespace troupe::serving::instance
