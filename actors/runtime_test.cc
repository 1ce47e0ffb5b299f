#include "actors/runtime.h"

#include <signal.h>

#include <thread>

#include "actors/messages.h"
#include "caf/all.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::actors {
namespace {

using ::testing::HasSubstr;

TEST(RuntimeTest, SizesTheSchedulerAndExportsTheThreadCounts) {
  RuntimeOptions options;
  options.node_name = "n7";
  options.scheduler_threads = 3;
  options.compute_threads = 2;
  options.load_middleman = false;
  int compute_threads_set = 0;
  options.set_compute_threads = [&](int n) {
    compute_threads_set = n;
    return absl::OkStatus();
  };
  std::unique_ptr<Runtime> runtime = *Runtime::Create(options);
  EXPECT_EQ(runtime->threads().scheduler, 3);
  EXPECT_EQ(runtime->threads().compute, 2);
  EXPECT_EQ(compute_threads_set, 2);
  EXPECT_EQ(caf::get_or(runtime->system().config(), "scheduler.max-threads", size_t{0}), 3u);
  EXPECT_EQ(runtime->node_name(), "n7");
  EXPECT_EQ(NodeNameOf(runtime->system()), "n7");
  EXPECT_EQ(MetricsOf(runtime->system()), &runtime->metrics());
  EXPECT_THAT(runtime->metrics().PrometheusText(),
              HasSubstr("troupe_scheduler_threads{node=\"n7\"} 3"));
}

TEST(RuntimeTest, AFailingComputeThreadSetterFailsCreation) {
  RuntimeOptions options;
  options.load_middleman = false;
  options.set_compute_threads = [](int) { return absl::InvalidArgumentError("no threads"); };
  EXPECT_EQ(Runtime::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RuntimeTest, UnknownSchedulerPolicyIsRefused) {
  RuntimeOptions options;
  options.load_middleman = false;
  options.scheduler_policy = "fifo";
  absl::StatusOr<std::unique_ptr<Runtime>> runtime = Runtime::Create(options);
  ASSERT_FALSE(runtime.ok());
  EXPECT_THAT(runtime.status().message(), HasSubstr("use \"sharing\" or \"stealing\""));
  options.scheduler_policy = "stealing";
  runtime = Runtime::Create(options);
  ASSERT_TRUE(runtime.ok());
  EXPECT_EQ(caf::get_or((*runtime)->system().config(), "scheduler.policy", caf::atom("")),
            caf::atom("stealing"));
}

TEST(RuntimeTest, PlainSystemsHaveNoTroupeContext) {
  caf::actor_system_config config;
  caf::actor_system system(config);
  EXPECT_EQ(MetricsOf(system), nullptr);
  EXPECT_EQ(NodeNameOf(system), "");
}

TEST(RuntimeTest, ShutdownStopsOwnedActorsAndAbandonsStuckOnes) {
  RuntimeOptions options;
  options.load_middleman = false;
  options.scheduler_threads = 2;
  std::unique_ptr<Runtime> runtime = *Runtime::Create(options);
  caf::actor owned = runtime->system().spawn(
      []() -> caf::behavior { return {[](const Ping& p) { return p; }}; });
  runtime->Own(owned);
  // Not owned, never stopped, and kept alive by a handle to itself: Shutdown must not wait for
  // it forever.
  runtime->system().spawn([](caf::stateful_actor<caf::actor>* self) -> caf::behavior {
    self->state = caf::actor_cast<caf::actor>(self);
    return {[](const Ping& p) { return p; }};
  });
  const absl::Time start = absl::Now();
  runtime->Shutdown(absl::Milliseconds(200));
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  runtime->Shutdown();  // Idempotent.
}

TEST(ShutdownSignalsTest, WaitTakesABlockedSignal) {
  ShutdownSignals signals = ShutdownSignals::Block();
  EXPECT_FALSE(signals.Wait(absl::Milliseconds(10)).has_value());
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);  // Blocked: stays pending until Wait takes it.
  std::optional<int> got = signals.Wait(absl::Seconds(5));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, SIGTERM);
}

}  // namespace
}  // namespace troupe::actors
