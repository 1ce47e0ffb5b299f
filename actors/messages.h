// The message vocabulary of Troupe's runtime, and its one CAF type-ID block.
//
// Every struct here may cross a process, so each has an `inspect` overload (CAF 0.17.6
// serializes through it) and an operator== (the cross-process test compares what came back
// with what was sent). Add a new type in three places: the struct with its inspect, the
// CAF_ADD_TYPE_ID line at the bottom, and a sample value in actors/message_samples.cc.
//
//   caf::actor_system_config cfg;
//   RegisterMessageTypes(cfg);   // before constructing the actor_system
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "caf/actor.hpp"
#include "caf/actor_system_config.hpp"
#include "caf/atom.hpp"
#include "caf/meta/type_name.hpp"
#include "caf/type_id.hpp"

namespace troupe::actors {

// NodeInfo names one node of a cluster and where its directory listens.
struct NodeInfo {
  std::string name;
  std::string host;
  uint16_t port = 0;
  std::vector<int32_t> gpus;  // CUDA device indices this node may bind; empty = CPU only.

  friend bool operator==(const NodeInfo& a, const NodeInfo& b) {
    return a.name == b.name && a.host == b.host && a.port == b.port && a.gpus == b.gpus;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, NodeInfo& x) {
  return f(caf::meta::type_name("NodeInfo"), x.name, x.host, x.port, x.gpus);
}

// Member is a node together with the handle of its directory actor.
struct Member {
  NodeInfo info;
  caf::actor directory;

  friend bool operator==(const Member& a, const Member& b) {
    return a.info == b.info && a.directory == b.directory;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Member& x) {
  return f(caf::meta::type_name("Member"), x.info, x.directory);
}

// MembershipEvent tells a subscriber that a node joined, left on purpose, or went down.
struct MembershipEvent {
  enum class Kind : uint8_t { kJoined = 0, kLeft = 1, kDown = 2 };
  Kind kind = Kind::kJoined;
  NodeInfo node;
  std::string reason;  // Empty for kJoined; why the node is gone otherwise.

  friend bool operator==(const MembershipEvent& a, const MembershipEvent& b) {
    return a.kind == b.kind && a.node == b.node && a.reason == b.reason;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, MembershipEvent& x) {
  return f(caf::meta::type_name("MembershipEvent"), x.kind, x.node, x.reason);
}

// ActorInfo describes one named actor in a node's directory.
struct ActorInfo {
  std::string node;
  std::string name;
  std::string role;

  friend bool operator==(const ActorInfo& a, const ActorInfo& b) {
    return a.node == b.node && a.name == b.name && a.role == b.role;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ActorInfo& x) {
  return f(caf::meta::type_name("ActorInfo"), x.node, x.name, x.role);
}

// WorkerStats is what a GPU worker reports about the work it has run.
struct WorkerStats {
  std::string name;
  std::string device;  // "cpu" or "cuda:N".
  uint64_t items_done = 0;
  uint64_t items_failed = 0;
  int64_t busy_ns = 0;    // Time spent inside work items.
  int64_t uptime_ns = 0;  // Time since the worker started.

  friend bool operator==(const WorkerStats& a, const WorkerStats& b) {
    return a.name == b.name && a.device == b.device && a.items_done == b.items_done &&
           a.items_failed == b.items_failed && a.busy_ns == b.busy_ns &&
           a.uptime_ns == b.uptime_ns;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, WorkerStats& x) {
  return f(caf::meta::type_name("WorkerStats"), x.name, x.device, x.items_done, x.items_failed,
           x.busy_ns, x.uptime_ns);
}

// ChildStatus is one row of a supervisor's report on its children.
struct ChildStatus {
  enum class State : uint8_t { kRunning = 0, kStopped = 1, kFailed = 2 };
  std::string name;
  State state = State::kRunning;
  uint32_t restarts = 0;
  std::string last_failure;

