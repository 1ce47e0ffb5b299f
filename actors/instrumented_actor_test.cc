#include "actors/instrumented_actor.h"

#include <atomic>
#include <memory>
#include <thread>

#include "actors/ask.h"
#include "actors/messages.h"
#include "actors/runtime.h"
#include "actors/test_runtime.h"
#include "caf/all.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::actors {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A gate blocks the actor inside a handler until opened, so messages pile up behind it.
struct Gate {
  std::atomic<bool> open{false};
};

caf::behavior Gated(caf::stateful_actor<int, InstrumentedActor>* self,
                    std::shared_ptr<Gate> gate) {
  self->Instrument("gated", "test");
  return {
      [gate](hang_atom) {
        while (!gate->open.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      },
      [](const Ping& ping) { return ping; },
  };
}

class InstrumentedActorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    runtime_ = StartTestRuntime();
  }

  std::string Metrics() { return runtime_->metrics().PrometheusText(); }

  std::unique_ptr<Runtime> runtime_;
};

TEST_F(InstrumentedActorTest, ExportsMailboxDepthAndMessagesHandled) {
  auto gate = std::make_shared<Gate>();
  caf::actor actor = runtime_->system().spawn(Gated, gate);
  runtime_->Own(actor);
  caf::anon_send(actor, hang_atom::value);
  for (int i = 0; i < 10; ++i) caf::anon_send(actor, Ping{static_cast<uint64_t>(i), ""});
  // The first message is being handled and ten wait behind it: eleven not yet handled.
  const std::string waiting =
      "troupe_actor_mailbox_depth{node=\"n0\",actor=\"gated\",role=\"test\"} 11";
  for (int i = 0; i < 500 && Metrics().find(waiting) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_THAT(Metrics(), HasSubstr(waiting));
  gate->open = true;
  ASSERT_TRUE(Ask<Ping>(runtime_->system(), actor, absl::Seconds(5), Ping{99, ""}).ok());
  EXPECT_THAT(Metrics(),
              HasSubstr("troupe_actor_mailbox_depth{node=\"n0\",actor=\"gated\",role=\"test\"} 0"));
  EXPECT_THAT(Metrics(),
              HasSubstr("troupe_actor_messages_total{node=\"n0\",actor=\"gated\",role=\"test\"} 12"));
}

TEST_F(InstrumentedActorTest, MetricsLeaveWithTheActor) {
  caf::actor actor = runtime_->system().spawn(Gated, std::make_shared<Gate>());
  ASSERT_TRUE(Ask<Ping>(runtime_->system(), actor, absl::Seconds(5), Ping{1, ""}).ok());
  EXPECT_THAT(Metrics(), HasSubstr("actor=\"gated\""));
  caf::scoped_actor self{runtime_->system()};
  self->monitor(actor);
  caf::anon_send_exit(actor, caf::exit_reason::kill);
  self->receive([](const caf::down_msg&) {});
  actor = nullptr;
  EXPECT_THAT(Metrics(), Not(HasSubstr("actor=\"gated\"")));
}

TEST_F(InstrumentedActorTest, UnhandledMessagesGetAnErrorThatNamesTheActor) {
  caf::actor actor = runtime_->system().spawn(Gated, std::make_shared<Gate>());
  runtime_->Own(actor);
  absl::StatusOr<Ping> reply =
      Ask<Ping>(runtime_->system(), actor, absl::Seconds(5), std::string("what is this"), 42);
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reply.status().message(),
              HasSubstr("actor \"gated\" (role test) on node \"n0\" does not handle the message"));
  EXPECT_THAT(reply.status().message(), HasSubstr("what is this"));
  // The actor is unharmed.
  EXPECT_TRUE(Ask<Ping>(runtime_->system(), actor, absl::Seconds(5), Ping{1, ""}).ok());
}

TEST_F(InstrumentedActorTest, WorksWithoutARegistry) {
  caf::actor_system_config config;
  caf::actor_system system(config);
  caf::actor actor = system.spawn(Gated, std::make_shared<Gate>());
  caf::scoped_actor self{system};
  bool answered = false;
  self->request(actor, caf::infinite, Ping{1, ""}).receive([&](const Ping&) { answered = true; },
                                                          [](caf::error&) {});
  EXPECT_TRUE(answered);
  caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
}

}  // namespace
}  // namespace troupe::actors
