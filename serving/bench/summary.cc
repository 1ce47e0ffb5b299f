#include "serving/bench/summary.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace troupe::serving::bench {
namespace {

constexpr double kMsPerS = 1000.0;
// vLLM's layout: labels padded to 40 columns, section rules 50 wide.
constexpr int kLabelWidth = 40;
constexpr int kRuleWidth = 50;
// The percentile vLLM prints by default (--metric-percentiles 99).
constexpr double kReportedPercentile = 99;

LatencyStats StatsOf(const std::vector<double>& seconds) {
  LatencyStats stats;
  if (seconds.empty()) return stats;
  double sum = 0;
  for (double s : seconds) sum += s;
  stats.mean_ms = sum / static_cast<double>(seconds.size()) * kMsPerS;
  stats.median_ms = Percentile(seconds, 50) * kMsPerS;
  stats.p99_ms = Percentile(seconds, kReportedPercentile) * kMsPerS;
  return stats;
}

// Rule is a title centred in a line of `fill`, as Python's "{:{c}^{n}}".format(...).
std::string Rule(const std::string& title, char fill) {
  const int padding = std::max(0, kRuleWidth - static_cast<int>(title.size()));
  const int left = padding / 2;
  return absl::StrCat(std::string(left, fill), title, std::string(padding - left, fill), "\n");
}

std::string Line(const std::string& label, const std::string& value) {
  return absl::StrFormat("%-*s %s\n", kLabelWidth, label, value);
}

std::string Fixed(double value) { return absl::StrFormat("%.2f", value); }

void AppendLatency(std::string& out, const std::string& title, const std::string& metric,
                   const LatencyStats& stats) {
  out += Rule(title, '-');
  out += Line(absl::StrCat("Mean ", metric, " (ms):"), Fixed(stats.mean_ms));
  out += Line(absl::StrCat("Median ", metric, " (ms):"), Fixed(stats.median_ms));
  out += Line(absl::StrCat("P99 ", metric, " (ms):"), Fixed(stats.p99_ms));
}

nlohmann::json LatencyJson(const LatencyStats& stats) {
  return {{"mean_ms", stats.mean_ms}, {"median_ms", stats.median_ms}, {"p99_ms", stats.p99_ms}};
}

}  // namespace

double Percentile(std::vector<double> values, double percent) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::clamp(percent, 0.0, 100.0) / 100.0 * (values.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(rank));
  const size_t above = std::min(below + 1, values.size() - 1);
  return values[below] + (values[above] - values[below]) * (rank - below);
}

std::vector<workload::RequestTiming> Timings(const std::vector<RequestResult>& results) {
  std::vector<workload::RequestTiming> timings;
  timings.reserve(results.size());
  for (const RequestResult& result : results) {
    timings.push_back(
        {.ttft_s = result.ttft_s, .tpot_s = result.tpot_s, .failed = !result.success});
  }
  return timings;
}

BenchmarkSummary Summarize(const std::vector<RequestResult>& results, double duration_s,
                           std::optional<workload::Slo> slo) {
  BenchmarkSummary summary;
  summary.duration_s = duration_s;
  std::vector<double> ttfts, tpots, itls, e2els;
  for (const RequestResult& result : results) {
    if (!result.success) {
      ++summary.failed;
      continue;
    }
    ++summary.completed;
    summary.total_input_tokens += result.input_tokens;
    summary.total_generated_tokens += result.generated_tokens;
    ttfts.push_back(result.ttft_s);
    if (result.generated_tokens > 1) tpots.push_back(result.tpot_s);
    itls.insert(itls.end(), result.itl_s.begin(), result.itl_s.end());
    e2els.push_back(result.e2el_s);
  }
  if (duration_s > 0) {
    summary.request_throughput = summary.completed / duration_s;
    summary.output_throughput = summary.total_generated_tokens / duration_s;
    summary.total_token_throughput =
        (summary.total_input_tokens + summary.total_generated_tokens) / duration_s;
  }
  summary.ttft = StatsOf(ttfts);
  summary.tpot = StatsOf(tpots);
  summary.itl = StatsOf(itls);
  summary.e2el = StatsOf(e2els);
  if (slo) {
    summary.slo = slo;
    const std::vector<workload::RequestTiming> timings = Timings(results);
    const auto good = std::count_if(timings.begin(), timings.end(),
                                    [&](const auto& t) { return workload::Attained(t, *slo); });
    summary.request_goodput = duration_s > 0 ? good / duration_s : 0;
    summary.slo_attainment = workload::Attainment(timings, *slo);
  }
  return summary;
}

