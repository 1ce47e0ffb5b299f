// Supervision: a parent that watches its children and applies each child's restart policy.
//
// A child that exits normally is left stopped. A child that fails (any other exit reason: an
// error, a kill, a lost node) gets its RestartPolicy:
//   kStop      it stays down; its siblings go on.
//   kRestart   it is started again, at most `max_restarts` times within `window`; one failure
//              more escalates.
//   kEscalate  the supervisor itself fails with the child's reason, so that its own parent
//              (which monitors it) decides.
// Restarted children are re-registered in the node directory under the same name, so lookups
// by name find the new incarnation. When the supervisor stops, its children stop with it (they
// are linked). Work waiting on a child is not the supervisor's business: whoever waits uses
// PendingWork or Ask, and gets an error when the child goes down.
//
//   absl::StatusOr<caf::actor> supervisor = StartSupervisor(system, {
//       .name = "root", .children = {{"echo", "echo", RestartPolicy{}, start_echo}},
//       .directory = directory});
//
// Protocol:
//   (children_atom)             -> vector<ChildStatus>
//   (lookup_local_atom, name)   -> actor   the child's current incarnation
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "actors/cluster_config.h"
#include "caf/actor.hpp"
#include "caf/actor_system.hpp"

namespace troupe::actors {

// ChildSpec says how to start one child and what to do when it fails.
struct ChildSpec {
  std::string name;
  std::string role;
  RestartPolicy policy;
  // Spawns a fresh incarnation of the child. Called once at start and once per restart.
  std::function<absl::StatusOr<caf::actor>(caf::actor_system&)> start;
};

struct SupervisorOptions {
  std::string name = "supervisor";
  std::vector<ChildSpec> children;
  // If set, each child is registered here under its name (role: its role), and re-registered
  // after every restart.
  caf::actor directory;
  // A restart whose start() fails is retried after this delay; each such failure counts
  // against the child's restart budget like a crash.
  absl::Duration retry_delay = absl::Milliseconds(100);
};

// StartSupervisor starts every child in order, then the supervisor that watches them. If a
// child cannot start, the ones already started are stopped and the error names the child.
absl::StatusOr<caf::actor> StartSupervisor(caf::actor_system& system, SupervisorOptions options);

}  // namespace troupe::actors
