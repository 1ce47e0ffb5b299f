#include "serving/frontend/openai_server.h"

#include <httplib.h>

#include <chrono>
#include <optional>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "actors/errors.h"
#include "actors/runtime.h"
#include "caf/all.hpp"
#include "nlohmann/json.hpp"
#include "serving/instance/messages.h"

namespace troupe::serving::frontend {

using instance::GeneratedToken;
using instance::GenerateRequest;
using nlohmann::json;

struct OpenAiServer::Impl {
  Impl(caf::actor_system& system, caf::actor engine, const tokenizer::Tokenizer* tokenizer,
       OpenAiServerOptions options)
      : system(system),
        engine(std::move(engine)),
        tokenizer(tokenizer),
        options(std::move(options)) {}

  caf::actor_system& system;
  caf::actor engine;
  const tokenizer::Tokenizer* tokenizer;
  OpenAiServerOptions options;
  std::atomic<int64_t> next_id{1};
  std::atomic<int> in_flight{0};
  // Request metrics (null without a registry). Latency buckets in seconds, as vLLM's.
  actors::Histogram* ttft = nullptr;
  actors::Histogram* tpot = nullptr;
  actors::Histogram* e2e = nullptr;
  actors::Counter* tokens = nullptr;
  actors::Counter* succeeded = nullptr;
  actors::Counter* failed = nullptr;
  actors::CallbackGauge in_flight_metric;
};

namespace {

// Worker threads beyond max_in_flight: they answer overload with 429 while every admitted
// request holds one.
constexpr size_t kSpareWorkers = 8;

// Dump serializes a response. Generated text can end in a byte sequence that is not UTF-8 (a
// model may stop inside a character, or emit byte tokens that form none): such bytes become
// U+FFFD, as OpenAI's API and vLLM's server do, instead of failing the response.
std::string Dump(const json& body) {
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

struct HttpError {
  int status;
  std::string type;
  std::string message;
  std::string param;
};

void SendError(httplib::Response& response, const HttpError& error) {
  const json body = {{"error",
                      {{"message", error.message},
                       {"type", error.type},
                       {"param", error.param.empty() ? json(nullptr) : json(error.param)},
                       {"code", error.status == 400 && error.type == "context_length_exceeded"
                                    ? json("context_length_exceeded")
                                    : json(nullptr)}}}};
  response.status = error.status;
  response.set_content(Dump(body), "application/json");
}

HttpError BadRequest(std::string message, std::string param = "") {
  return {400, "invalid_request_error", std::move(message), std::move(param)};
}

// A validated request: what to generate and how to answer.
struct Parsed {
  GenerateRequest request;
  bool stream = false;
  // stream_options.include_usage: a last chunk (empty choices) carries the token counts.
  bool include_usage = false;
  bool chat = false;
};

std::optional<HttpError> Parse(const OpenAiServer::Impl& impl, const std::string& body, bool chat,
                               Parsed* out) {
  const json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return BadRequest("could not parse the request body as JSON");
  if (!j.is_object()) return BadRequest("the request body must be a JSON object");
  const std::set<std::string> allowed = {chat ? "messages" : "prompt",
                                         "model",
                                         "max_tokens",
                                         "temperature",
                                         "top_p",
                                         "top_k",
                                         "seed",
                                         "stream",
                                         "stream_options",
                                         "ignore_eos",
                                         "user"};
  for (const auto& [key, value] : j.items()) {
    if (!allowed.count(key)) {
      return BadRequest(absl::StrCat("unknown or unsupported field \"", key,
                                     "\"; supported: ", absl::StrJoin(allowed, ", ")),
                        key);
    }
  }
  if (j.contains("model")) {
    if (!j["model"].is_string()) return BadRequest("\"model\" must be a string", "model");
    if (j["model"].get<std::string>() != impl.options.model_name) {
      return HttpError{404, "invalid_request_error",
                       absl::StrCat("the model `", j["model"].get<std::string>(),
                                    "` does not exist; this server serves `",
                                    impl.options.model_name, "` (GET /v1/models)"),
                       "model"};
    }
  }
  std::string prompt;
  if (chat) {
    if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty()) {
      return BadRequest("\"messages\" must be a non-empty array of {role, content}", "messages");
    }
    for (const json& message : j["messages"]) {
      if (!message.is_object() || !message.contains("role") || !message["role"].is_string() ||
          !message.contains("content") || !message["content"].is_string()) {
        return BadRequest("each message needs a string \"role\" and a string \"content\"",
                          "messages");
      }
      const std::string role = message["role"].get<std::string>();
      if (role != "system" && role != "user" && role != "assistant") {
        return BadRequest(
            absl::StrCat("message role \"", role, "\" is not one of system, user, assistant"),
            "messages");
      }
      absl::StrAppend(&prompt, role, ": ", message["content"].get<std::string>(), "\n");
    }
    prompt += "assistant:";  // the simple chat template
  } else if (j.contains("prompt") && j["prompt"].is_array()) {
    // A list of token ids, as OpenAI allows: a benchmark sets the exact prompt length with it.
    const int vocab_size = impl.tokenizer->vocab_size();
    for (const json& id : j["prompt"]) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= vocab_size) {
        return BadRequest(
            absl::StrCat("\"prompt\" as an array must hold token ids: integers in [0, ", vocab_size,
                         "); got ", Dump(id)),
            "prompt");
      }
      out->request.prompt.push_back(static_cast<int32_t>(id.get<int64_t>()));
    }
  } else {
    if (!j.contains("prompt") || !j["prompt"].is_string()) {
      return BadRequest("\"prompt\" must be a string or an array of token ids", "prompt");
    }
    prompt = j["prompt"].get<std::string>();
  }
  GenerateRequest& r = out->request;
  if (!prompt.empty()) r.prompt = impl.tokenizer->EncodeOrdinary(prompt);
  if (r.prompt.empty()) return BadRequest("the prompt is empty", chat ? "messages" : "prompt");
  r.max_new_tokens = impl.options.default_max_tokens;
  if (j.contains("max_tokens")) {
    if (!j["max_tokens"].is_number_integer() || j["max_tokens"].get<int64_t>() < 1) {
      return BadRequest("\"max_tokens\" must be an integer >= 1", "max_tokens");
    }
    r.max_new_tokens =
        static_cast<int32_t>(std::min<int64_t>(j["max_tokens"].get<int64_t>(), int64_t{1} << 30));
  }
  const int64_t total = static_cast<int64_t>(r.prompt.size()) + r.max_new_tokens;
  if (total > impl.options.context) {
    return HttpError{400, "context_length_exceeded",
                     absl::StrCat("This model's maximum context length is ", impl.options.context,
                                  " tokens. However, you requested ", total, " tokens (",
                                  r.prompt.size(), " in the prompt, ", r.max_new_tokens,
                                  " for the completion). Please reduce the "
                                  "prompt or max_tokens."),
                     "max_tokens"};
  }
  if (j.contains("temperature")) {
    if (!j["temperature"].is_number() || j["temperature"].get<double>() < 0 ||
        j["temperature"].get<double>() > 2) {
      return BadRequest("\"temperature\" must be a number in [0, 2]", "temperature");
    }
    r.temperature = j["temperature"].get<float>();
  } else {
    r.temperature = 1.0f;  // OpenAI's default
  }
  if (j.contains("top_p")) {
    if (!j["top_p"].is_number() || !(j["top_p"].get<double>() > 0) ||
        j["top_p"].get<double>() > 1) {
      return BadRequest("\"top_p\" must be a number in (0, 1]", "top_p");
    }
    r.top_p = j["top_p"].get<float>();
  }
  if (j.contains("top_k")) {
    if (!j["top_k"].is_number_integer() || j["top_k"].get<int64_t>() < -1) {
      return BadRequest("\"top_k\" must be an integer >= -1 (-1 or 0: off)", "top_k");
    }
    r.top_k = std::max<int32_t>(0, static_cast<int32_t>(j["top_k"].get<int64_t>()));
  }
  if (j.contains("seed")) {
    if (!j["seed"].is_number_integer()) return BadRequest("\"seed\" must be an integer", "seed");
    r.seed = static_cast<uint64_t>(j["seed"].get<int64_t>());
  }
  if (j.contains("stream")) {
    if (!j["stream"].is_boolean()) return BadRequest("\"stream\" must be a boolean", "stream");
    out->stream = j["stream"].get<bool>();
  }
  if (j.contains("stream_options")) {
    const json& options = j["stream_options"];
    if (!options.is_object() ||
        (options.contains("include_usage") && !options["include_usage"].is_boolean()) ||
        options.size() != options.count("include_usage")) {
      return BadRequest("\"stream_options\" must be {\"include_usage\": true|false}",
                        "stream_options");
    }
    if (!out->stream) {
      return BadRequest("\"stream_options\" is only allowed with \"stream\": true",
                        "stream_options");
    }
    out->include_usage = options.value("include_usage", false);
  }
  // vLLM's extension: with ignore_eos the stop token is not set, so exactly max_tokens come out.
  bool ignore_eos = false;
  if (j.contains("ignore_eos")) {
    if (!j["ignore_eos"].is_boolean()) {
      return BadRequest("\"ignore_eos\" must be a boolean", "ignore_eos");
    }
    ignore_eos = j["ignore_eos"].get<bool>();
  }
  if (const std::optional<int32_t> eos = impl.tokenizer->TokenId("<|endoftext|>");
      eos && !ignore_eos) {
    r.stop_token = *eos;
  }
  out->chat = chat;
  return std::nullopt;
}

