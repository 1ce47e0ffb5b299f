// Real processes on 127.0.0.1, started by the test: a cluster of `troupe node` processes that
// this test joins as one more node ("probe").
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "actors/ask.h"
#include "actors/directory.h"
#include "actors/message_samples.h"
#include "actors/messages.h"
#include "actors/runtime.h"
#include "caf/all.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tools/child_process.h"

namespace troupe::tests {

using tools::ChildProcess;
using tools::TroupeBinary;

namespace {

using actors::MembershipEvent;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

constexpr absl::Duration kStartTimeout = absl::Seconds(60);

constexpr char kConfig[] = R"(
[cluster]
name = "mp"

[[node]]
name = "n0"
host = "127.0.0.1"

[[node]]
name = "n1"
host = "127.0.0.1"

[[node]]
name = "n2"
host = "127.0.0.1"

[[actor]]
name = "echo0"
role = "echo"
node = "n0"

[[actor]]
name = "echo1"
role = "echo"
node = "n1"

[[actor]]
name = "echo2"
role = "echo"
node = "n2"

[[actor]]
name = "mirror"
role = "reflector"
node = "n0"
)";

std::string WriteFile(const std::string& name, const std::string& text) {
  std::string path = absl::StrCat(::testing::TempDir(), "/", getpid(), "_", name);
  std::ofstream(path) << text;
  return path;
}

// The port from a line "... listening on HOST:PORT".
uint16_t PortOf(const std::string& line) {
  int port = 0;
  EXPECT_TRUE(absl::SimpleAtoi(line.substr(line.rfind(':') + 1), &port)) << line;
  return static_cast<uint16_t>(port);
}

std::unique_ptr<ChildProcess> StartNode(const std::string& config, const std::string& name,
                                        const std::string& join, uint16_t* port) {
  std::vector<std::string> argv = {TroupeBinary(), "node", "--config=" + config,
                                   "--node=" + name, "--scheduler_threads=1", "--torch_threads=1"};
  if (!join.empty()) argv.push_back("--join=" + join);
  absl::StatusOr<std::unique_ptr<ChildProcess>> process = ChildProcess::Start(argv);
  EXPECT_TRUE(process.ok()) << process.status();
  absl::StatusOr<std::string> listening = (*process)->WaitForLine("listening on", kStartTimeout);
  EXPECT_TRUE(listening.ok()) << listening.status();
  if (listening.ok()) *port = PortOf(*listening);
  EXPECT_TRUE((*process)->WaitForLine("ready", kStartTimeout).ok()) << (*process)->Output();
  return std::move(*process);
}

// Probe is this test process as a member of the cluster.
struct Probe {
  std::unique_ptr<actors::Runtime> runtime;
  caf::actor directory;

  explicit Probe(uint16_t seed_port) {
    actors::RuntimeOptions options;
    options.node_name = "probe";
    options.scheduler_threads = 2;
    runtime = *actors::Runtime::Create(options);
    directory = actors::SpawnDirectory(system(), {actors::NodeInfo{"probe", "127.0.0.1", 0, {}}});
    runtime->Own(directory);
    EXPECT_TRUE(actors::PublishDirectory(system(), directory, "127.0.0.1", 0).ok());
    absl::StatusOr<std::vector<actors::NodeInfo>> members =
        actors::JoinCluster(system(), directory, "127.0.0.1", seed_port, absl::Seconds(30));
    EXPECT_TRUE(members.ok()) << members.status();
  }

  caf::actor_system& system() { return runtime->system(); }

  caf::actor Lookup(const std::string& node, const std::string& name) {
    absl::StatusOr<caf::actor> actor =
        actors::LookupActor(system(), directory, node, name, absl::Seconds(30));
    EXPECT_TRUE(actor.ok()) << actor.status();
    return actor.ok() ? *actor : caf::actor();
  }

