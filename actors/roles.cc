#include "actors/roles.h"

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "actors/errors.h"
#include "actors/instrumented_actor.h"
#include "actors/messages.h"
#include "actors/runtime.h"
#include "caf/all.hpp"

namespace troupe::actors {
namespace {

std::chrono::microseconds Micros(absl::Duration d) {
  return std::chrono::microseconds(absl::ToInt64Microseconds(d));
}

// --- echo ------------------------------------------------------------------------------------

struct EchoState {
  uint64_t pings = 0;  // Pings received, for throughput measurements.
  // Delayed replies, by ticket.
  std::map<uint64_t, std::pair<Ping, caf::response_promise>> delayed;
  uint64_t next_ticket = 1;
};

caf::behavior Echo(caf::stateful_actor<EchoState, InstrumentedActor>* self, std::string name,
                   absl::Duration delay) {
  self->Instrument(name, "echo");
  return {
      [self, delay](const Ping& ping) -> caf::result<Ping> {
        ++self->state.pings;
        if (delay <= absl::ZeroDuration()) return ping;
        const uint64_t ticket = self->state.next_ticket++;
        self->state.delayed.emplace(ticket, std::make_pair(ping, self->make_response_promise()));
        self->delayed_send(self, Micros(delay), retry_atom::value, ticket);
        return self->state.delayed.at(ticket).second;
      },
      [self](retry_atom, uint64_t ticket) {
        auto it = self->state.delayed.find(ticket);
        if (it == self->state.delayed.end()) return;
        it->second.second.deliver(it->second.first);
        self->state.delayed.erase(it);
      },
      [self, name](crash_atom) {
        self->quit(MakeCafError(absl::StatusCode::kInternal,
                                absl::StrCat("echo \"", name, "\" crashed on request")));
      },
      [self](hang_atom) -> caf::result<Ping> { return self->make_response_promise(); },
      [self](stats_atom) { return self->state.pings; },
  };
}

absl::StatusOr<caf::actor> StartEcho(const RoleContext& context) {
  absl::StatusOr<int64_t> delay_ms = IntParam(context.spec, "delay_ms", 0);
  if (!delay_ms.ok()) return delay_ms.status();
  return context.system.spawn(Echo, context.spec.name, absl::Milliseconds(*delay_ms));
}

// --- reflector ---------------------------------------------------------------------------------

caf::behavior Reflector(caf::stateful_actor<EchoState, InstrumentedActor>* self,
                        std::string name) {
  self->Instrument(name, "reflector");
  self->set_default_handler(caf::reflect);
  return {[](shutdown_atom) {}};  // Never sent; a behavior must not be empty.
}

absl::StatusOr<caf::actor> StartReflector(const RoleContext& context) {
  return context.system.spawn(Reflector, context.spec.name);
}

// --- gpu_worker --------------------------------------------------------------------------------

absl::StatusOr<caf::actor> StartGpuWorker(const RoleContext& context) {
  absl::StatusOr<int> device = ParseDevice(context.spec.device);
  if (!device.ok()) return device.status();
  return SpawnGpuWorker(context.system, GpuWorkerOptions{context.spec.name, *device,
                                                         context.bind_device});
}

// --- load --------------------------------------------------------------------------------------

struct LoadState {
  std::vector<std::string> targets;
  absl::Duration interval;
  absl::Duration work;
  caf::actor directory;
  Counter* ok = nullptr;
  Counter* failed = nullptr;
};

caf::behavior Load(caf::stateful_actor<LoadState, InstrumentedActor>* self, std::string name,
                   LoadState config) {
  self->state = std::move(config);
  self->Instrument(name, "load");
  if (MetricsRegistry* metrics = MetricsOf(self->home_system())) {
    const char* help = "Work items the load generator sent, by outcome.";
    Labels labels = {{"node", NodeNameOf(self->home_system())}, {"actor", name}};
    Labels ok = labels, failed = labels;
    ok.emplace_back("outcome", "ok");
    failed.emplace_back("outcome", "error");
    self->state.ok = metrics->AddCounter("troupe_load_items_total", help, ok).value_or(nullptr);
    self->state.failed =
        metrics->AddCounter("troupe_load_items_total", help, failed).value_or(nullptr);
  }
  // The first round waits one interval: the supervisor registers the targets' names only after
  // it has started every actor of the node.
  self->delayed_send(self, Micros(self->state.interval), retry_atom::value);
  auto count = [](Counter* counter) {
    if (counter != nullptr) counter->Increment();
  };
  return {
      [self, count](retry_atom) {
        LoadState& state = self->state;
        const std::string node = NodeNameOf(self->home_system());
        for (const std::string& target : state.targets) {
          // Resolve by name each time: a worker restarted by its supervisor has a new handle.
          self->request(state.directory, caf::infinite, lookup_local_atom::value, target)
              .then(
                  [self, count, work = state.work](caf::actor& worker) {
                    WorkItem item{"spin", [work] {
                                    const absl::Time end = absl::Now() + work;
                                    while (absl::Now() < end) {
                                    }
                                    return absl::OkStatus();
                                  }};
                    self->request(worker, std::chrono::seconds(30), std::move(item))
                        .then([self, count] { count(self->state.ok); },
                              [self, count](caf::error&) { count(self->state.failed); });
                  },
                  [self, count](caf::error&) { count(self->state.failed); });
        }
        self->delayed_send(self, Micros(state.interval), retry_atom::value);
      },
  };
}

absl::StatusOr<caf::actor> StartLoad(const RoleContext& context) {
  absl::StatusOr<std::string> targets = StringParam(context.spec, "targets", "");
  absl::StatusOr<int64_t> interval_ms = IntParam(context.spec, "interval_ms", 50);
  absl::StatusOr<int64_t> work_ms = IntParam(context.spec, "work_ms", 5);
  for (const absl::Status& s : {targets.status(), interval_ms.status(), work_ms.status()}) {
    if (!s.ok()) return s;
  }
  LoadState state;
  state.targets = absl::StrSplit(*targets, ',', absl::SkipWhitespace());
  if (state.targets.empty() || *interval_ms <= 0 || *work_ms < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        context.spec.where, ".params: role load needs targets = \"worker0,worker1\" (worker "
        "names on this node), interval_ms > 0 and work_ms >= 0"));
  }
  state.interval = absl::Milliseconds(*interval_ms);
  state.work = absl::Milliseconds(*work_ms);
  state.directory = context.directory;
  return context.system.spawn(Load, context.spec.name, std::move(state));
}