// Utf8Prefix is the length of the longest prefix of `text` that does not end inside a UTF-8
// sequence: a token may carry part of a character, which is sent with the token that ends it.
size_t Utf8Prefix(const std::string& text) {
  size_t n = text.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const auto c = static_cast<unsigned char>(text[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    const size_t length = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return length > back ? n - back : n;
  }
  return n;
}

// Generation runs one request through the engine from a handler thread.
class Generation {
 public:
  Generation(OpenAiServer::Impl& impl, Parsed parsed)
      : impl_(impl), parsed_(std::move(parsed)), self_(impl.system) {
    parsed_.request.id = impl.next_id++;
  }

  // Submit hands the request to the engine; an error is the engine's refusal as HTTP.
  std::optional<HttpError> Submit() {
    submitted_at_ = std::chrono::steady_clock::now();
    std::optional<HttpError> error;
    bool answered = false;
    self_->request(impl_.engine, caf::infinite, parsed_.request)
        .receive([&]() { answered = true; },
                 [&](caf::error& e) {
                   answered = true;
                   const absl::Status status = actors::ToStatus(e);
                   error =
                       absl::IsInvalidArgument(status) || absl::IsResourceExhausted(status)
                           ? BadRequest(std::string(status.message()))
                           : HttpError{
                                 503, "server_error",
                                 absl::StrCat("the engine is unavailable: ", status.message()), ""};
                 });
    if (!answered) return HttpError{503, "server_error", "the engine did not answer", ""};
    return error;
  }

  // Next waits for the next token; nullopt at the end. An error is set on timeout or cancel.
  std::optional<int32_t> Next() {
    std::optional<int32_t> token = Receive();
    const auto now = std::chrono::steady_clock::now();
    if (token) {
      if (ids_.size() == 1) first_token_at_ = now;
      if (impl_.tokens != nullptr) impl_.tokens->Increment();
    }
    if (finished_ && !recorded_) {
      recorded_ = true;
      const auto seconds = [](auto d) { return std::chrono::duration<double>(d).count(); };
      if (error_) {
        if (impl_.failed != nullptr) impl_.failed->Increment();
      } else if (impl_.ttft != nullptr) {
        impl_.succeeded->Increment();
        impl_.ttft->Observe(seconds(first_token_at_ - submitted_at_));
        impl_.e2e->Observe(seconds(now - submitted_at_));
        if (ids_.size() > 1)
          impl_.tpot->Observe(seconds(now - first_token_at_) / (ids_.size() - 1));
      }
    }
    return token;
  }

 private:
  std::optional<int32_t> Receive() {
    if (finished_) return std::nullopt;
    std::optional<int32_t> token;
    bool got = false;
    self_->receive(
        [&](const GeneratedToken& t) {
          got = true;
          if (t.reason == instance::kFinishedByCancel || t.reason == instance::kFinishedByFailure) {
            error_ = HttpError{503, "server_error",
                               t.reason == instance::kFinishedByCancel
                                   ? "the engine cancelled the request"
                                   : "the instance serving the request went down; retry it",
                               ""};
            finished_ = true;
            return;
          }
          ids_.push_back(t.token);
          token = t.token;
          if (t.finished) {
            finished_ = true;
            finish_reason_ = t.reason == instance::kFinishedByStopToken ? "stop" : "length";
          }
        },
        caf::after(
            std::chrono::milliseconds(absl::ToInt64Milliseconds(impl_.options.token_timeout))) >>
            [&] {});
    if (!got) {
      error_ = HttpError{503, "server_error", "no token from the engine in time", ""};
      finished_ = true;
    }
    return token;
  }

 public:
  // Delta is the text of the tokens since the last call, up to the last whole character (all
  // of it once the request is finished). The stop token itself is not text.
  std::string Delta() {
    std::vector<int32_t> ids = ids_;
    if (finish_reason_ == "stop" && !ids.empty()) ids.pop_back();
    const std::string text = impl_.tokenizer->Decode(ids).value_or("");
    const size_t end = finished_ ? text.size() : Utf8Prefix(text);
    std::string delta = end > sent_ ? text.substr(sent_, end - sent_) : "";
    sent_ = std::max(sent_, end);
    return delta;
  }

  const Parsed& parsed() const { return parsed_; }
  const std::optional<HttpError>& error() const { return error_; }
  const std::string& finish_reason() const { return finish_reason_; }
  int completion_tokens() const { return static_cast<int>(ids_.size()); }
  std::string id() const {
    return absl::StrCat(parsed_.chat ? "chatcmpl-" : "cmpl-", parsed_.request.id);
  }

 private:
  OpenAiServer::Impl& impl_;
  Parsed parsed_;
  caf::scoped_actor self_;  // the instances stream to it and watch it (a disconnect cancels)
  std::vector<int32_t> ids_;
  bool finished_ = false;
  std::string finish_reason_;
  std::optional<HttpError> error_;
  size_t sent_ = 0;
  std::chrono::steady_clock::time_point submitted_at_, first_token_at_;
  bool recorded_ = false;
};

int64_t Now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json Choice(const Generation& g, const std::string& text, bool final, bool stream) {
  const json reason = final ? json(g.finish_reason()) : json(nullptr);
  if (!g.parsed().chat) return {{"index", 0}, {"text", text}, {"finish_reason", reason}};
  if (stream) return {{"index", 0}, {"delta", {{"content", text}}}, {"finish_reason", reason}};
  return {{"index", 0},
          {"message", {{"role", "assistant"}, {"content", text}}},
          {"finish_reason", reason}};
}

json Envelope(const Generation& g, const std::string& model, bool stream) {
  const char* object =
      g.parsed().chat ? (stream ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  return {{"id", g.id()}, {"object", object}, {"created", Now()}, {"model", model}};
}

json Usage(const Generation& g) {
  const int prompt_tokens = static_cast<int>(g.parsed().request.prompt.size());
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", g.completion_tokens()},
          {"total_tokens", prompt_tokens + g.completion_tokens()}};
}

}  // namespace

