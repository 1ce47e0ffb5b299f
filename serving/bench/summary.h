// What one benchmark run measured, and its summary with vLLM's benchmark_serving labels
// (docs/bench.md): each request's client-side timings (RequestResult), the run's totals,
// throughputs and latency statistics (Summarize), its SLO attainment at several SLO scales
// (AttainmentByScale, DistServe's Fig. 8 second row) and the text and JSON they print as.
//
//   BenchmarkSummary summary = Summarize(results, duration_s, Slo{.ttft_s = 0.25, .tpot_s = 0.1});
//   std::cout << FormatSummary(summary);
//
// The metrics are vLLM's (serving_landscape.md section 2), all measured by the client:
//   TTFT  send to the first streamed token;
//   ITL   every gap between streamed chunks, pooled over all requests;
//   TPOT  per request (last token - first token) / (tokens - 1), requests of one token left out
//         (vLLM), then averaged;
//   E2EL  send to the end of the stream.
// Latency statistics cover successful requests; SLO attainment counts failed ones as misses
// (serving/workload/slo.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nlohmann/json_fwd.hpp"
#include "serving/workload/slo.h"

namespace troupe::serving::bench {

// RequestResult is one request as the client saw it. Times are seconds: arrival and send from
// the run's start, the latencies from the send.
struct RequestResult {
  int index = 0;
  double arrival_s = 0;  // when the workload says it arrives
  double sent_s = 0;     // when it was sent (later than arrival_s only under max_concurrency)
  int input_tokens = 0;
  int output_tokens = 0;     // asked for (max_tokens with ignore_eos)
  int generated_tokens = 0;  // what the server reported (usage), or the chunks counted
  bool success = false;
  std::string error;  // why it failed
  double ttft_s = 0;
  double tpot_s = 0;  // 0 for fewer than two tokens
  double e2el_s = 0;
  std::vector<double> itl_s;  // the gaps between streamed chunks
};

// LatencyStats are a metric's mean, median and 99th percentile in milliseconds (0 without
// samples, as vLLM prints them).
struct LatencyStats {
  double mean_ms = 0;
  double median_ms = 0;
  double p99_ms = 0;
};

struct BenchmarkSummary {
  int completed = 0;
  int failed = 0;
  double duration_s = 0;
  int64_t total_input_tokens = 0;      // of the completed requests
  int64_t total_generated_tokens = 0;  // of the completed requests
  double request_throughput = 0;       // completed / duration
  double output_throughput = 0;        // generated tokens / duration
  double total_token_throughput = 0;   // (input + generated tokens) / duration
  // With an SLO: requests that met it per second of the run (vLLM's goodput) and the fraction
  // of all requests that met it (DistServe's attainment, failed requests as misses).
  std::optional<workload::Slo> slo;
  std::optional<double> request_goodput;
  std::optional<double> slo_attainment;
  LatencyStats ttft, tpot, itl, e2el;
};

// Percentile is numpy.percentile's default (linear interpolation between the closest ranks) of
// `values` at `percent` in [0, 100]; 0 for no values.
double Percentile(std::vector<double> values, double percent);

// Timings are the results as serving/workload's RequestTiming (failed requests marked).
std::vector<workload::RequestTiming> Timings(const std::vector<RequestResult>& results);

// Summarize computes a run's summary; `slo` adds goodput and attainment.
BenchmarkSummary Summarize(const std::vector<RequestResult>& results, double duration_s,
                           std::optional<workload::Slo> slo = std::nullopt);

// FormatSummary is the summary as vLLM prints it: "Label:" padded to 40 columns, then the value.
std::string FormatSummary(const BenchmarkSummary& summary);

struct ScaledAttainment {
  double scale = 1;
  double attainment = 0;
};
// AttainmentByScale is the attainment of `results` under `slo` multiplied by each scale.
std::vector<ScaledAttainment> AttainmentByScale(const std::vector<RequestResult>& results,
                                                const workload::Slo& slo,
                                                const std::vector<double>& scales);

// The JSON forms: a summary (latencies in ms, as printed) and a request (times in seconds).
nlohmann::json SummaryJson(const BenchmarkSummary& summary);
nlohmann::json RequestJson(const RequestResult& result);

}  // namespace troupe::serving::bench