std::string FormatSummary(const BenchmarkSummary& s) {
  std::string out = Rule(" Serving Benchmark Result ", '=');
  out += Line("Successful requests:", absl::StrCat(s.completed));
  out += Line("Failed requests:", absl::StrCat(s.failed));
  out += Line("Benchmark duration (s):", Fixed(s.duration_s));
  out += Line("Total input tokens:", absl::StrCat(s.total_input_tokens));
  out += Line("Total generated tokens:", absl::StrCat(s.total_generated_tokens));
  out += Line("Request throughput (req/s):", Fixed(s.request_throughput));
  if (s.request_goodput) out += Line("Request goodput (req/s):", Fixed(*s.request_goodput));
  out += Line("Output token throughput (tok/s):", Fixed(s.output_throughput));
  out += Line("Total Token throughput (tok/s):", Fixed(s.total_token_throughput));
  if (s.slo_attainment) out += Line("SLO attainment (%):", Fixed(*s.slo_attainment * 100));
  AppendLatency(out, "Time to First Token", "TTFT", s.ttft);
  AppendLatency(out, "Time per Output Token (excl. 1st token)", "TPOT", s.tpot);
  AppendLatency(out, "Inter-token Latency", "ITL", s.itl);
  AppendLatency(out, "End-to-end Latency", "E2EL", s.e2el);
  out += std::string(kRuleWidth, '=') + "\n";
  return out;
}

std::vector<ScaledAttainment> AttainmentByScale(const std::vector<RequestResult>& results,
                                                const workload::Slo& slo,
                                                const std::vector<double>& scales) {
  const std::vector<workload::RequestTiming> timings = Timings(results);
  std::vector<ScaledAttainment> attainments;
  for (double scale : scales) {
    attainments.push_back({scale, workload::Attainment(timings, slo, scale)});
  }
  return attainments;
}

nlohmann::json SummaryJson(const BenchmarkSummary& s) {
  nlohmann::json json = {{"completed", s.completed},
                         {"failed", s.failed},
                         {"duration_s", s.duration_s},
                         {"total_input_tokens", s.total_input_tokens},
                         {"total_generated_tokens", s.total_generated_tokens},
                         {"request_throughput", s.request_throughput},
                         {"output_throughput", s.output_throughput},
                         {"total_token_throughput", s.total_token_throughput},
                         {"ttft", LatencyJson(s.ttft)},
                         {"tpot", LatencyJson(s.tpot)},
                         {"itl", LatencyJson(s.itl)},
                         {"e2el", LatencyJson(s.e2el)}};
  if (s.slo) json["slo"] = {{"ttft_s", s.slo->ttft_s}, {"tpot_s", s.slo->tpot_s}};
  if (s.request_goodput) json["request_goodput"] = *s.request_goodput;
  if (s.slo_attainment) json["slo_attainment"] = *s.slo_attainment;
  return json;
}

nlohmann::json RequestJson(const RequestResult& r) {
  nlohmann::json json = {{"index", r.index},
                         {"arrival_s", r.arrival_s},
                         {"sent_s", r.sent_s},
                         {"input_tokens", r.input_tokens},
                         {"output_tokens", r.output_tokens},
                         {"generated_tokens", r.generated_tokens},
                         {"success", r.success},
                         {"ttft_s", r.ttft_s},
                         {"tpot_s", r.tpot_s},
                         {"e2el_s", r.e2el_s},
                         {"itl_s", r.itl_s}};
  if (!r.error.empty()) json["error"] = r.error;
  return json;
}

}  // namespace troupe::serving::bench
