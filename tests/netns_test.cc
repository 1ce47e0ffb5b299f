// Two "hosts" in network namespaces joined by a veth pair, made by the test itself. A node runs
// on each; they join, talk, refuse garbage, and notice when the link between them is cut.
//
// Creating namespaces needs root and iproute2; without them the test skips and says why.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tools/child_process.h"

namespace troupe::tests {

using tools::ChildProcess;
using tools::TroupeBinary;

namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kTimeout = absl::Seconds(60);

// Shell runs a shell command and returns its exit code; output goes to `output` if given.
int Shell(const std::string& command, std::string* output = nullptr) {
  std::string full = absl::StrCat(command, " 2>&1");
  FILE* pipe = popen(full.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buffer[512];
  std::string text;
  while (fgets(buffer, sizeof(buffer), pipe) != nullptr) text += buffer;
  int status = pclose(pipe);
  if (output != nullptr) *output = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// TwoHosts owns namespaces A and B, linked by veth with addresses 10.213.S.1 and 10.213.S.2.
class TwoHosts {
 public:
  // Create returns nullptr and fills `why` if the namespaces cannot be made here.
  static std::unique_ptr<TwoHosts> Create(std::string* why) {
    if (geteuid() != 0) {
      *why = "creating network namespaces needs root (run the suite as root, as CI does)";
      return nullptr;
    }
    if (Shell("ip -V") != 0) {
      *why = "the `ip` command (Debian package iproute2) is missing; tools/setup.sh installs it";
      return nullptr;
    }
    std::unique_ptr<TwoHosts> hosts(new TwoHosts(getpid()));
    std::string output;
    if (Shell(absl::StrCat("ip netns add ", hosts->a_), &output) != 0) {
      *why = absl::StrCat("`ip netns add` failed (", output,
                          "); this sandbox does not allow network namespaces");
      return nullptr;
    }
    hosts->created_a_ = true;
    const std::vector<std::string> setup = {
        absl::StrCat("ip netns add ", hosts->b_),
        absl::StrCat("ip link add ", hosts->veth_a_, " type veth peer name ", hosts->veth_b_),
        absl::StrCat("ip link set ", hosts->veth_a_, " netns ", hosts->a_),
        absl::StrCat("ip link set ", hosts->veth_b_, " netns ", hosts->b_),
        absl::StrCat("ip -n ", hosts->a_, " addr add ", hosts->ip_a_, "/24 dev ", hosts->veth_a_),
        absl::StrCat("ip -n ", hosts->b_, " addr add ", hosts->ip_b_, "/24 dev ", hosts->veth_b_),
        absl::StrCat("ip -n ", hosts->a_, " link set ", hosts->veth_a_, " up"),
        absl::StrCat("ip -n ", hosts->b_, " link set ", hosts->veth_b_, " up"),
        absl::StrCat("ip -n ", hosts->a_, " link set lo up"),
        absl::StrCat("ip -n ", hosts->b_, " link set lo up"),
    };
    hosts->created_b_ = true;
    for (const std::string& command : setup) {
      if (Shell(command, &output) != 0) {
        *why = absl::StrCat("`", command, "` failed: ", output);
        return nullptr;
      }
    }
    return hosts;
  }

  ~TwoHosts() {
    if (created_a_) Shell(absl::StrCat("ip netns del ", a_));
    if (created_b_) Shell(absl::StrCat("ip netns del ", b_));  // Deletes the veth pair too.
  }

  // In returns argv prefixed to run inside namespace `ns`.
  std::vector<std::string> In(const std::string& ns, std::vector<std::string> argv) const {
    argv.insert(argv.begin(), {"ip", "netns", "exec", ns});
    return argv;
  }

  std::string a_, b_, veth_a_, veth_b_, ip_a_, ip_b_;

 private:
  explicit TwoHosts(pid_t pid)
      : a_(absl::StrCat("trpA", pid)),
        b_(absl::StrCat("trpB", pid)),
        veth_a_(absl::StrCat("tva", pid)),
        veth_b_(absl::StrCat("tvb", pid)),
        ip_a_(absl::StrCat("10.213.", pid % 250, ".1")),
        ip_b_(absl::StrCat("10.213.", pid % 250, ".2")) {}
  bool created_a_ = false;
  bool created_b_ = false;
};

std::string WriteConfig(const TwoHosts& hosts, const std::string& name, const std::string& host_b) {
  std::string path = absl::StrCat(::testing::TempDir(), "/", getpid(), "_", name);
  std::ofstream(path) << "[cluster]\nname = \"two-hosts\"\n"
                      << "[[node]]\nname = \"n0\"\nhost = \"" << hosts.ip_a_ << "\"\n"
                      << "[[node]]\nname = \"n1\"\nhost = \"" << host_b << "\"\n"
                      << "[[actor]]\nname = \"echo0\"\nrole = \"echo\"\nnode = \"n0\"\n"
                      << "[[actor]]\nname = \"echo1\"\nrole = \"echo\"\nnode = \"n1\"\n";
  return path;
}

std::unique_ptr<ChildProcess> Start(const std::vector<std::string>& argv) {
  absl::StatusOr<std::unique_ptr<ChildProcess>> process = ChildProcess::Start(argv);
  EXPECT_TRUE(process.ok()) << process.status();
  return std::move(*process);
}

TEST(NetnsTest, NodesOnTwoHostsJoinTalkAndNoticeACutLink) {
  std::string why;
  std::unique_ptr<TwoHosts> hosts = TwoHosts::Create(&why);
  if (hosts == nullptr) GTEST_SKIP() << "skipped: " << why;
  const std::string config = WriteConfig(*hosts, "two_hosts.toml", hosts->ip_b_);

  std::unique_ptr<ChildProcess> n0 = Start(hosts->In(
      hosts->a_, {TroupeBinary(), "node", "--config=" + config, "--node=n0"}));
  absl::StatusOr<std::string> listening = n0->WaitForLine("listening on", kTimeout);
  ASSERT_TRUE(listening.ok()) << listening.status();
  EXPECT_THAT(*listening, HasSubstr(hosts->ip_a_));
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(listening->substr(listening->rfind(':') + 1), &port));
  const std::string seed = absl::StrCat(hosts->ip_a_, ":", port);

  std::unique_ptr<ChildProcess> n1 = Start(hosts->In(
      hosts->b_, {TroupeBinary(), "node", "--config=" + config, "--node=n1", "--join=" + seed}));
  ASSERT_TRUE(n1->WaitForLine("joined the cluster via " + seed, kTimeout).ok()) << n1->Output();
  ASSERT_TRUE(n0->WaitForLine(absl::StrCat("node n1 (", hosts->ip_b_), kTimeout).ok())
      << n0->Output();

  // Requests cross the link both ways.
  for (const auto& [ns, target] : std::vector<std::pair<std::string, std::string>>{
           {hosts->b_, "n0/echo0"}, {hosts->a_, "n1/echo1"}}) {
    std::unique_ptr<ChildProcess> ping = Start(hosts->In(
        ns, {TroupeBinary(), "ping", "--join=" + seed, "--target=" + target, "--count=20"}));
    EXPECT_EQ(*ping->Wait(kTimeout), 0) << ping->Output();
    EXPECT_THAT(ping->Output(), HasSubstr("20/20 replies"));
  }

  // Bad input from the other host: garbage on the node's port, then a normal ping.
  EXPECT_EQ(Shell(absl::StrCat("ip netns exec ", hosts->b_,
                             " bash -c 'head -c 8192 /dev/urandom > /dev/tcp/", hosts->ip_a_, "/",
                             port, "'")),
            0);
  std::unique_ptr<ChildProcess> ping = Start(hosts->In(
      hosts->b_, {TroupeBinary(), "ping", "--join=" + seed, "--target=n0/echo0", "--count=5"}));
  EXPECT_EQ(*ping->Wait(kTimeout), 0) << ping->Output() << "\n" << n0->Output();

  // A bad config: host B claims an address of host A.
  const std::string wrong = WriteConfig(*hosts, "wrong_host.toml", hosts->ip_a_);
  std::unique_ptr<ChildProcess> misplaced = Start(hosts->In(
      hosts->b_, {TroupeBinary(), "node", "--config=" + wrong, "--node=n1", "--join=" + seed}));
  EXPECT_EQ(*misplaced->Wait(kTimeout), 1);
  EXPECT_THAT(misplaced->Output(), HasSubstr(absl::StrCat("cannot listen on ", hosts->ip_a_)));

  // Cut the link: no FIN, no RST. Heartbeats stop, and n0 declares n1 down.
  ASSERT_EQ(Shell(absl::StrCat("ip -n ", hosts->b_, " link set ", hosts->veth_b_, " down")), 0);
  EXPECT_TRUE(n0->WaitForLine("node n1 is down", kTimeout).ok()) << n0->Output();
  EXPECT_TRUE(n1->WaitForLine("node n0 is down", kTimeout).ok()) << n1->Output();

  n0->Signal(SIGTERM);
  n1->Signal(SIGTERM);
  EXPECT_EQ(*n0->Wait(kTimeout), 0) << n0->Output();
  EXPECT_EQ(*n1->Wait(kTimeout), 0) << n1->Output();
}

}  // namespace
}  // namespace troupe::tests
