// An open-loop HTTP benchmark client for OpenAI-compatible completion servers (`troupe serve`,
// vLLM), measuring what vLLM's benchmark_serving measures (serving/bench/summary.h).
//
// Open loop: each request of the workload is sent at its arrival time whether or not earlier
// ones have finished (a thread per request in flight, from a pool that grows to the peak), so a
// slow server sees its queue grow as a real one would. Each request is POST /v1/completions with
// stream: true, a prompt of exactly input_tokens random token ids (seeded by the request's
// index: the same prompts at every rate), max_tokens = output_tokens, ignore_eos: true and
// temperature 0, so the server does exactly the work the workload says.
//
//   BenchClientOptions options{.base_url = "http://127.0.0.1:8000"};
//   absl::Status up = CheckServer(options);                     // one tiny request first
//   absl::StatusOr<BenchmarkRun> run = RunBenchmark(requests, options);
//   BenchmarkSummary summary = Summarize(run->results, run->duration_s);
//
// A request that fails (refused, an HTTP error, a broken stream) is recorded as failed with the
// reason; only a bad base URL fails the whole run.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "serving/bench/summary.h"
#include "serving/workload/workload.h"

namespace troupe::serving::bench {

struct BenchClientOptions {
  // The server: scheme, host and port. `troupe serve` listens here by default.
  std::string base_url = "http://127.0.0.1:8000";
  std::string api_key;  // sent as "Authorization: Bearer <key>" when set
  std::string model;    // the request's "model" field; empty: not sent (troupe serves one model)
  // The most requests in flight; a request past it waits for a free slot (vLLM's
  // --max-concurrency). 0: unlimited, vLLM's default.
  int max_concurrency = 0;
  // A server that is down fails a request within connect_timeout rather than hanging it.
  absl::Duration connect_timeout = absl::Seconds(5);
  // The longest wait for the next bytes of a response: the server's own token timeout (60 s,
  // OpenAiServerOptions) plus room, so the server reports a stall before the client does.
  absl::Duration read_timeout = absl::Seconds(90);
  // Prompts are token ids drawn uniformly in [0, prompt_token_id_limit), seeded by seed and the
  // request's index. 50000 is under GPT-2's vocabulary (50257, the tokenizer of `troupe serve`)
  // and its end-of-text id 50256, so every id is ordinary text to the server.
  uint64_t seed = 0;
  int prompt_token_id_limit = 50000;
  // Where a progress line (requests done / total, elapsed) goes every progress_every; null: none.
  std::ostream* progress = nullptr;
  absl::Duration progress_every = absl::Seconds(10);
};

// BenchmarkRun is every request's result (in workload order) and the run's duration: from the
// start (time 0 of the arrivals) to the end of the last request.
struct BenchmarkRun {
  std::vector<RequestResult> results;
  double duration_s = 0;
};

// ValidateOptions checks the options (InvalidArgument naming the field and the fix).
absl::Status ValidateOptions(const BenchClientOptions& options);

// CheckServer sends one request (one prompt token, one output token), as vLLM's client does
// before a run: Unavailable when the server cannot be reached (naming the URL and how to start
// one), FailedPrecondition with the server's message when it refuses the request.
absl::Status CheckServer(const BenchClientOptions& options);

// RunBenchmark sends `requests` open loop and measures each.
absl::StatusOr<BenchmarkRun> RunBenchmark(const std::vector<workload::Request>& requests,
                                          const BenchClientOptions& options);

// PromptTokenIds is the prompt of request `index`: `length` ids in [0, limit) from the seed.
std::vector<int32_t> PromptTokenIds(uint64_t seed, int index, int length, int limit);

}  // namespace troupe::serving::bench