OpenAiServer::OpenAiServer(caf::actor_system& system, caf::actor engine,
                           const tokenizer::Tokenizer* tokenizer, OpenAiServerOptions options)
    : impl_(std::make_unique<Impl>(system, std::move(engine), tokenizer, std::move(options))) {
  Impl& impl = *impl_;
  if (impl.options.metrics == nullptr) impl.options.metrics = actors::MetricsOf(system);
  actors::MetricsRegistry* metrics = impl.options.metrics;
  if (metrics == nullptr) return;
  const std::vector<double> latency = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
                                       0.75,  1.0,   2.5,  5.0,  7.5,  10,   20,   40,  80};
  const actors::Labels model = {{"model", impl.options.model_name}};
  impl.ttft =
      metrics
          ->AddHistogram("troupe_request_ttft_seconds", "Time to the first token.", latency, model)
          .value_or(nullptr);
  impl.tpot = metrics
                  ->AddHistogram("troupe_request_tpot_seconds",
                                 "Time per output token after the first.", latency, model)
                  .value_or(nullptr);
  impl.e2e = metrics
                 ->AddHistogram("troupe_request_e2e_seconds", "Request latency, end to end.",
                                latency, model)
                 .value_or(nullptr);
  impl.tokens = metrics->AddCounter("troupe_generated_tokens_total", "Tokens generated.", model)
                    .value_or(nullptr);
  impl.succeeded = metrics
                       ->AddCounter("troupe_requests_total", "Requests by outcome.",
                                    {{"model", impl.options.model_name}, {"outcome", "ok"}})
                       .value_or(nullptr);
  impl.failed = metrics
                    ->AddCounter("troupe_requests_total", "Requests by outcome.",
                                 {{"model", impl.options.model_name}, {"outcome", "error"}})
                    .value_or(nullptr);
  Impl* raw = impl_.get();
  absl::StatusOr<actors::CallbackGauge> in_flight =
      metrics->AddGaugeCallback("troupe_requests_in_flight", "Requests being answered.", model,
                                [raw] { return static_cast<double>(raw->in_flight.load()); });
  if (in_flight.ok()) impl.in_flight_metric = *std::move(in_flight);
  if (impl.ttft == nullptr || impl.tpot == nullptr || impl.e2e == nullptr ||
      impl.tokens == nullptr || impl.succeeded == nullptr || impl.failed == nullptr) {
    impl.ttft = nullptr;  // all or nothing: Next records only with every metric present
  }
}

