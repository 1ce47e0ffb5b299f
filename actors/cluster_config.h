// Cluster configuration: which nodes exist and which actors each one runs.
//
// A cluster is described in TOML:
//
//   [cluster]
//   name = "demo"
//
//   [[node]]
//   name = "n0"
//   host = "127.0.0.1"
//   port = 0                 # 0 picks an ephemeral port
//   gpus = [0, 1]            # CUDA devices this node may bind; omit for CPU only
//   scheduler_threads = 4    # optional; also torch_threads, scheduler_policy, metrics_port
//
//   [[actor]]
//   name = "worker0"
//   role = "gpu_worker"
//   node = "n0"
//   device = "cuda:0"
//   restart = "restart"      # or "stop", "escalate"
//   [actor.params]
//   ...                      # role-specific
//
// LoadClusterConfig validates everything that does not depend on which roles a binary knows:
// every problem is reported at once, each naming the file, the key and the fix.
//
//   absl::StatusOr<ClusterConfig> config = LoadClusterConfig("configs/demo.toml");
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "actors/messages.h"

namespace troupe::actors {

// ParamValue is one role parameter: a TOML boolean, integer, float or string.
using ParamValue = std::variant<bool, int64_t, double, std::string>;

// RestartPolicy says what a supervisor does when a child fails (exits abnormally).
struct RestartPolicy {
  enum class Kind { kStop, kRestart, kEscalate };
  Kind kind = Kind::kRestart;
  // kRestart only: at most `max_restarts` restarts within `window`; one more failure inside the
  // window escalates. Erlang/OTP's supervisor defaults (intensity 3, period 5 s).
  int max_restarts = 3;
  absl::Duration window = absl::Seconds(5);
};

// ActorSpec is one [[actor]] entry.
struct ActorSpec {
  std::string name;
  std::string role;
  std::string node;
  std::string device = "cpu";  // "cpu" or "cuda:N"
  RestartPolicy restart;
  std::map<std::string, ParamValue> params;
  std::string where;  // "actor[i]", to name this entry in error messages.
};

// NodeSpec is one [[node]] entry.
struct NodeSpec {
  NodeInfo info;
  // Thread counts; 0 means "derive from the core count" (see ResolveThreadCounts).
  int scheduler_threads = 0;
  int torch_threads = 0;
  std::string scheduler_policy;  // Empty: the runtime's default (see RuntimeOptions).
  // Port of the Prometheus /metrics endpoint; -1 disables it, 0 picks an ephemeral port.
  int metrics_port = -1;
  std::string where;  // "node[i]", to name this entry in error messages.
};

// ClusterConfig is a validated cluster description.
struct ClusterConfig {
  std::string name = "troupe";
  std::string source;  // The file it came from, or "<embedded>".
  std::vector<NodeSpec> nodes;
  std::vector<ActorSpec> actors;

  // FindNode returns the node called `name`, or nullptr.
  const NodeSpec* FindNode(const std::string& name) const;
  // ActorsOn returns the actors placed on node `name`, in file order.
  std::vector<const ActorSpec*> ActorsOn(const std::string& name) const;
};

// ParseClusterConfig parses and validates TOML text; `source` names it in errors.
absl::StatusOr<ClusterConfig> ParseClusterConfig(const std::string& text,
                                                 const std::string& source);

// LoadClusterConfig reads and validates a TOML file.
absl::StatusOr<ClusterConfig> LoadClusterConfig(const std::string& path);

// ParseDevice parses "cpu" (-1) or "cuda:N" (N).
absl::StatusOr<int> ParseDevice(const std::string& device);

}  // namespace troupe::actors