  friend bool operator==(const ChildStatus& a, const ChildStatus& b) {
    return a.name == b.name && a.state == b.state && a.restarts == b.restarts &&
           a.last_failure == b.last_failure;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ChildStatus& x) {
  return f(caf::meta::type_name("ChildStatus"), x.name, x.state, x.restarts, x.last_failure);
}

// Ping carries a sequence number and an opaque payload; echo actors send it back unchanged.
struct Ping {
  uint64_t seq = 0;
  std::string payload;

  friend bool operator==(const Ping& a, const Ping& b) {
    return a.seq == b.seq && a.payload == b.payload;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Ping& x) {
  return f(caf::meta::type_name("Ping"), x.seq, x.payload);
}

// RegisterMessageTypes adds Troupe's type-ID block and error category to `cfg`.
void RegisterMessageTypes(caf::actor_system_config& cfg);

}  // namespace troupe::actors

// Atoms: CAF 0.17 atoms are at most ten characters.
CAF_ADD_ATOM(troupe, troupe::actors, register_atom, "register")
CAF_ADD_ATOM(troupe, troupe::actors, unregister_atom, "unregister")
CAF_ADD_ATOM(troupe, troupe::actors, lookup_atom, "lookup")
CAF_ADD_ATOM(troupe, troupe::actors, lookup_local_atom, "lookuplocl")
CAF_ADD_ATOM(troupe, troupe::actors, join_atom, "join")
CAF_ADD_ATOM(troupe, troupe::actors, hello_atom, "hello")
CAF_ADD_ATOM(troupe, troupe::actors, leave_atom, "leave")
CAF_ADD_ATOM(troupe, troupe::actors, bye_atom, "bye")
CAF_ADD_ATOM(troupe, troupe::actors, members_atom, "members")
CAF_ADD_ATOM(troupe, troupe::actors, list_atom, "list")
CAF_ADD_ATOM(troupe, troupe::actors, subscribe_atom, "subscribe")
CAF_ADD_ATOM(troupe, troupe::actors, retry_atom, "retry")
CAF_ADD_ATOM(troupe, troupe::actors, port_atom, "port")
CAF_ADD_ATOM(troupe, troupe::actors, stats_atom, "stats")
CAF_ADD_ATOM(troupe, troupe::actors, children_atom, "children")
CAF_ADD_ATOM(troupe, troupe::actors, restart_atom, "restart")
CAF_ADD_ATOM(troupe, troupe::actors, metrics_atom, "metrics")
CAF_ADD_ATOM(troupe, troupe::actors, crash_atom, "crash")
CAF_ADD_ATOM(troupe, troupe::actors, hang_atom, "hang")
CAF_ADD_ATOM(troupe, troupe::actors, shutdown_atom, "shutdown")

CAF_BEGIN_TYPE_ID_BLOCK(troupe, caf::first_custom_type_id)
  CAF_ADD_TYPE_ID(troupe, (troupe::actors::NodeInfo))
  CAF_ADD_TYPE_ID(troupe, (std::vector<troupe::actors::NodeInfo>))
  CAF_ADD_TYPE_ID(troupe, (troupe::actors::Member))
  CAF_ADD_TYPE_ID(troupe, (std::vector<troupe::actors::Member>))
  CAF_ADD_TYPE_ID(troupe, (troupe::actors::MembershipEvent))
  CAF_ADD_TYPE_ID(troupe, (troupe::actors::ActorInfo))
  CAF_ADD_TYPE_ID(troupe, (std::vector<troupe::actors::ActorInfo>))
  CAF_ADD_TYPE_ID(troupe, (troupe::actors::WorkerStats))
  CAF_ADD_TYPE_ID(troupe, (troupe::actors::ChildStatus))
  CAF_ADD_TYPE_ID(troupe, (std::vector<troupe::actors::ChildStatus>))
  CAF_ADD_TYPE_ID(troupe, (troupe::actors::Ping))
CAF_END_TYPE_ID_BLOCK(troupe)