OpenAiServer::~OpenAiServer() { Stop(); }

absl::StatusOr<int> OpenAiServer::Start(const std::string& host, int port) {
  if (server_ != nullptr) return absl::FailedPreconditionError("the server is already running");
  auto server = std::make_unique<httplib::Server>();
  // An idle keep-alive connection holds a worker thread, and Stop() waits for it: keep the wait
  // short, so stopping a node with clients still connected stays within its grace period.
  server->set_keep_alive_timeout(2);
  server->set_socket_options([](socket_t socket) {
    int yes = 1;
    setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server->set_payload_max_length(impl_->options.max_body_bytes);
  // A request holds a worker thread until its last token, so the pool must hold every request
  // admitted (max_in_flight) plus some to answer the ones beyond with 429 at once. cpp-httplib's
  // default (the core count) would queue every request past it, unbounded and unanswered, before
  // the in-flight limit ever saw it.
  const size_t workers = static_cast<size_t>(impl_->options.max_in_flight) + kSpareWorkers;
  server->new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
  Impl* impl = impl_.get();
  const auto authorized = [impl](const httplib::Request& request) {
    return impl->options.api_key.empty() || request.get_header_value("Authorization") ==
                                                absl::StrCat("Bearer ", impl->options.api_key);
  };
  server->Get("/health", [](const httplib::Request&, httplib::Response& response) {
    response.set_content(R"({"status":"ok"})", "application/json");
  });
  server->Get("/metrics", [impl](const httplib::Request&, httplib::Response& response) {
    if (impl->options.metrics == nullptr) {
      return SendError(response, {404, "invalid_request_error", "no metrics registry", ""});
    }
    response.set_content(impl->options.metrics->PrometheusText(), "text/plain; version=0.0.4");
  });
  server->Get("/v1/models", [impl, authorized](const httplib::Request& request,
                                               httplib::Response& response) {
    if (!authorized(request)) {
      return SendError(response,
                       {401, "invalid_request_error",
                        "missing or wrong API key: send \"Authorization: Bearer <key>\"", ""});
    }
    const json body = {{"object", "list"},
                       {"data",
                        {{{"id", impl->options.model_name},
                          {"object", "model"},
                          {"created", 0},
                          {"owned_by", "troupe"}}}}};
    response.set_content(Dump(body), "application/json");
  });
  const auto generate = [impl, authorized](bool chat) {
    return [impl, authorized, chat](const httplib::Request& request, httplib::Response& response) {
      if (!authorized(request)) {
        return SendError(response,
                         {401, "invalid_request_error",
                          "missing or wrong API key: send \"Authorization: Bearer <key>\"", ""});
      }
      Parsed parsed;
      if (std::optional<HttpError> error = Parse(*impl, request.body, chat, &parsed)) {
        return SendError(response, *error);
      }
      if (impl->in_flight.fetch_add(1) >= impl->options.max_in_flight) {
        impl->in_flight.fetch_sub(1);
        return SendError(response, {429, "rate_limit_error",
                                    absl::StrCat("more than ", impl->options.max_in_flight,
                                                 " requests in flight; retry later"),
                                    ""});
      }
      // Released when the response (or the stream) is done.
      std::shared_ptr<void> slot(nullptr, [impl](void*) { impl->in_flight.fetch_sub(1); });
      auto generation = std::make_shared<Generation>(*impl, std::move(parsed));
      if (std::optional<HttpError> error = generation->Submit()) {
        return SendError(response, *error);
      }
      const std::string model = impl->options.model_name;
      if (!generation->parsed().stream) {
        while (generation->Next()) {
        }
        if (generation->error()) return SendError(response, *generation->error());
        json body = Envelope(*generation, model, false);
        body["choices"] = json::array({Choice(*generation, generation->Delta(), true, false)});
        body["usage"] = Usage(*generation);
        response.set_content(Dump(body), "application/json");
        return;
      }
      response.set_chunked_content_provider(
          "text/event-stream", [generation, model, slot](size_t, httplib::DataSink& sink) {
            const auto event = [&](const json& data) {
              const std::string text = absl::StrCat("data: ", Dump(data), "\n\n");
              return sink.write(text.data(), text.size());
            };
            while (generation->Next()) {
              const std::string delta = generation->Delta();
              if (delta.empty()) continue;
              json chunk = Envelope(*generation, model, true);
              chunk["choices"] = json::array({Choice(*generation, delta, false, true)});
              if (!event(chunk) || !sink.is_writable()) return false;  // client gone: cancel
            }
            if (generation->error()) {
              event({{"error",
                      {{"message", generation->error()->message},
                       {"type", generation->error()->type}}}});
            } else {
              json last = Envelope(*generation, model, true);
              last["choices"] = json::array({Choice(*generation, generation->Delta(), true, true)});
              event(last);
              if (generation->parsed().include_usage) {
                json usage = Envelope(*generation, model, true);
                usage["choices"] = json::array();
                usage["usage"] = Usage(*generation);
                event(usage);
              }
            }
            const std::string done = "data: [DONE]\n\n";
            sink.write(done.data(), done.size());
            sink.done();
            return true;
          });
    };
  };
  server->Post("/v1/completions", generate(false));
  server->Post("/v1/chat/completions", generate(true));
  // httplib calls this for every status >= 400; only fill in the ones no handler answered.
  server->set_error_handler([](const httplib::Request& request, httplib::Response& response) {
    if (!response.body.empty()) return;
    if (response.status == 413) {
      return SendError(response,
                       {413, "invalid_request_error", "the request body is too large", ""});
    }
    if (response.status == 404) {
      return SendError(response,
                       {404, "invalid_request_error",
                        absl::StrCat("no such endpoint: ", request.method, " ", request.path,
                                     "; try POST /v1/completions, POST /v1/chat/completions, "
                                     "GET /v1/models or GET /health"),
                        ""});
    }
  });
  int bound = port == 0 ? server->bind_to_any_port(host) : port;
  if (port != 0 && !server->bind_to_port(host, port)) bound = -1;
  if (bound < 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", host, ":", port,
                                               "; the port is taken or the address is not "
                                               "local: pick another --port, or 0"));
  }
  server_ = std::move(server);
  thread_ = std::thread([server = server_.get()] { server->listen_after_bind(); });
  for (int waited_ms = 0; !server_->is_running(); ++waited_ms) {
    if (waited_ms == 5000) {
      Stop();
      return absl::InternalError("the HTTP server did not start within 5 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return bound;
}

void OpenAiServer::Stop() {
  if (server_ == nullptr) return;
  server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

}  // namespace troupe::serving::frontend
