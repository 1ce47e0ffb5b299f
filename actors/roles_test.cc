#include "actors/roles.h"

#include <memory>
#include <thread>

#include "actors/ask.h"
#include "actors/directory.h"
#include "actors/messages.h"
#include "actors/runtime.h"
#include "actors/test_runtime.h"
#include "caf/all.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::actors {
namespace {

using ::testing::HasSubstr;

ClusterConfig Config(const std::string& actors) {
  return *ParseClusterConfig("[[node]]\nname = \"n0\"\nhost = \"127.0.0.1\"\n" + actors,
                             "roles.toml");
}

TEST(RoleCatalogTest, AcceptsKnownRolesAndParameters) {
  EXPECT_TRUE(BuiltinRoles()
                  .Check(Config("[[actor]]\nname = \"e\"\nrole = \"echo\"\nnode = \"n0\"\n"
                                "[actor.params]\ndelay_ms = 3\n"))
                  .ok());
}

TEST(RoleCatalogTest, UnknownRolesAndParametersNameTheFix) {
  absl::Status unknown =
      BuiltinRoles().Check(Config("[[actor]]\nname = \"e\"\nrole = \"ecko\"\nnode = \"n0\"\n"));
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.message(), HasSubstr("roles.toml"));
  EXPECT_THAT(unknown.message(), HasSubstr("actor[0].role = \"ecko\": unknown role; use one of"));
  EXPECT_THAT(unknown.message(), HasSubstr("echo"));

  absl::Status param = BuiltinRoles().Check(
      Config("[[actor]]\nname = \"e\"\nrole = \"echo\"\nnode = \"n0\"\n[actor.params]\n"
             "delay = 3\n"));
  EXPECT_THAT(param.message(),
              HasSubstr("actor[0].params.delay: role echo takes no such parameter; it takes "
                        "delay_ms"));
  absl::Status none = BuiltinRoles().Check(
      Config("[[actor]]\nname = \"w\"\nrole = \"gpu_worker\"\nnode = \"n0\"\n[actor.params]\n"
             "x = 1\n"));
  EXPECT_THAT(none.message(), HasSubstr("it takes none"));
}

TEST(ParamsTest, TypedAccessNamesTheEntry) {
  ClusterConfig config = Config(
      "[[actor]]\nname = \"e\"\nrole = \"echo\"\nnode = \"n0\"\n[actor.params]\n"
      "delay_ms = \"soon\"\nlabel = \"x\"\n");
  const ActorSpec& spec = config.actors[0];
  absl::StatusOr<int64_t> delay = IntParam(spec, "delay_ms", 0);
  ASSERT_FALSE(delay.ok());
  EXPECT_THAT(delay.status().message(),
              HasSubstr("actor[0].params.delay_ms must be an integer for role echo"));
  EXPECT_EQ(*IntParam(spec, "missing", 7), 7);
  EXPECT_EQ(*StringParam(spec, "label", ""), "x");
}

class RolesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    runtime_ = StartTestRuntime();
    directory_ = StartTestDirectory(*runtime_);
  }

  caf::actor_system& system() { return runtime_->system(); }

  absl::StatusOr<caf::actor> Start(const std::string& role, const std::string& name,
                                   const std::string& params = "") {
    config_ = Config("[[actor]]\nname = \"" + name + "\"\nrole = \"" + role +
                     "\"\nnode = \"n0\"\n" + (params.empty() ? "" : "[actor.params]\n" + params));
    absl::StatusOr<caf::actor> actor = catalog_.Find(role)->start(
        RoleContext{system(), config_.actors[0], directory_, nullptr});
    if (actor.ok()) {
      runtime_->Own(*actor);
      EXPECT_TRUE(RegisterActor(system(), directory_, name, role, *actor).ok());
    }
    return actor;
  }

  RoleCatalog catalog_ = BuiltinRoles();
  ClusterConfig config_;
  std::unique_ptr<Runtime> runtime_;
  caf::actor directory_;
};

TEST_F(RolesTest, EchoAnswersAfterItsDelayAndCounts) {
  caf::actor echo = *Start("echo", "e", "delay_ms = 50\n");
  const absl::Time start = absl::Now();
  absl::StatusOr<Ping> pong = Ask<Ping>(system(), echo, absl::Seconds(5), Ping{5, "x"});
  ASSERT_TRUE(pong.ok()) << pong.status();
  EXPECT_EQ(*pong, (Ping{5, "x"}));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(50));
  EXPECT_EQ(*Ask<uint64_t>(system(), echo, absl::Seconds(5), stats_atom::value), 1u);
}

TEST_F(RolesTest, EchoCrashesOnRequest) {
  caf::actor echo = *Start("echo", "e");
  caf::scoped_actor self{system()};
  self->monitor(echo);
  caf::anon_send(echo, crash_atom::value);
  std::string reason;
  self->receive([&](const caf::down_msg& down) { reason = RenderError(down.reason); });
  EXPECT_THAT(reason, HasSubstr("echo \"e\" crashed on request"));
}

TEST_F(RolesTest, ReflectorReturnsAnyMessage) {
  caf::actor mirror = *Start("reflector", "m");
  EXPECT_EQ(*Ask<std::string>(system(), mirror, absl::Seconds(5), std::string("abc")), "abc");
  EXPECT_EQ(*Ask<NodeInfo>(system(), mirror, absl::Seconds(5), NodeInfo{"a", "b", 1, {2}}),
            (NodeInfo{"a", "b", 1, {2}}));
}

TEST_F(RolesTest, LoadFeedsItsTargets) {
  caf::actor worker = *Start("gpu_worker", "w0");
  caf::actor load = *Start("load", "load", "targets = \"w0\"\ninterval_ms = 5\nwork_ms = 1\n");
  absl::StatusOr<WorkerStats> stats;
  for (int i = 0; i < 500; ++i) {
    stats = Ask<WorkerStats>(system(), worker, absl::Seconds(5), stats_atom::value);
    if (stats.ok() && stats->items_done >= 3) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(stats.ok());
  EXPECT_GE(stats->items_done, 3u);
  EXPECT_THAT(runtime_->metrics().PrometheusText(),
              HasSubstr("troupe_load_items_total{node=\"n0\",actor=\"load\",outcome=\"ok\"}"));
}

TEST_F(RolesTest, BadParametersFailTheStart) {
  absl::StatusOr<caf::actor> no_targets = Start("load", "load");
  ASSERT_FALSE(no_targets.ok());
  EXPECT_THAT(no_targets.status().message(), HasSubstr("role load needs targets"));
  absl::StatusOr<caf::actor> bad_interval =
      Start("load", "load", "targets = \"w\"\ninterval_ms = 0\n");
  EXPECT_FALSE(bad_interval.ok());
  absl::StatusOr<caf::actor> wrong_type = Start("echo", "e", "delay_ms = 1.5\n");
  ASSERT_FALSE(wrong_type.ok());
  EXPECT_THAT(wrong_type.status().message(), HasSubstr("must be an integer"));
}

}  // namespace
}  // namespace troupe::actors