  std::vector<std::string> Members() {
    absl::StatusOr<std::vector<actors::NodeInfo>> members =
        actors::ListMembers(system(), directory);
    EXPECT_TRUE(members.ok()) << members.status();
    std::vector<std::string> names;
    for (const actors::NodeInfo& n : members.value_or(std::vector<actors::NodeInfo>{})) {
      names.push_back(n.name);
    }
    return names;
  }
};

class MultiProcessTest : public ::testing::Test {
 protected:
  void SetUp() override { config_ = WriteFile("cluster.toml", kConfig); }
  std::string config_;
};

TEST_F(MultiProcessTest, SurvivorsSeeAKilledNodeGoDownAndGoOn) {
  uint16_t p0 = 0, p1 = 0, p2 = 0;
  std::unique_ptr<ChildProcess> n0 = StartNode(config_, "n0", "", &p0);
  const std::string seed = absl::StrCat("127.0.0.1:", p0);
  std::unique_ptr<ChildProcess> n1 = StartNode(config_, "n1", seed, &p1);
  std::unique_ptr<ChildProcess> n2 = StartNode(config_, "n2", seed, &p2);
  Probe probe(p0);
  EXPECT_THAT(probe.Members(), UnorderedElementsAre("probe", "n0", "n1", "n2"));

  caf::scoped_actor events{probe.system()};
  ASSERT_TRUE((actors::Ask<std::vector<actors::NodeInfo>>(
                   probe.system(), probe.directory, absl::Seconds(5),
                   actors::subscribe_atom::value, caf::actor_cast<caf::actor>(events)))
                  .ok());

  // Every node's actors answer, whichever node they live on.
  for (const auto& [node, name] : std::vector<std::pair<std::string, std::string>>{
           {"n0", "echo0"}, {"n1", "echo1"}, {"n2", "echo2"}}) {
    absl::StatusOr<actors::Ping> pong = actors::Ask<actors::Ping>(
        probe.system(), probe.Lookup(node, name), absl::Seconds(10), actors::Ping{1, node});
    ASSERT_TRUE(pong.ok()) << node << ": " << pong.status();
    EXPECT_EQ(pong->payload, node);
  }

  // Work is waiting on n1 when n1 dies.
  caf::actor echo1 = probe.Lookup("n1", "echo1");
  absl::StatusOr<actors::Ping> waiting;
  std::thread client([&] {
    waiting = actors::Ask<actors::Ping>(probe.system(), echo1, absl::InfiniteDuration(),
                                        actors::hang_atom::value);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  n1->Signal(SIGKILL);
  client.join();  // Must not hang.
  ASSERT_FALSE(waiting.ok());
  EXPECT_EQ(waiting.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(waiting.status().message(), HasSubstr("went down before replying"));

  MembershipEvent down;
  events->receive([&](const MembershipEvent& e) { down = e; },
                  caf::after(std::chrono::seconds(30)) >> [] { ADD_FAILURE() << "no event"; });
  EXPECT_EQ(down.kind, MembershipEvent::Kind::kDown);
  EXPECT_EQ(down.node.name, "n1");
  EXPECT_EQ(*n1->Wait(absl::Seconds(10)), 128 + SIGKILL);

  // The survivors saw it too, and go on.
  EXPECT_TRUE(n0->WaitForLine("node n1 is down", absl::Seconds(30)).ok()) << n0->Output();
  EXPECT_TRUE(n2->WaitForLine("node n1 is down", absl::Seconds(30)).ok()) << n2->Output();
  EXPECT_THAT(probe.Members(), UnorderedElementsAre("probe", "n0", "n2"));
  absl::StatusOr<actors::Ping> still = actors::Ask<actors::Ping>(
      probe.system(), probe.Lookup("n2", "echo2"), absl::Seconds(10), actors::Ping{2, "on"});
  EXPECT_TRUE(still.ok()) << still.status();
  absl::StatusOr<caf::actor> gone =
      actors::LookupActor(probe.system(), probe.directory, "n1", "echo1", absl::Seconds(1));
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kDeadlineExceeded);

  // n2 leaves politely on SIGTERM: a "left" event, exit code 0.
  n2->Signal(SIGTERM);
  MembershipEvent left;
  events->receive([&](const MembershipEvent& e) { left = e; },
                  caf::after(std::chrono::seconds(30)) >> [] { ADD_FAILURE() << "no event"; });
  EXPECT_EQ(left.kind, MembershipEvent::Kind::kLeft);
  EXPECT_EQ(left.node.name, "n2");
  EXPECT_EQ(*n2->Wait(absl::Seconds(30)), 0) << n2->Output();
  EXPECT_THAT(n2->Output(), HasSubstr("node n2 stopped cleanly"));
  n0->Signal(SIGINT);
  EXPECT_EQ(*n0->Wait(absl::Seconds(30)), 0) << n0->Output();
}

// Sends one value of every registered message type to another process and back.
template <class Tuple, size_t... I>
void RoundTripAll(Probe& probe, const caf::actor& mirror, const Tuple& samples,
                  std::index_sequence<I...>) {
  auto round_trip = [&](const auto& sample) {
    using T = std::decay_t<decltype(sample)>;
    absl::StatusOr<T> back = actors::Ask<T>(probe.system(), mirror, absl::Seconds(10), sample);
    ASSERT_TRUE(back.ok()) << caf::type_name_by_id<caf::type_id<T>::value>::value << ": "
                           << back.status();
    EXPECT_TRUE(*back == sample) << caf::type_name_by_id<caf::type_id<T>::value>::value;
  };
  (round_trip(std::get<I>(samples)), ...);
}

TEST_F(MultiProcessTest, EveryMessageTypeCrossesProcesses) {
  uint16_t p0 = 0;
  std::unique_ptr<ChildProcess> n0 = StartNode(config_, "n0", "", &p0);
  Probe probe(p0);
  caf::actor mirror = probe.Lookup("n0", "mirror");
  ASSERT_TRUE(mirror);
  // Actor handles inside messages travel too: this one lives in the probe.
  auto samples = actors::MessageSamples(probe.directory);
  RoundTripAll(probe, mirror, samples,
               std::make_index_sequence<std::tuple_size_v<decltype(samples)>>());
}

TEST_F(MultiProcessTest, BadMessagesAreRefusedAndTheNodeGoesOn) {
  uint16_t p0 = 0;
  std::unique_ptr<ChildProcess> n0 = StartNode(config_, "n0", "", &p0);
  Probe probe(p0);
  caf::actor echo = probe.Lookup("n0", "echo0");

  // A message the actor does not handle: an error that names the actor and the message.
  absl::StatusOr<actors::Ping> refused =
      actors::Ask<actors::Ping>(probe.system(), echo, absl::Seconds(10), std::string("hello?"));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("actor \"echo0\" (role echo) on node \"n0\" does not handle the message"));
  EXPECT_THAT(refused.status().message(), HasSubstr("hello?"));

  // Garbage bytes on the node's port: the connection is dropped, the node is unharmed.
  for (int attempt = 0; attempt < 3; ++attempt) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(p0);
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    std::string junk(4096, '\0');
    for (size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<char>((i * 7919 + attempt) % 251);
    EXPECT_GT(write(fd, junk.data(), junk.size()), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    close(fd);
  }
  absl::StatusOr<actors::Ping> pong =
      actors::Ask<actors::Ping>(probe.system(), echo, absl::Seconds(10), actors::Ping{9, "ok"});
  ASSERT_TRUE(pong.ok()) << pong.status() << "\n" << n0->Output();
  // A fresh connection still works too.
  std::unique_ptr<ChildProcess> ping =
      std::move(*ChildProcess::Start({TroupeBinary(), "ping", absl::StrCat("--join=127.0.0.1:", p0),
                                      "--target=n0/echo0", "--count=5"}));
  EXPECT_EQ(*ping->Wait(absl::Seconds(60)), 0) << ping->Output();
  EXPECT_THAT(ping->Output(), HasSubstr("5/5 replies"));
}

TEST_F(MultiProcessTest, BadStartsExitWithTheReason) {
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  std::string bad_config = WriteFile("bad.toml", "[[node]]\nname = \"n0\"\nhost = \"127.0.0.1\"\n"
                                                 "[[actor]]\nname = \"a\"\nrole = \"nope\"\n"
                                                 "node = \"n0\"\n");
  std::string bad_host = WriteFile("host.toml", "[[node]]\nname = \"n0\"\nhost = \"10.255.255.1\"\n");
  std::vector<Case> cases = {
      {{"node", "--config=" + config_, "--node=n9"}, "node \"n9\" is not in"},
      {{"node", "--config=/nonexistent.toml", "--node=n0"}, "cannot read cluster config"},
      {{"node", "--config=" + bad_config, "--node=n0"}, "actor[0].role = \"nope\": unknown role"},
      {{"node", "--config=" + bad_host, "--node=n0"}, "cannot listen on 10.255.255.1:0"},
      {{"node", "--config=" + config_, "--node=n1", "--join=127.0.0.1:1", "--join_timeout_s=1"},
       "could not join the cluster via 127.0.0.1:1"},
      {{"node", "--config=" + config_, "--node=n1", "--join=nowhere"}, "is not an address"},
      {{"frobnicate"}, "unknown command \"frobnicate\""},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {TroupeBinary()};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    std::unique_ptr<ChildProcess> process = std::move(*ChildProcess::Start(argv));
    EXPECT_EQ(*process->Wait(absl::Seconds(60)), 1) << c.expected;
    EXPECT_THAT(process->Output(), HasSubstr(c.expected));
  }
}

}  // namespace
}  // namespace troupe::tests
