#include "actors/node.h"

#include <algorithm>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "actors/ask.h"
#include "actors/directory.h"
#include "actors/instrumented_actor.h"
#include "actors/messages.h"
#include "actors/supervisor.h"
#include "caf/all.hpp"
#include "spdlog/spdlog.h"

namespace troupe::actors {
namespace {

constexpr absl::Duration kAskTimeout = absl::Seconds(10);

const char* KindText(MembershipEvent::Kind kind) {
  switch (kind) {
    case MembershipEvent::Kind::kJoined: return "joined";
    case MembershipEvent::Kind::kLeft: return "left";
    case MembershipEvent::Kind::kDown: return "is down";
  }
  return "?";
}

const char* StateText(ChildStatus::State state) {
  switch (state) {
    case ChildStatus::State::kRunning: return "running";
    case ChildStatus::State::kStopped: return "stopped";
    case ChildStatus::State::kFailed: return "failed";
  }
  return "?";
}

// MembershipLog prints membership changes and keeps the member-count gauge current.
caf::behavior MembershipLog(caf::stateful_actor<int, InstrumentedActor>* self, Gauge* members) {
  self->Instrument("membership_log", "membership_log");
  return {[self, members](const MembershipEvent& event) {
    self->state += event.kind == MembershipEvent::Kind::kJoined ? 1 : -1;
    if (members != nullptr) members->Set(1 + self->state);
    if (event.kind == MembershipEvent::Kind::kJoined) {
      spdlog::info("node {} ({}:{}) joined", event.node.name, event.node.host, event.node.port);
    } else {
      spdlog::warn("node {} {}: {}", event.node.name, KindText(event.kind), event.reason);
    }
  }};
}

}  // namespace

absl::StatusOr<std::pair<std::string, uint16_t>> ParseHostPort(const std::string& address) {
  size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", address, "\" is not an address; write host:port, e.g. 127.0.0.1:4100"));
  }
  return std::make_pair(address.substr(0, colon), static_cast<uint16_t>(port));
}

absl::StatusOr<std::unique_ptr<Node>> Node::Start(NodeOptions options) {
  const ClusterConfig& config = options.config;
  const NodeSpec* spec = config.FindNode(options.name);
  if (spec == nullptr) {
    std::vector<std::string> names;
    for (const NodeSpec& n : config.nodes) names.push_back(n.info.name);
    return absl::NotFoundError(absl::StrCat("node \"", options.name, "\" is not in ",
                                            config.source, " (it has: ", absl::StrJoin(names, ", "),
                                            "); pass --node with one of those"));
  }
  if (absl::Status roles = options.roles.Check(config); !roles.ok()) return roles;

  std::unique_ptr<Node> node(new Node());
  node->info_ = spec->info;
  RuntimeOptions runtime_options;
  runtime_options.node_name = spec->info.name;
  runtime_options.scheduler_threads =
      options.scheduler_threads > 0 ? options.scheduler_threads : spec->scheduler_threads;
  runtime_options.compute_threads =
      options.compute_threads > 0 ? options.compute_threads : spec->torch_threads;
  runtime_options.set_compute_threads = options.set_compute_threads;
  runtime_options.register_types = options.register_types;
  if (!options.scheduler_policy.empty()) {
    runtime_options.scheduler_policy = options.scheduler_policy;
  } else if (!spec->scheduler_policy.empty()) {
    runtime_options.scheduler_policy = spec->scheduler_policy;
  }
  absl::StatusOr<std::unique_ptr<Runtime>> runtime = Runtime::Create(runtime_options);
  if (!runtime.ok()) return runtime.status();
  node->runtime_ = std::move(*runtime);
  caf::actor_system& system = node->runtime_->system();

  node->directory_ = SpawnDirectory(system, DirectoryOptions{spec->info});
  node->runtime_->Own(node->directory_);
  absl::StatusOr<uint16_t> port =
      PublishDirectory(system, node->directory_, spec->info.host, spec->info.port);
  if (!port.ok()) {
    return absl::Status(port.status().code(), absl::StrCat(spec->where, " (", spec->info.name,
                                                           "): ", port.status().message()));
  }
  node->info_.port = *port;

  const int metrics_port = options.metrics_port.value_or(spec->metrics_port);
  if (metrics_port >= 0) {
    node->metrics_server_ = std::make_unique<MetricsHttpServer>(&node->runtime_->metrics());
    absl::StatusOr<int> bound = node->metrics_server_->Start(spec->info.host, metrics_port);
    if (!bound.ok()) return bound.status();
    node->metrics_port_ = *bound;
  }

  Gauge* members = node->runtime_->metrics()
                       .AddGauge("troupe_cluster_members", "Nodes this node sees as members.",
                                 {{"node", spec->info.name}})
                       .value_or(nullptr);
  if (members != nullptr) members->Set(1);
  caf::actor log = system.spawn(MembershipLog, members);
  node->runtime_->Own(log);
  if (absl::StatusOr<std::vector<NodeInfo>> subscribed = Ask<std::vector<NodeInfo>>(
          system, node->directory_, kAskTimeout, subscribe_atom::value, log);
      !subscribed.ok()) {
    return subscribed.status();
  }

  SupervisorOptions supervision;
  supervision.name = absl::StrCat(spec->info.name, "/root");
  supervision.directory = node->directory_;
  for (const ActorSpec* actor : config.ActorsOn(spec->info.name)) {
    const Role role = *options.roles.Find(actor->role);  // Checked above.
    caf::actor directory = node->directory_;
    DeviceBinder binder = options.bind_device;
    ActorSpec actor_spec = *actor;
    supervision.children.push_back(ChildSpec{
        actor->name, actor->role, actor->restart,
        [role, actor_spec, directory, binder](caf::actor_system& sys) {
          return role.start(RoleContext{sys, actor_spec, directory, binder});
        }});
  }
  absl::StatusOr<caf::actor> supervisor = StartSupervisor(system, std::move(supervision));
  if (!supervisor.ok()) return supervisor.status();
  node->supervisor_ = *supervisor;
  node->runtime_->Own(node->supervisor_);

  // Watch the supervisor: if it gives up, the node has failed.
  Node* raw = node.get();
  caf::actor watcher = system.spawn([raw, supervisor = node->supervisor_](
                                        caf::event_based_actor* self) -> caf::behavior {
    self->monitor(supervisor);
    self->set_down_handler([raw, self](caf::down_msg& down) {
      if (down.reason && down.reason != caf::exit_reason::user_shutdown) {
        absl::MutexLock lock(&raw->mutex_);
        raw->failure_ = RenderError(down.reason);
      }
      self->quit();
    });
    return {[](shutdown_atom) {}};
  });
  node->runtime_->Own(watcher);

  std::string join = options.join;
  if (join.empty() && !config.nodes.empty() && config.nodes[0].info.name != spec->info.name) {
    const NodeInfo& seed = config.nodes[0].info;
    if (seed.port == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "node \"", spec->info.name, "\" should join through the first node of ",
          config.source, " (\"", seed.name, "\"), but its port is 0 (ephemeral); give ",
          config.nodes[0].where, " a fixed port or pass --join host:port"));
    }
    join = absl::StrCat(seed.host, ":", seed.port);
  }
  if (!join.empty()) {
    absl::StatusOr<std::pair<std::string, uint16_t>> seed = ParseHostPort(join);
    if (!seed.ok()) return seed.status();
    if (absl::Status joined = node->Join(seed->first, seed->second, options.join_timeout);
        !joined.ok()) {
      return joined;
    }
  }
  return node;
}

