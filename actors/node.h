// Node: one process of a Troupe cluster, as `troupe node --config X.toml --node NAME` runs it.
//
// Starting a node brings up, in order: the runtime (actor system, metrics), the directory
// (published on the node's host:port), the Prometheus endpoint (if metrics_port is set), the
// configured actors under one supervisor, and membership (joining the cluster through a seed).
// Stopping reverses it: the node says goodbye to its peers, stops its actors and shuts down.
//
//   absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(options);
//   ... (*node)->Failure() ...       // set if the supervisor gave up
//   (*node)->Stop();
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "actors/cluster_config.h"
#include "actors/metrics_http.h"
#include "actors/roles.h"
#include "actors/runtime.h"
#include "caf/actor.hpp"

namespace troupe::actors {

struct NodeOptions {
  ClusterConfig config;
  std::string name;  // Which [[node]] of the config this process is.
  // "host:port" of any member to join through. Empty: the config's first node, unless this is
  // it (then the node waits for others to join it).
  std::string join;
  absl::Duration join_timeout = absl::Seconds(30);
  // Overrides of the node's config entry; negative/zero values keep the config's.
  int scheduler_threads = 0;
  int compute_threads = 0;
  std::string scheduler_policy;
  std::optional<int> metrics_port;
  // Hooks from the binary: the compute library's thread setter, and the CUDA device binder.
  std::function<absl::Status(int)> set_compute_threads;
  DeviceBinder bind_device;
  RoleCatalog roles = BuiltinRoles();
  // The message types of the roles' layers (e.g. serving's), registered beside the runtime's.
  std::vector<std::function<void(caf::actor_system_config&)>> register_types;
};

class Node {
 public:
  static absl::StatusOr<std::unique_ptr<Node>> Start(NodeOptions options);
  ~Node();  // Stop()

  // Stop leaves the cluster, stops every actor, and shuts the runtime down. Idempotent.
  void Stop();

  // Failure is set once the node's root supervisor has given up on a child.
  std::optional<std::string> Failure() const;

  // Describe renders the node's actors (role, state, restarts, mailbox depth) as a table.
  std::string Describe();

  caf::actor_system& system() { return runtime_->system(); }
  Runtime& runtime() { return *runtime_; }
  const NodeInfo& info() const { return info_; }
  const caf::actor& directory() const { return directory_; }
  const caf::actor& supervisor() const { return supervisor_; }
  int metrics_port() const { return metrics_port_; }  // -1 if not served.

 private:
  Node() = default;
  absl::Status Join(const std::string& host, uint16_t port, absl::Duration timeout);

  NodeInfo info_;
  std::unique_ptr<Runtime> runtime_;
  std::unique_ptr<MetricsHttpServer> metrics_server_;
  caf::actor directory_;
  caf::actor supervisor_;
  int metrics_port_ = -1;
  bool stopped_ = false;
  mutable absl::Mutex mutex_;
  std::optional<std::string> failure_ ABSL_GUARDED_BY(mutex_);
};

// ParseHostPort splits "host:port"; the error names the flag value and the expected form.
absl::StatusOr<std::pair<std::string, uint16_t>> ParseHostPort(const std::string& address);

}  // namespace troupe::actors
