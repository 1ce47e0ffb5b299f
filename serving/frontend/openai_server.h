// OpenAiServer: the OpenAI-compatible HTTP frontend (cpp-httplib, the choice of llama.cpp's
// server). It turns each request into a GenerateRequest for an instance actor (a prefill
// instance, or a colocated one) and streams the tokens it gets back as the response, or as
// server-sent events with "stream": true. The engine never sees HTTP.
//
//   GET  /health                 {"status": "ok"}
//   GET  /metrics                Prometheus text: the process's registry, with per-request
//                                TTFT, TPOT and end-to-end histograms, requests by outcome,
//                                generated tokens, requests in flight, and the instances'
//                                queue depths and KV blocks in use
//   GET  /v1/models              the served model
//   POST /v1/completions         prompt (a string, or an array of token ids as OpenAI allows)
//                                -> text
//   POST /v1/chat/completions    messages -> an assistant message (a simple "role: content"
//                                template ending in "assistant:")
//
// Beyond OpenAI's fields, "ignore_eos": true (vLLM's extension) generates exactly max_tokens,
// past the end-of-text token; benchmarks use it with a token-id prompt to fix both lengths.
// "stream_options": {"include_usage": true} adds OpenAI's last chunk with the token counts.
//
// Bad requests get OpenAI-style error JSON ({"error": {"message", "type", "param", "code"}}):
// 400 for malformed JSON, unknown or mistyped fields, a prompt longer than the context,
// max_tokens out of range and bad sampling parameters; 401 without the configured API key; 404
// for an unknown model or path; 413 for a body over the limit; 429 when too many requests are in
// flight (a bounded queue, never an unbounded backlog); 503 when the engine does not answer.
// A client that disconnects mid-stream has its request cancelled (the instances watch the
// handler's actor and free its KV blocks).
//
//   OpenAiServer server(system, prefill, &tokenizer, {.model_name = "tiny", .context = 512});
//   absl::StatusOr<int> port = server.Start("127.0.0.1", 8000);
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "actors/metrics.h"
#include "caf/actor.hpp"
#include "caf/actor_system.hpp"
#include "serving/tokenizer/tokenizer.h"

namespace httplib {
class Server;
}

namespace troupe::serving::frontend {

struct OpenAiServerOptions {
  std::string model_name = "tiny";
  int context = 2048;               // the model's context: prompt + max_tokens must fit
  int default_max_tokens = 16;      // OpenAI's default for completions
  std::string api_key;              // empty: no authentication
  int max_in_flight = 256;          // requests beyond this get 429
  size_t max_body_bytes = 1 << 20;  // larger bodies get 413
  // A request that gets no token for this long fails with 503 (or an error event).
  absl::Duration token_timeout = absl::Seconds(60);
  // Where GET /metrics reads and the request metrics go: the actor system's registry when null.
  actors::MetricsRegistry* metrics = nullptr;
};

class OpenAiServer {
 public:
  // `engine` receives GenerateRequests; `tokenizer` must outlive the server.
  OpenAiServer(caf::actor_system& system, caf::actor engine, const tokenizer::Tokenizer* tokenizer,
               OpenAiServerOptions options);
  ~OpenAiServer();  // Stops the server.
  OpenAiServer(const OpenAiServer&) = delete;
  OpenAiServer& operator=(const OpenAiServer&) = delete;

  // Start binds host:port (0: an ephemeral port) and returns the bound port.
  absl::StatusOr<int> Start(const std::string& host, int port);
  void Stop();

  struct Impl;  // The handlers' shared state (openai_server.cc).

 private:
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace troupe::serving::frontend