absl::Status Node::Join(const std::string& host, uint16_t port, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last;
  while (true) {
    absl::StatusOr<std::vector<NodeInfo>> members =
        JoinCluster(system(), directory_, host, port, std::min(timeout, absl::Seconds(5)));
    if (members.ok()) {
      std::vector<std::string> names;
      for (const NodeInfo& m : *members) names.push_back(m.name);
      spdlog::info("node {} joined the cluster via {}:{}; members: {}", info_.name, host, port,
                   absl::StrJoin(names, ", "));
      return absl::OkStatus();
    }
    last = members.status();
    // A taken name will not free itself; anything else may be a seed that is still starting.
    if (last.code() == absl::StatusCode::kAlreadyExists || absl::Now() >= deadline) break;
    absl::SleepFor(absl::Milliseconds(200));
  }
  return absl::Status(last.code(),
                      absl::StrCat("node \"", info_.name, "\" could not join the cluster via ",
                                   host, ":", port, " within ", absl::FormatDuration(timeout),
                                   ": ", last.message()));
}

Node::~Node() { Stop(); }

void Node::Stop() {
  if (stopped_ || runtime_ == nullptr) return;
  stopped_ = true;
  if (directory_) {
    AskDone(system(), directory_, kAskTimeout, leave_atom::value).IgnoreError();
  }
  if (metrics_server_ != nullptr) metrics_server_->Stop();
  runtime_->Shutdown();
}

std::optional<std::string> Node::Failure() const {
  absl::MutexLock lock(&mutex_);
  return failure_;
}

std::string Node::Describe() {
  absl::StatusOr<std::vector<ChildStatus>> children =
      Ask<std::vector<ChildStatus>>(system(), supervisor_, kAskTimeout, children_atom::value);
  absl::StatusOr<std::vector<ActorInfo>> actors = ListActors(system(), directory_);
  if (!children.ok()) return absl::StrCat("(supervisor unavailable: ", children.status().message(), ")\n");
  std::string out = absl::StrFormat("%-16s %-12s %-9s %8s\n", "ACTOR", "ROLE", "STATE", "RESTARTS");
  for (const ChildStatus& child : *children) {
    std::string role = "?";
    if (actors.ok()) {
      for (const ActorInfo& a : *actors) {
        if (a.name == child.name) role = a.role;
      }
    }
    absl::StrAppend(&out, absl::StrFormat("%-16s %-12s %-9s %8d\n", child.name, role,
                                          StateText(child.state), child.restarts));
  }
  return out;
}

}  // namespace troupe::actors
