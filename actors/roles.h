// Roles: the kinds of actor a node can run, by the name the cluster config uses.
//
// A role knows its parameters and how to start an actor from an [[actor]] entry. The node
// binary starts each configured actor through its role, under the node's supervisor, so a
// failed actor is restarted the same way whatever its role. Later layers (serving, federation)
// add their roles to the catalog; the runtime ships the ones below.
//
//   RoleCatalog roles = BuiltinRoles();
//   absl::Status ok = roles.Check(config);   // unknown roles and parameters, with the fix
//
// Built-in roles:
//   echo         answers Ping with the same Ping (after params.delay_ms); for health checks,
//                benchmarks and fault drills (crash_atom fails it, hang_atom is never answered,
//                stats_atom answers how many pings it has received).
//   reflector    answers any message with itself; for tests of the wire format.
//   gpu_worker   a GpuWorker on the entry's device.
//   load         sends a work item of params.work_ms to each of params.targets (worker names
//                on this node) every params.interval_ms; the demo's traffic.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "actors/cluster_config.h"
#include "actors/gpu_worker.h"
#include "caf/actor.hpp"
#include "caf/actor_system.hpp"

namespace troupe::actors {

// RoleContext is what a role needs to start one actor.
struct RoleContext {
  caf::actor_system& system;
  const ActorSpec& spec;
  caf::actor directory;     // This node's directory.
  DeviceBinder bind_device;  // Empty in binaries without CUDA.
};

struct Role {
  std::string name;
  std::string summary;
  // Parameter name -> one line on its meaning and default.
  std::map<std::string, std::string> params;
  std::function<absl::StatusOr<caf::actor>(const RoleContext&)> start;
};

class RoleCatalog {
 public:
  // Add registers a role; a second role of the same name replaces the first.
  void Add(Role role);
  const Role* Find(const std::string& name) const;
  const std::map<std::string, Role>& roles() const { return roles_; }

  // Check reports every actor of `config` whose role is unknown or whose parameters the role
  // does not take, naming the file, the entry and the fix.
  absl::Status Check(const ClusterConfig& config) const;

 private:
  std::map<std::string, Role> roles_;
};

// BuiltinRoles returns the runtime's own roles: echo, gpu_worker, load.
RoleCatalog BuiltinRoles();

// Typed access to an actor's parameters. A parameter of the wrong type is an error naming the
// entry; a missing one gives `fallback`.
absl::StatusOr<int64_t> IntParam(const ActorSpec& spec, const std::string& key, int64_t fallback);
absl::StatusOr<std::string> StringParam(const ActorSpec& spec, const std::string& key,
                                        const std::string& fallback);

}  // namespace troupe::actors
