#include "actors/node.h"

#include <httplib.h>

#include <memory>

#include "actors/ask.h"
#include "actors/directory.h"
#include "actors/messages.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::actors {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kConfig[] = R"(
[[node]]
name = "n0"
host = "127.0.0.1"
metrics_port = 0

[[node]]
name = "n1"
host = "127.0.0.1"

[[actor]]
name = "echo"
role = "echo"
node = "n0"

[[actor]]
name = "w"
role = "gpu_worker"
node = "n1"
)";

NodeOptions Options(const std::string& name, const std::string& join = "") {
  NodeOptions options;
  options.config = *ParseClusterConfig(kConfig, "node_test.toml");
  options.name = name;
  options.join = join;
  options.scheduler_threads = 1;
  options.join_timeout = absl::Seconds(10);
  return options;
}

TEST(NodeTest, StartsItsActorsServesMetricsAndJoins) {
  absl::StatusOr<std::unique_ptr<Node>> n0 = Node::Start(Options("n0"));
  ASSERT_TRUE(n0.ok()) << n0.status();
  EXPECT_GT((*n0)->info().port, 0);
  ASSERT_GT((*n0)->metrics_port(), 0);
  EXPECT_THAT((*n0)->Describe(), HasSubstr("echo"));

  absl::StatusOr<std::unique_ptr<Node>> n1 =
      Node::Start(Options("n1", "127.0.0.1:" + std::to_string((*n0)->info().port)));
  ASSERT_TRUE(n1.ok()) << n1.status();
  absl::StatusOr<caf::actor> echo =
      LookupActor((*n1)->system(), (*n1)->directory(), "n0", "echo", absl::Seconds(10));
  ASSERT_TRUE(echo.ok()) << echo.status();
  EXPECT_TRUE(Ask<Ping>((*n1)->system(), *echo, absl::Seconds(10), Ping{1, "x"}).ok());

  httplib::Client client("127.0.0.1", (*n0)->metrics_port());
  httplib::Result metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_THAT(metrics->body, HasSubstr("troupe_cluster_members{node=\"n0\"} 2"));
  EXPECT_THAT(metrics->body, HasSubstr("actor=\"echo\",role=\"echo\""));

  (*n1)->Stop();
  (*n1)->Stop();  // Idempotent.
  EXPECT_FALSE((*n0)->Failure().has_value());
}

TEST(NodeTest, ANodeThatIsNotInTheConfigIsNamed) {
  absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(Options("n9"));
  ASSERT_FALSE(node.ok());
  EXPECT_EQ(node.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(node.status().message(), HasSubstr("node \"n9\" is not in node_test.toml"));
  EXPECT_THAT(node.status().message(), HasSubstr("it has: n0, n1"));
}

TEST(NodeTest, AnEphemeralSeedNeedsAnExplicitJoin) {
  absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(Options("n1"));
  ASSERT_FALSE(node.ok());
  EXPECT_THAT(node.status().message(), HasSubstr("pass --join host:port"));
}

TEST(NodeTest, TheSupervisorGivingUpFailsTheNode) {
  NodeOptions options = Options("n0");
  options.config.actors[0].restart.kind = RestartPolicy::Kind::kEscalate;
  options.metrics_port = -1;
  std::unique_ptr<Node> node = std::move(*Node::Start(options));
  caf::actor echo = *LookupActor(node->system(), node->directory(), "n0", "echo", absl::Seconds(5));
  caf::anon_send(echo, crash_atom::value);
  for (int i = 0; i < 500 && !node->Failure(); ++i) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_TRUE(node->Failure().has_value());
  EXPECT_THAT(*node->Failure(), HasSubstr("gives up: child \"echo\""));
}

TEST(ParseHostPortTest, AcceptsHostPortOnly) {
  EXPECT_EQ(*ParseHostPort("127.0.0.1:4100"), std::make_pair(std::string("127.0.0.1"), uint16_t{4100}));
  EXPECT_EQ(ParseHostPort("::1:80")->first, "::1");
  for (const char* bad : {"", "host", "host:", ":80", "h:0", "h:65536", "h:x"}) {
    absl::StatusOr<std::pair<std::string, uint16_t>> parsed = ParseHostPort(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_THAT(parsed.status().message(), HasSubstr("write host:port"));
  }
}

}  // namespace
}  // namespace troupe::actors
