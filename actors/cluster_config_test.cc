#include "actors/cluster_config.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::actors {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr char kGood[] = R"(
[cluster]
name = "two-nodes"

[[node]]
name = "n0"
host = "127.0.0.1"
port = 4100
gpus = [0, 1]
scheduler_threads = 2
scheduler_policy = "stealing"
torch_threads = 3
metrics_port = 9100

[[node]]
name = "n1"
host = "127.0.0.1"
port = 0

[[actor]]
name = "worker0"
role = "gpu_worker"
node = "n0"
device = "cuda:1"
restart = "escalate"

[[actor]]
name = "echo"
role = "echo"
node = "n1"
max_restarts = 7
restart_window_s = 2.5
[actor.params]
delay_ms = 5
label = "hello"
ratio = 0.5
loud = true
)";

std::string ErrorOf(const std::string& text) {
  absl::StatusOr<ClusterConfig> config = ParseClusterConfig(text, "bad.toml");
  EXPECT_FALSE(config.ok()) << "expected an error for:\n" << text;
  if (config.ok()) return "";
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(config.status().message());
}

TEST(ClusterConfigTest, ParsesEveryField) {
  absl::StatusOr<ClusterConfig> config = ParseClusterConfig(kGood, "good.toml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->name, "two-nodes");
  ASSERT_EQ(config->nodes.size(), 2u);
  const NodeSpec& n0 = config->nodes[0];
  EXPECT_EQ(n0.info.name, "n0");
  EXPECT_EQ(n0.info.host, "127.0.0.1");
  EXPECT_EQ(n0.info.port, 4100);
  EXPECT_EQ(n0.info.gpus, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(n0.scheduler_threads, 2);
  EXPECT_EQ(n0.torch_threads, 3);
  EXPECT_EQ(n0.scheduler_policy, "stealing");
  EXPECT_EQ(config->nodes[1].scheduler_policy, "");
  EXPECT_EQ(n0.metrics_port, 9100);
  EXPECT_EQ(config->nodes[1].metrics_port, -1);
  ASSERT_EQ(config->actors.size(), 2u);
  const ActorSpec& worker = config->actors[0];
  EXPECT_EQ(worker.role, "gpu_worker");
  EXPECT_EQ(worker.device, "cuda:1");
  EXPECT_EQ(worker.restart.kind, RestartPolicy::Kind::kEscalate);
  const ActorSpec& echo = config->actors[1];
  EXPECT_EQ(echo.device, "cpu");
  EXPECT_EQ(echo.restart.kind, RestartPolicy::Kind::kRestart);
  EXPECT_EQ(echo.restart.max_restarts, 7);
  EXPECT_EQ(echo.restart.window, absl::Milliseconds(2500));
  EXPECT_EQ(std::get<int64_t>(echo.params.at("delay_ms")), 5);
  EXPECT_EQ(std::get<std::string>(echo.params.at("label")), "hello");
  EXPECT_EQ(std::get<double>(echo.params.at("ratio")), 0.5);
  EXPECT_EQ(std::get<bool>(echo.params.at("loud")), true);
  EXPECT_EQ(config->FindNode("n1"), &config->nodes[1]);
  EXPECT_EQ(config->FindNode("n9"), nullptr);
  ASSERT_EQ(config->ActorsOn("n1").size(), 1u);
  EXPECT_EQ(config->ActorsOn("n1")[0]->name, "echo");
}

TEST(ClusterConfigTest, LoadsFromFileAndNamesMissingFile) {
  std::string path = ::testing::TempDir() + "/cluster_config_test.toml";
  std::ofstream(path) << kGood;
  absl::StatusOr<ClusterConfig> config = LoadClusterConfig(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->source, path);

  absl::StatusOr<ClusterConfig> missing = LoadClusterConfig("/nonexistent/x.toml");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(),
              AllOf(HasSubstr("/nonexistent/x.toml"), HasSubstr("--config")));
}

TEST(ClusterConfigTest, SyntaxErrorNamesFileAndLine) {
  EXPECT_THAT(ErrorOf("[[node]]\nname = \"n0\nhost = 1\n"),
              AllOf(HasSubstr("bad.toml:2:"), HasSubstr("TOML syntax error")));
}

TEST(ClusterConfigTest, UnknownKeySuggestsTheNearestOne) {
  EXPECT_THAT(ErrorOf("[[node]]\nname = \"n0\"\nhost = \"h\"\nprot = 4000\n"),
              AllOf(HasSubstr("bad.toml"), HasSubstr("node[0].prot: unknown key"),
                    HasSubstr("did you mean \"port\"")));
  EXPECT_THAT(ErrorOf("[[nodes]]\nname = \"n0\"\n"),
              AllOf(HasSubstr("nodes: unknown key"), HasSubstr("did you mean \"node\"")));
  EXPECT_THAT(ErrorOf("[[node]]\nname = \"n0\"\nhost = \"h\"\n[[actor]]\nname = \"a\"\n"
                      "role = \"echo\"\nnode = \"n0\"\nzzzzzzzz = 1\n"),
              AllOf(HasSubstr("actor[0].zzzzzzzz: unknown key"), HasSubstr("allowed keys")));
}

TEST(ClusterConfigTest, DuplicateNodeIsAnError) {
  EXPECT_THAT(ErrorOf("[[node]]\nname = \"n0\"\nhost = \"a\"\n"
                      "[[node]]\nname = \"n0\"\nhost = \"b\"\n"),
              AllOf(HasSubstr("node[1].name = \"n0\""), HasSubstr("duplicate node"),
                    HasSubstr("also node[0]"), HasSubstr("unique name")));
}

TEST(ClusterConfigTest, PortClashOnOneHostIsAnError) {
  EXPECT_THAT(ErrorOf("[[node]]\nname = \"n0\"\nhost = \"h\"\nport = 4000\n"
                      "[[node]]\nname = \"n1\"\nhost = \"h\"\nport = 4000\n"),
              AllOf(HasSubstr("node[1].port = 4000"), HasSubstr("port clash with node[0].port")));
  // A metrics endpoint clashes with a node port too.
  EXPECT_THAT(ErrorOf("[[node]]\nname = \"n0\"\nhost = \"h\"\nport = 4000\n"
                      "[[node]]\nname = \"n1\"\nhost = \"h\"\nmetrics_port = 4000\n"),
              HasSubstr("node[1].metrics_port = 4000: port clash"));
  // The same port on different hosts, and port 0 twice, are fine.
  EXPECT_TRUE(ParseClusterConfig("[[node]]\nname = \"n0\"\nhost = \"a\"\nport = 4000\n"
                                 "[[node]]\nname = \"n1\"\nhost = \"b\"\nport = 4000\n"
                                 "[[node]]\nname = \"n2\"\nhost = \"a\"\n"
                                 "[[node]]\nname = \"n3\"\nhost = \"a\"\n",
                                 "ok.toml")
                  .ok());
}

TEST(ClusterConfigTest, ActorOnMissingNodeListsTheNodes) {
  EXPECT_THAT(ErrorOf("[[node]]\nname = \"n0\"\nhost = \"h\"\n"
                      "[[actor]]\nname = \"a\"\nrole = \"echo\"\nnode = \"n9\"\n"),
              AllOf(HasSubstr("actor[0].node = \"n9\": no such node"),
                    HasSubstr("use one of \"n0\"")));
}

TEST(ClusterConfigTest, ReportsEveryProblemAtOnce) {
  std::string message = ErrorOf(
      "[[node]]\nname = \"bad name\"\nhost = 5\nport = 70000\ngpus = [0, 0]\n"
      "[[actor]]\nrole = \"echo\"\nnode = \"bad name\"\ndevice = \"gpu0\"\nrestart = \"often\"\n");
  EXPECT_THAT(message, HasSubstr("problems"));
  EXPECT_THAT(message, HasSubstr("node[0].name = \"bad name\": not a valid name"));
  EXPECT_THAT(message, HasSubstr("node[0].host: is an integer"));
  EXPECT_THAT(message, HasSubstr("node[0].port = 70000: out of range"));
  EXPECT_THAT(message, HasSubstr("node[0].gpus: lists GPU 0 twice"));
  EXPECT_THAT(message, HasSubstr("actor[0].name: missing"));
  EXPECT_THAT(message, HasSubstr("actor[0].device = \"gpu0\": not a device"));
  EXPECT_THAT(message, HasSubstr("actor[0].restart = \"often\": unknown policy"));
  EXPECT_THAT(ErrorOf("[[node]]\nname = \"n\"\nhost = \"h\"\nscheduler_policy = \"fifo\"\n"),
              HasSubstr("node[0].scheduler_policy = \"fifo\": unknown policy; use \"sharing\""));
}

TEST(ClusterConfigTest, DeviceMustBeAGpuOfItsNode) {
  EXPECT_THAT(ErrorOf("[[node]]\nname = \"n0\"\nhost = \"h\"\ngpus = [0]\n"
                      "[[actor]]\nname = \"w\"\nrole = \"gpu_worker\"\nnode = \"n0\"\n"
                      "device = \"cuda:3\"\n"),
              AllOf(HasSubstr("does not list GPU 3"), HasSubstr("add 3 to its gpus")));
}

TEST(ClusterConfigTest, EmptyConfigNeedsANode) {
  EXPECT_THAT(ErrorOf(""), HasSubstr("no nodes declared"));
}

TEST(ClusterConfigTest, WrongShapesAreReported) {
  EXPECT_THAT(ErrorOf("node = 3\n"), HasSubstr("node: is not a list of tables"));
  EXPECT_THAT(ErrorOf("cluster = 3\n[[node]]\nname = \"n\"\nhost = \"h\"\n"),
              HasSubstr("cluster: is an integer"));
  EXPECT_THAT(ErrorOf("[[node]]\nname = \"n\"\nhost = \"h\"\n[[actor]]\nname = \"a\"\n"
                      "role = \"r\"\nnode = \"n\"\nparams = 4\n"),
              HasSubstr("actor[0].params: is an integer"));
  EXPECT_THAT(ErrorOf("[[node]]\nname = \"n\"\nhost = \"h\"\n[[actor]]\nname = \"a\"\n"
                      "role = \"r\"\nnode = \"n\"\nrestart_window_s = -1\n"),
              HasSubstr("restart_window_s: not a positive number"));
}

TEST(ParseDeviceTest, AcceptsCpuAndCudaIndices) {
  EXPECT_EQ(*ParseDevice("cpu"), -1);
  EXPECT_EQ(*ParseDevice("cuda:0"), 0);
  EXPECT_EQ(*ParseDevice("cuda:12"), 12);
  for (const char* bad : {"", "gpu", "cuda:", "cuda:-1", "cuda:1x", "CPU"}) {
    EXPECT_FALSE(ParseDevice(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace troupe::actors
