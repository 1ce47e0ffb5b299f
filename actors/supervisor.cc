#include "actors/supervisor.h"

#include <deque>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "actors/errors.h"
#include "actors/instrumented_actor.h"
#include "actors/messages.h"
#include "caf/all.hpp"
#include "spdlog/spdlog.h"

namespace troupe::actors {
namespace {

struct Child {
  ChildSpec spec;
  caf::actor actor;
  ChildStatus status;
  std::deque<absl::Time> recent_restarts;  // Restarts inside the policy's window.
};

struct SupervisorState;
using SupervisorActor = caf::stateful_actor<SupervisorState, InstrumentedActor>;

struct SupervisorState {
  SupervisorActor* self = nullptr;
  SupervisorOptions options;
  std::vector<Child> children;
  // Every incarnation of every child: their exit messages (from the link) are expected.
  std::set<caf::actor_addr> incarnations;

  Child* Find(const caf::actor_addr& addr) {
    for (Child& child : children) {
      if (child.actor && child.actor.address() == addr) return &child;
    }
    return nullptr;
  }

  void Adopt(Child& child, caf::actor actor) {
    child.actor = std::move(actor);
    child.status.state = ChildStatus::State::kRunning;
    incarnations.insert(child.actor.address());
    self->link_to(child.actor);
    self->monitor(child.actor);
    if (options.directory) {
      // Unregister first: the directory may not have seen the old incarnation go down yet.
      // Both messages come from us, so they arrive in order.
      self->send(options.directory, unregister_atom::value, child.spec.name);
      self->request(options.directory, caf::infinite, register_atom::value, child.spec.name,
                    child.spec.role, child.actor)
          .then([] {},
                [name = child.spec.name](caf::error& error) {
                  spdlog::error("supervisor: cannot register {}: {}", name, RenderError(error));
                });
    }
  }

  void OnDown(const caf::down_msg& down) {
    Child* child = Find(down.source);
    if (child == nullptr) return;
    child->actor = nullptr;
    if (!down.reason) {  // exit_reason::normal is the empty error.
      child->status.state = ChildStatus::State::kStopped;
      return;
    }
    child->status.state = ChildStatus::State::kFailed;
    child->status.last_failure = RenderError(down.reason);
    HandleFailure(*child, down.reason);
  }

  void HandleFailure(Child& child, const caf::error& reason) {
    const RestartPolicy& policy = child.spec.policy;
    switch (policy.kind) {
      case RestartPolicy::Kind::kStop:
        spdlog::warn("supervisor {}: child {} failed ({}); policy \"stop\" leaves it down",
                     options.name, child.spec.name, child.status.last_failure);
        return;
      case RestartPolicy::Kind::kEscalate:
        return Escalate(child, "its policy is \"escalate\"");
      case RestartPolicy::Kind::kRestart:
        break;
    }
    const absl::Time now = absl::Now();
    while (!child.recent_restarts.empty() &&
           now - child.recent_restarts.front() > policy.window) {
      child.recent_restarts.pop_front();
    }
    if (static_cast<int>(child.recent_restarts.size()) >= policy.max_restarts) {
      return Escalate(child, absl::StrCat("it failed ", policy.max_restarts + 1, " times within ",
                                          absl::FormatDuration(policy.window)));
    }
    child.recent_restarts.push_back(now);
    ++child.status.restarts;
    Restart(child);
  }

  void Restart(Child& child) {
    absl::StatusOr<caf::actor> actor = child.spec.start(self->home_system());
    if (actor.ok()) {
      spdlog::warn("supervisor {}: restarted {} (restart {}) after: {}", options.name,
                   child.spec.name, child.status.restarts, child.status.last_failure);
      Adopt(child, std::move(*actor));
      return;
    }
    child.status.last_failure = actor.status().ToString();
    self->delayed_send(self, std::chrono::microseconds(absl::ToInt64Microseconds(
                                 options.retry_delay)),
                       restart_atom::value, child.spec.name);
  }

  void Escalate(const Child& child, const std::string& why) {
    std::string message =
        absl::StrCat("supervisor ", Quoted(options.name), " gives up: child ",
                     Quoted(child.spec.name), " (role ", child.spec.role, ") failed with \"",
                     child.status.last_failure, "\" and ", why);
    spdlog::error("{}", message);
    self->quit(MakeCafError(absl::StatusCode::kAborted, message));
  }

  std::vector<ChildStatus> Statuses() const {
    std::vector<ChildStatus> out;
    for (const Child& child : children) out.push_back(child.status);
    return out;
  }
};

caf::behavior Supervisor(SupervisorActor* self, SupervisorOptions options,
                         std::vector<caf::actor> started) {
  SupervisorState& state = self->state;
  state.self = self;
  state.options = std::move(options);
  self->Instrument(state.options.name, "supervisor");
  for (size_t i = 0; i < state.options.children.size(); ++i) {
    Child child;
    child.spec = state.options.children[i];
    child.status.name = child.spec.name;
    state.children.push_back(std::move(child));
  }
  for (size_t i = 0; i < started.size(); ++i) state.Adopt(state.children[i], started[i]);
  self->set_down_handler([self](caf::down_msg& down) { self->state.OnDown(down); });
  // Children are linked so they stop with us; their own exits arrive as down messages too, so
  // an exit message from a child is not a reason to stop. Anyone else's is.
  self->set_exit_handler([self](caf::exit_msg& exit) {
    if (self->state.incarnations.erase(exit.source) > 0) return;
    if (exit.reason) self->quit(exit.reason);
  });
  return {
      [self](children_atom) { return self->state.Statuses(); },
      [self](lookup_local_atom, const std::string& name) -> caf::result<caf::actor> {
        for (const Child& child : self->state.children) {
          if (child.spec.name == name && child.actor) return child.actor;
        }
        return MakeCafError(absl::StatusCode::kNotFound,
                            absl::StrCat("supervisor has no running child named \"", name, "\""));
      },
      [self](restart_atom, const std::string& name) {
        for (Child& child : self->state.children) {
          if (child.spec.name == name && !child.actor) {
            self->state.HandleFailure(child, caf::error());
          }
        }
      },
  };
}

}  // namespace

absl::StatusOr<caf::actor> StartSupervisor(caf::actor_system& system, SupervisorOptions options) {
  std::vector<caf::actor> started;
  for (const ChildSpec& spec : options.children) {
    absl::StatusOr<caf::actor> actor =
        spec.start ? spec.start(system)
                   : absl::InvalidArgumentError("the child spec has no start function");
    if (!actor.ok()) {
      for (const caf::actor& a : started) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
      return absl::Status(actor.status().code(),
                          absl::StrCat("cannot start actor \"", spec.name, "\" (role ", spec.role,
                                       "): ", actor.status().message()));
    }
    started.push_back(std::move(*actor));
  }
  return system.spawn(Supervisor, std::move(options), std::move(started));
}

}  // namespace troupe::actors