template <class T>
absl::StatusOr<T> TypedParam(const ActorSpec& spec, const std::string& key, T fallback,
                             const char* type_name) {
  auto it = spec.params.find(key);
  if (it == spec.params.end()) return fallback;
  if (const T* value = std::get_if<T>(&it->second)) return *value;
  return absl::InvalidArgumentError(absl::StrCat(spec.where, ".params.", key, " must be ",
                                                 type_name, " for role ", spec.role));
}

}  // namespace

absl::StatusOr<int64_t> IntParam(const ActorSpec& spec, const std::string& key,
                                 int64_t fallback) {
  return TypedParam<int64_t>(spec, key, fallback, "an integer");
}

absl::StatusOr<std::string> StringParam(const ActorSpec& spec, const std::string& key,
                                        const std::string& fallback) {
  return TypedParam<std::string>(spec, key, fallback, "a string");
}

void RoleCatalog::Add(Role role) {
  std::string name = role.name;
  roles_[name] = std::move(role);
}

const Role* RoleCatalog::Find(const std::string& name) const {
  auto it = roles_.find(name);
  return it == roles_.end() ? nullptr : &it->second;
}

absl::Status RoleCatalog::Check(const ClusterConfig& config) const {
  std::vector<std::string> problems;
  std::vector<std::string> names;
  for (const auto& [name, role] : roles_) names.push_back(name);
  for (const ActorSpec& actor : config.actors) {
    const Role* role = Find(actor.role);
    if (role == nullptr) {
      problems.push_back(absl::StrCat(actor.where, ".role = \"", actor.role,
                                      "\": unknown role; use one of ", absl::StrJoin(names, ", ")));
      continue;
    }
    for (const auto& [key, value] : actor.params) {
      if (role->params.count(key) > 0) continue;
      std::vector<std::string> allowed;
      for (const auto& [param, help] : role->params) allowed.push_back(param);
      problems.push_back(absl::StrCat(
          actor.where, ".params.", key, ": role ", role->name, " takes no such parameter; ",
          allowed.empty() ? std::string("it takes none")
                          : absl::StrCat("it takes ", absl::StrJoin(allowed, ", "))));
    }
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("invalid cluster config ", config.source, ": ",
                                                 absl::StrJoin(problems, "\n  ")));
}

RoleCatalog BuiltinRoles() {
  RoleCatalog catalog;
  catalog.Add({"echo",
               "answers Ping with the same Ping; for health checks, benchmarks, fault drills",
               {{"delay_ms", "reply after this many milliseconds (default 0)"}},
               StartEcho});
  catalog.Add({"reflector",
               "answers any message with the message itself; for wire-format tests",
               {},
               StartReflector});
  catalog.Add({"gpu_worker", "runs work items in order on one device (device = \"cuda:N\") or the CPU",
               {},
               StartGpuWorker});
  catalog.Add({"load", "sends spinning work items to local workers; the demo's traffic",
               {{"targets", "comma-separated worker names on this node (required)"},
                {"interval_ms", "time between rounds (default 50)"},
                {"work_ms", "length of each work item (default 5)"}},
               StartLoad});
  return catalog;
}

}  // namespace troupe::actors
