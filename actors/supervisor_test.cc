#include "actors/supervisor.h"

#include <atomic>
#include <memory>
#include <thread>

#include "actors/ask.h"
#include "actors/directory.h"
#include "actors/messages.h"
#include "actors/pending_work.h"
#include "actors/runtime.h"
#include "actors/test_runtime.h"
#include "caf/all.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::actors {
namespace {

using ::testing::HasSubstr;

// A child that echoes pings, fails on crash_atom, exits normally on shutdown_atom, and never
// answers hang_atom.
caf::behavior Child(caf::event_based_actor* self) {
  return {
      [](const Ping& ping) { return ping; },
      [self](crash_atom) {
        self->quit(MakeCafError(absl::StatusCode::kInternal, "boom"));
      },
      [self](shutdown_atom) { self->quit(); },
      [self](hang_atom) -> caf::result<Ping> { return self->make_response_promise(); },
  };
}

ChildSpec Spec(const std::string& name, RestartPolicy policy, std::atomic<int>* starts = nullptr) {
  return ChildSpec{name, "test", policy, [starts](caf::actor_system& system) {
                     if (starts != nullptr) ++*starts;
                     return absl::StatusOr<caf::actor>(system.spawn(Child));
                   }};
}

class SupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    runtime_ = StartTestRuntime();
    directory_ = StartTestDirectory(*runtime_);
  }

  caf::actor_system& system() { return runtime_->system(); }

  caf::actor Start(std::vector<ChildSpec> children) {
    SupervisorOptions options;
    options.name = "root";
    options.children = std::move(children);
    options.directory = directory_;
    absl::StatusOr<caf::actor> supervisor = StartSupervisor(system(), std::move(options));
    EXPECT_TRUE(supervisor.ok()) << supervisor.status();
    runtime_->Own(*supervisor);
    return *supervisor;
  }

  std::vector<ChildStatus> Children(const caf::actor& supervisor) {
    return *Ask<std::vector<ChildStatus>>(system(), supervisor, absl::Seconds(5),
                                          children_atom::value);
  }

  // WaitFor polls `predicate` for up to 10 s: supervision reacts asynchronously.
  template <class Predicate>
  bool WaitFor(Predicate predicate) {
    for (int i = 0; i < 1000; ++i) {
      if (predicate()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  caf::actor CurrentChild(const caf::actor& supervisor, const std::string& name) {
    absl::StatusOr<caf::actor> child =
        Ask<caf::actor>(system(), supervisor, absl::Seconds(5), lookup_local_atom::value, name);
    return child.ok() ? *child : caf::actor();
  }

  std::unique_ptr<Runtime> runtime_;
  caf::actor directory_;
};

TEST_F(SupervisorTest, RestartsAFailedChildAndReRegistersIt) {
  std::atomic<int> starts{0};
  caf::actor supervisor = Start({Spec("echo", RestartPolicy{}, &starts)});
  caf::actor first = CurrentChild(supervisor, "echo");
  ASSERT_TRUE(first);
  caf::anon_send(first, crash_atom::value);
  ASSERT_TRUE(WaitFor([&] { return Children(supervisor)[0].restarts == 1; }));
  EXPECT_EQ(starts.load(), 2);
  ChildStatus status = Children(supervisor)[0];
  EXPECT_EQ(status.state, ChildStatus::State::kRunning);
  EXPECT_THAT(status.last_failure, HasSubstr("boom"));

  // The directory now resolves the name to the new incarnation, which works.
  caf::actor second;
  ASSERT_TRUE(WaitFor([&] {
    absl::StatusOr<caf::actor> found =
        LookupActor(system(), directory_, "n0", "echo", absl::Seconds(1));
    second = found.ok() ? *found : caf::actor();
    return second && second != first;
  }));
  EXPECT_EQ(*Ask<Ping>(system(), second, absl::Seconds(5), Ping{3, "again"}), (Ping{3, "again"}));
}

TEST_F(SupervisorTest, EscalatesWhenTheRestartBudgetIsSpent) {
  RestartPolicy policy;
  policy.max_restarts = 2;
  policy.window = absl::Seconds(60);
  caf::actor supervisor = Start({Spec("flaky", policy)});
  caf::scoped_actor watcher{system()};
  watcher->monitor(supervisor);
  for (int crash = 0; crash < 3; ++crash) {
    caf::actor child;
    ASSERT_TRUE(WaitFor([&] { return (child = CurrentChild(supervisor, "flaky")) != nullptr; }));
    caf::anon_send(child, crash_atom::value);
    if (crash < 2) {
      ASSERT_TRUE(WaitFor([&] { return Children(supervisor)[0].restarts == crash + 1u; }));
    }
  }
  std::string reason;
  watcher->receive([&](const caf::down_msg& down) { reason = RenderError(down.reason); },
                   caf::after(std::chrono::seconds(10)) >> [] { ADD_FAILURE() << "no down"; });
  EXPECT_THAT(reason, HasSubstr("supervisor \"root\" gives up"));
  EXPECT_THAT(reason, HasSubstr("child \"flaky\""));
  EXPECT_THAT(reason, HasSubstr("failed 3 times within 1m"));
}

TEST_F(SupervisorTest, StopPolicyLeavesTheChildDownAndSiblingsRunning) {
  RestartPolicy stop;
  stop.kind = RestartPolicy::Kind::kStop;
  caf::actor supervisor = Start({Spec("fragile", stop), Spec("steady", RestartPolicy{})});
  caf::anon_send(CurrentChild(supervisor, "fragile"), crash_atom::value);
  ASSERT_TRUE(WaitFor([&] { return Children(supervisor)[0].state == ChildStatus::State::kFailed; }));
  EXPECT_EQ(Children(supervisor)[0].restarts, 0u);
  EXPECT_EQ(Children(supervisor)[1].state, ChildStatus::State::kRunning);
  EXPECT_TRUE(Ask<Ping>(system(), CurrentChild(supervisor, "steady"), absl::Seconds(5), Ping{1, ""})
                  .ok());
}

TEST_F(SupervisorTest, EscalatePolicyFailsTheSupervisorAtOnce) {
  RestartPolicy escalate;
  escalate.kind = RestartPolicy::Kind::kEscalate;
  caf::actor supervisor = Start({Spec("critical", escalate)});
  caf::scoped_actor watcher{system()};
  watcher->monitor(supervisor);
  caf::anon_send(CurrentChild(supervisor, "critical"), crash_atom::value);
  std::string reason;
  watcher->receive([&](const caf::down_msg& down) { reason = RenderError(down.reason); },
                   caf::after(std::chrono::seconds(10)) >> [] { ADD_FAILURE() << "no down"; });
  EXPECT_THAT(reason, HasSubstr("its policy is \"escalate\""));
}

TEST_F(SupervisorTest, NormalExitIsNotAFailure) {
  caf::actor supervisor = Start({Spec("once", RestartPolicy{})});
  caf::anon_send(CurrentChild(supervisor, "once"), shutdown_atom::value);
  ASSERT_TRUE(WaitFor([&] { return Children(supervisor)[0].state == ChildStatus::State::kStopped; }));
  EXPECT_EQ(Children(supervisor)[0].restarts, 0u);
}

TEST_F(SupervisorTest, ChildrenStopWithTheSupervisor) {
  caf::actor supervisor = Start({Spec("a", RestartPolicy{}), Spec("b", RestartPolicy{})});
  caf::scoped_actor watcher{system()};
  watcher->monitor(CurrentChild(supervisor, "a"));
  watcher->monitor(CurrentChild(supervisor, "b"));
  caf::anon_send_exit(supervisor, caf::exit_reason::user_shutdown);
  int downs = 0;
  for (int i = 0; i < 2; ++i) {
    watcher->receive([&](const caf::down_msg&) { ++downs; },
                     caf::after(std::chrono::seconds(10)) >> [] {});
  }
  EXPECT_EQ(downs, 2);
}

TEST_F(SupervisorTest, AChildThatCannotStartIsNamed) {
  std::atomic<int> starts{0};
  ChildSpec broken{"broken", "test", RestartPolicy{}, [](caf::actor_system&) {
                     return absl::StatusOr<caf::actor>(absl::InvalidArgumentError("no model"));
                   }};
  SupervisorOptions options;
  options.children = {Spec("fine", RestartPolicy{}, &starts), broken};
  absl::StatusOr<caf::actor> supervisor = StartSupervisor(system(), options);
  ASSERT_FALSE(supervisor.ok());
  EXPECT_EQ(supervisor.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(supervisor.status().message(),
              HasSubstr("cannot start actor \"broken\" (role test): no model"));
  EXPECT_EQ(starts.load(), 1);
}

// --- Nothing hangs on a dead actor ---------------------------------------------------------

struct ForwarderState {
  PendingWork pending;
};

// A forwarder owes its client an answer that depends on a worker.
caf::behavior Forwarder(caf::stateful_actor<ForwarderState>* self, caf::actor worker) {
  self->set_down_handler([self](caf::down_msg& down) { self->state.pending.OnDown(down, "worker"); });
  return {
      [self, worker](hang_atom) -> caf::result<Ping> {
        caf::response_promise promise = self->make_response_promise();
        uint64_t ticket = self->state.pending.Watch(
            self, worker, [promise](caf::error error) mutable { promise.deliver(error); });
        self->request(worker, caf::infinite, hang_atom::value)
            .then(
                [self, ticket, promise](Ping& ping) mutable {
                  if (self->state.pending.Done(ticket)) promise.deliver(ping);
                },
                [self, ticket, promise](caf::error& error) mutable {
                  if (self->state.pending.Done(ticket)) promise.deliver(error);
                });
        return promise;
      },
      [self](stats_atom) { return static_cast<uint64_t>(self->state.pending.size()); },
  };
}

TEST_F(SupervisorTest, WorkWaitingOnADeadWorkerFailsInsteadOfHanging) {
  caf::actor worker = system().spawn(Child);
  caf::actor forwarder = system().spawn(Forwarder, worker);
  runtime_->Own(forwarder);
  absl::StatusOr<Ping> answer;
  std::thread client([&] {
    answer = Ask<Ping>(system(), forwarder, absl::InfiniteDuration(), hang_atom::value);
  });
  // Wait until the forwarder holds the work, then kill the worker.
  ASSERT_TRUE(WaitFor([&] {
    return *Ask<uint64_t>(system(), forwarder, absl::Seconds(5), stats_atom::value) == 1;
  }));
  caf::anon_send_exit(worker, caf::exit_reason::kill);
  client.join();
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(answer.status().message(), HasSubstr("worker went down before finishing"));
  EXPECT_EQ(*Ask<uint64_t>(system(), forwarder, absl::Seconds(5), stats_atom::value), 0u);
}

TEST_F(SupervisorTest, AskFailsWhenItsTargetDies) {
  caf::actor worker = system().spawn(Child);
  absl::StatusOr<Ping> answer;
  std::thread client([&] {
    answer = Ask<Ping>(system(), worker, absl::InfiniteDuration(), hang_atom::value);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  caf::anon_send_exit(worker, caf::exit_reason::kill);
  client.join();
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(answer.status().message(), HasSubstr("went down before replying"));

  // A timeout is a DeadlineExceeded, and an empty handle is refused.
  caf::actor slow = system().spawn(Child);
  runtime_->Own(slow);
  EXPECT_EQ(Ask<Ping>(system(), slow, absl::Milliseconds(50), hang_atom::value).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(Ask<Ping>(system(), caf::actor(), absl::Seconds(1), Ping{}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace troupe::actors
