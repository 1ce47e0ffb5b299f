#include "actors/directory.h"

#include <memory>
#include <thread>

#include "actors/ask.h"
#include "actors/runtime.h"
#include "caf/all.hpp"
#include "caf/io/middleman.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace troupe::actors {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

// TestNode is one node of a cluster made of actor systems in this process, each with its own
// middleman, talking over loopback TCP like separate processes would.
struct TestNode {
  std::unique_ptr<Runtime> runtime;
  caf::actor directory;
  uint16_t port = 0;

  caf::actor_system& system() { return runtime->system(); }
};

std::unique_ptr<TestNode> StartNode(const std::string& name) {
  auto node = std::make_unique<TestNode>();
  RuntimeOptions options;
  options.node_name = name;
  options.scheduler_threads = 2;
  node->runtime = *Runtime::Create(options);
  DirectoryOptions directory_options;
  directory_options.self = NodeInfo{name, "127.0.0.1", 0, {}};
  node->directory = SpawnDirectory(node->system(), directory_options);
  node->runtime->Own(node->directory);
  node->port = *PublishDirectory(node->system(), node->directory, "127.0.0.1", 0);
  return node;
}

caf::actor SpawnEcho(TestNode& node) {
  caf::actor echo = node.system().spawn(
      []() -> caf::behavior { return {[](const Ping& ping) { return ping; }}; });
  node.runtime->Own(echo);
  return echo;
}

std::vector<std::string> Names(const std::vector<NodeInfo>& nodes) {
  std::vector<std::string> names;
  for (const NodeInfo& n : nodes) names.push_back(n.name);
  return names;
}

TEST(DirectoryTest, RegistersAndLooksUpLocalActors) {
  std::unique_ptr<TestNode> n0 = StartNode("n0");
  caf::actor echo = SpawnEcho(*n0);
  ASSERT_TRUE(RegisterActor(n0->system(), n0->directory, "echo", "echo", echo).ok());
  absl::StatusOr<caf::actor> found =
      LookupActor(n0->system(), n0->directory, "n0", "echo", absl::Seconds(1));
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(*found, echo);

  absl::StatusOr<std::vector<ActorInfo>> actors = ListActors(n0->system(), n0->directory);
  ASSERT_TRUE(actors.ok());
  EXPECT_THAT(*actors, ElementsAre(ActorInfo{"n0", "echo", "echo"}));

  // A second actor under a taken name is refused; the same actor again is fine.
  absl::Status taken =
      RegisterActor(n0->system(), n0->directory, "echo", "echo", SpawnEcho(*n0));
  EXPECT_EQ(taken.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(taken.message(), HasSubstr("already has an actor named \"echo\""));
  EXPECT_TRUE(RegisterActor(n0->system(), n0->directory, "echo", "echo", echo).ok());
  EXPECT_EQ(RegisterActor(n0->system(), n0->directory, "x", "echo", caf::actor()).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(DirectoryTest, MissingActorTimesOutWithAnExplanation) {
  std::unique_ptr<TestNode> n0 = StartNode("n0");
  ASSERT_TRUE(RegisterActor(n0->system(), n0->directory, "a", "echo", SpawnEcho(*n0))
                  .ok());
  absl::StatusOr<caf::actor> missing =
      LookupActor(n0->system(), n0->directory, "n0", "nope", absl::Milliseconds(100));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(missing.status().message(),
              HasSubstr("node \"n0\" has no actor named \"nope\" (it has: a)"));

  absl::StatusOr<caf::actor> no_node =
      LookupActor(n0->system(), n0->directory, "n7", "a", absl::Milliseconds(100));
  ASSERT_FALSE(no_node.ok());
  EXPECT_THAT(no_node.status().message(), HasSubstr("no node named \"n7\" has joined"));
}

TEST(DirectoryTest, DeadActorsAreForgotten) {
  std::unique_ptr<TestNode> n0 = StartNode("n0");
  caf::actor echo = SpawnEcho(*n0);
  ASSERT_TRUE(RegisterActor(n0->system(), n0->directory, "echo", "echo", echo).ok());
  caf::anon_send_exit(echo, caf::exit_reason::kill);
  echo = nullptr;
  absl::StatusOr<std::vector<ActorInfo>> actors;
  for (int i = 0; i < 200; ++i) {
    actors = ListActors(n0->system(), n0->directory);
    if (actors.ok() && actors->empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(actors.ok());
  EXPECT_TRUE(actors->empty());
}

TEST(DirectoryTest, NodesJoinAndLookUpAcrossTheMiddleman) {
  std::unique_ptr<TestNode> n0 = StartNode("n0");
  std::unique_ptr<TestNode> n1 = StartNode("n1");
  std::unique_ptr<TestNode> n2 = StartNode("n2");
  ASSERT_TRUE(
      JoinCluster(n1->system(), n1->directory, "127.0.0.1", n0->port, absl::Seconds(5)).ok());
  // n2 joins through n1 and still learns about n0.
  absl::StatusOr<std::vector<NodeInfo>> members =
      JoinCluster(n2->system(), n2->directory, "127.0.0.1", n1->port, absl::Seconds(5));
  ASSERT_TRUE(members.ok()) << members.status();
  EXPECT_THAT(Names(*members), ElementsAre("n2", "n0", "n1"));
  EXPECT_THAT(Names(*ListMembers(n0->system(), n0->directory)), ElementsAre("n0", "n1", "n2"));

  caf::actor echo = SpawnEcho(*n0);
  ASSERT_TRUE(RegisterActor(n0->system(), n0->directory, "echo", "echo", echo).ok());
  absl::StatusOr<caf::actor> remote =
      LookupActor(n2->system(), n2->directory, "n0", "echo", absl::Seconds(5));
  ASSERT_TRUE(remote.ok()) << remote.status();
  absl::StatusOr<Ping> pong = Ask<Ping>(n2->system(), *remote, absl::Seconds(5), Ping{7, "hi"});
  ASSERT_TRUE(pong.ok()) << pong.status();
  EXPECT_EQ(*pong, (Ping{7, "hi"}));
}

TEST(DirectoryTest, LookupRetriesUntilTheActorAppears) {
  std::unique_ptr<TestNode> n0 = StartNode("n0");
  std::unique_ptr<TestNode> n1 = StartNode("n1");
  ASSERT_TRUE(
      JoinCluster(n1->system(), n1->directory, "127.0.0.1", n0->port, absl::Seconds(5)).ok());
  std::thread late([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_TRUE(
        RegisterActor(n0->system(), n0->directory, "late", "echo", SpawnEcho(*n0)).ok());
  });
  absl::StatusOr<caf::actor> found =
      LookupActor(n1->system(), n1->directory, "n0", "late", absl::Seconds(10));
  late.join();
  EXPECT_TRUE(found.ok()) << found.status();
}

TEST(DirectoryTest, SubscribersSeeJoinLeaveAndDown) {
  std::unique_ptr<TestNode> n0 = StartNode("n0");
  caf::scoped_actor watcher{n0->system()};
  absl::StatusOr<std::vector<NodeInfo>> initial =
      Ask<std::vector<NodeInfo>>(n0->system(), n0->directory, absl::Seconds(5),
                                 subscribe_atom::value, caf::actor_cast<caf::actor>(watcher));
  ASSERT_TRUE(initial.ok());
  EXPECT_THAT(Names(*initial), ElementsAre("n0"));

  auto next_event = [&]() {
    MembershipEvent event;
    watcher->receive([&](const MembershipEvent& e) { event = e; },
                     caf::after(std::chrono::seconds(10)) >> [] { ADD_FAILURE() << "no event"; });
    return event;
  };

  std::unique_ptr<TestNode> n1 = StartNode("n1");
  std::unique_ptr<TestNode> n2 = StartNode("n2");
  ASSERT_TRUE(JoinCluster(n1->system(), n1->directory, "127.0.0.1", n0->port, absl::Seconds(5)).ok());
  MembershipEvent joined = next_event();
  EXPECT_EQ(joined.kind, MembershipEvent::Kind::kJoined);
  EXPECT_EQ(joined.node.name, "n1");
  ASSERT_TRUE(JoinCluster(n2->system(), n2->directory, "127.0.0.1", n0->port, absl::Seconds(5)).ok());
  EXPECT_EQ(next_event().node.name, "n2");

  // n1 leaves politely.
  ASSERT_TRUE(AskDone(n1->system(), n1->directory, absl::Seconds(5), leave_atom::value).ok());
  MembershipEvent left = next_event();
  EXPECT_EQ(left.kind, MembershipEvent::Kind::kLeft);
  EXPECT_EQ(left.node.name, "n1");

  // n2 vanishes without a word: its whole actor system (and its sockets) go away.
  n2.reset();
  MembershipEvent down = next_event();
  EXPECT_EQ(down.kind, MembershipEvent::Kind::kDown);
  EXPECT_EQ(down.node.name, "n2");
  EXPECT_FALSE(down.reason.empty());
  EXPECT_THAT(Names(*ListMembers(n0->system(), n0->directory)), ElementsAre("n0"));
}

TEST(DirectoryTest, BadJoinsAreClearErrors) {
  std::unique_ptr<TestNode> n0 = StartNode("n0");
  std::unique_ptr<TestNode> twin = StartNode("n0");
  absl::StatusOr<std::vector<NodeInfo>> duplicate =
      JoinCluster(twin->system(), twin->directory, "127.0.0.1", n0->port, absl::Seconds(5));
  ASSERT_FALSE(duplicate.ok());
  EXPECT_EQ(duplicate.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(duplicate.status().message(), HasSubstr("its own name"));

  // Nothing listens on the port of a node that is gone.
  uint16_t dead_port = twin->port;
  twin.reset();
  std::unique_ptr<TestNode> n1 = StartNode("n1");
  absl::StatusOr<std::vector<NodeInfo>> nobody =
      JoinCluster(n1->system(), n1->directory, "127.0.0.1", dead_port, absl::Seconds(5));
  ASSERT_FALSE(nobody.ok());
  EXPECT_EQ(nobody.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(nobody.status().message(), HasSubstr("cannot reach a Troupe node at 127.0.0.1"));

  // Publishing on a taken port names the fix.
  absl::StatusOr<uint16_t> taken =
      PublishDirectory(n1->system(), n1->directory, "127.0.0.1", n0->port);
  ASSERT_FALSE(taken.ok());
  EXPECT_THAT(taken.status().message(), HasSubstr("use port = 0"));
}

}  // namespace
}  // namespace troupe::actors
