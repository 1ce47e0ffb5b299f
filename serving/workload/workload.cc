#include "serving/workload/workload.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace troupe::serving::workload {
namespace {

// --- Length distributions -----------------------------------------------------------------------
//
// DistServe shows its datasets' lengths only as histograms (Fig. 7, no numeric means), so each is
// modelled by log-normals fitted by eye to those histograms and to the datasets' published
// statistics. The parameters are the distribution's median (exp(mu)) and sigma; the mean of a
// log-normal is median * exp(sigma^2 / 2). The untruncated and the resulting means (20k draws,
// max_total_tokens 2048, checked by workload_test) are noted beside each.

// Chatbot (ShareGPT). Long-tailed prompts and outputs of a few hundred tokens. The filter is
// vLLM's benchmark_serving.py for ShareGPT (docs: serving_landscape.md section 2): a pair is
// dropped (here: redrawn) if its prompt or output is under 4 tokens, its prompt is over 1024
// tokens (half the 2048 total) or its total is over 2048.
constexpr double kChatbotInputMedian = 400;  // untruncated mean 551; after the filter about 400
constexpr double kChatbotInputSigma = 0.8;
constexpr double kChatbotOutputMedian = 200;  // untruncated mean 256; after the filter about 254
constexpr double kChatbotOutputSigma = 0.7;
constexpr int kChatbotMinTokens = 4;              // vLLM drops prompts/outputs under 4 tokens
constexpr double kChatbotMaxInputFraction = 0.5;  // vLLM: prompt <= 1024 of 2048

// Code completion (HumanEval): 164 short function signatures with docstrings (~150 tokens) whose
// canonical solutions are the outputs (~100 tokens); narrow compared with ShareGPT.
constexpr double kCodeInputMedian = 140;  // mean about 155
constexpr double kCodeInputSigma = 0.45;
constexpr double kCodeOutputMedian = 90;  // mean about 105
constexpr double kCodeOutputSigma = 0.55;

// Summarization (LongBench): DistServe truncates each prompt so that the request's total is a
// uniform random length in [1900, 2048) (scaled by max_total_tokens / 2048 for other contexts);
// the summaries are short.
constexpr double kSummarizationMinTotalFraction = 1900.0 / 2048.0;
constexpr double kSummarizationOutputMedian = 130;  // mean about 141
constexpr double kSummarizationOutputSigma = 0.4;
// A summary is at most a quarter of the request, so the prompt stays the long part even when
// max_total_tokens is small (at 2048 this cuts only the far tail: P(output > 475) < 1e-3).
constexpr double kSummarizationMaxOutputFraction = 0.25;

// The smallest max_total_tokens any dataset accepts (LengthDistribution::For).
constexpr int kMinMaxTotalTokens = 64;
// A filtered draw is retried this many times; the last draw is then clamped into the bounds, so
// Draw always terminates (only tiny max_total_tokens get this far).
constexpr int kMaxDrawAttempts = 100;

// Separate streams of one seed for lengths and arrivals, so that a workload at another rate keeps
// its lengths (workload.h).
constexpr uint64_t kLengthStream = 0x6c656e67746873;   // "lengths"
constexpr uint64_t kArrivalStream = 0x6172726976616c;  // "arrival"

int DrawLogNormal(std::mt19937_64& random, double median, double sigma) {
  std::lognormal_distribution<double> distribution(std::log(median), sigma);
  return static_cast<int>(std::lround(distribution(random)));
}

std::mt19937_64 StreamOf(uint64_t seed, uint64_t stream) {
  std::seed_seq sequence{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                         static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)};
  return std::mt19937_64(sequence);
}

}  // namespace

absl::StatusOr<Dataset> ParseDataset(std::string_view name) {
  for (Dataset dataset : {Dataset::kChatbot, Dataset::kCode, Dataset::kSummarization}) {
    if (name == DatasetName(dataset)) return dataset;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown dataset \"", std::string(name),
                                                 "\": use chatbot, code or summarization"));
}

const char* DatasetName(Dataset dataset) {
  switch (dataset) {
    case Dataset::kChatbot:
      return "chatbot";
    case Dataset::kCode:
      return "code";
    case Dataset::kSummarization:
      return "summarization";
  }
  return "unknown";
}

absl::StatusOr<LengthDistribution> LengthDistribution::For(Dataset dataset, int max_total_tokens) {
  if (max_total_tokens < kMinMaxTotalTokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_total_tokens is ", max_total_tokens, ": the ", DatasetName(dataset),
                     " dataset needs at least ", kMinMaxTotalTokens,
                     " tokens per request; raise it (DistServe uses 2048)"));
  }
  return LengthDistribution(dataset, max_total_tokens);
}

LengthDistribution::Lengths LengthDistribution::Draw(std::mt19937_64& random) const {
  Lengths lengths;
  switch (dataset_) {
    case Dataset::kChatbot: {
      const int max_input = static_cast<int>(max_total_tokens_ * kChatbotMaxInputFraction);
      for (int attempt = 0; attempt < kMaxDrawAttempts; ++attempt) {
        lengths.input_tokens = DrawLogNormal(random, kChatbotInputMedian, kChatbotInputSigma);
        lengths.output_tokens = DrawLogNormal(random, kChatbotOutputMedian, kChatbotOutputSigma);
        if (lengths.input_tokens >= kChatbotMinTokens && lengths.input_tokens <= max_input &&
            lengths.output_tokens >= kChatbotMinTokens &&
            lengths.input_tokens + lengths.output_tokens <= max_total_tokens_) {
          return lengths;
        }
      }
      break;  // clamped below
    }
    case Dataset::kCode:
      lengths.input_tokens = DrawLogNormal(random, kCodeInputMedian, kCodeInputSigma);
      lengths.output_tokens = DrawLogNormal(random, kCodeOutputMedian, kCodeOutputSigma);
      break;
    case Dataset::kSummarization: {
      const int min_total =
          static_cast<int>(std::ceil(max_total_tokens_ * kSummarizationMinTotalFraction));
      std::uniform_int_distribution<int> total_tokens(min_total, max_total_tokens_ - 1);
      const int total = total_tokens(random);
      const int max_output = std::max(1, static_cast<int>(total * kSummarizationMaxOutputFraction));
      lengths.output_tokens =
          std::clamp(DrawLogNormal(random, kSummarizationOutputMedian, kSummarizationOutputSigma),
                     1, max_output);
      lengths.input_tokens = total - lengths.output_tokens;
      return lengths;
    }
  }
  // Clamp into the bounds: the output keeps at least one token of room for the prompt.
  lengths.output_tokens = std::clamp(lengths.output_tokens, 1, max_total_tokens_ - 1);
  lengths.input_tokens =
      std::clamp(lengths.input_tokens, 1, max_total_tokens_ - lengths.output_tokens);
  return lengths;
}

absl::StatusOr<std::vector<Request>> Generate(const WorkloadSpec& spec) {
  if (!(spec.rate_per_s > 0) || !std::isfinite(spec.rate_per_s)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rate_per_s is ", spec.rate_per_s,
                     ": it must be a finite number of requests per second "
                     "above 0"));
  }
  if (!(spec.cv > 0) || !std::isfinite(spec.cv)) {
    return absl::InvalidArgumentError(
        absl::StrCat("cv is ", spec.cv,
                     ": the inter-arrival coefficient of variation must be above 0 "
                     "(1 is Poisson)"));
  }
  if (spec.num_requests < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_requests is ", spec.num_requests, ": it must be at least 1"));
  }
  absl::StatusOr<LengthDistribution> lengths =
      LengthDistribution::For(spec.dataset, spec.max_total_tokens);
  if (!lengths.ok()) return lengths.status();

  // Gamma(shape k, scale theta) has mean k * theta and CV 1 / sqrt(k): k = 1 / cv^2 and
  // theta = 1 / (rate * k) give mean 1 / rate and CV cv (k = 1 is exponential: Poisson).
  const double shape = 1.0 / (spec.cv * spec.cv);
  std::gamma_distribution<double> gap_s(shape, 1.0 / (spec.rate_per_s * shape));
  std::mt19937_64 length_random = StreamOf(spec.seed, kLengthStream);
  std::mt19937_64 arrival_random = StreamOf(spec.seed, kArrivalStream);

  std::vector<Request> requests;
  requests.reserve(spec.num_requests);
  double arrival_s = 0;
  for (int i = 0; i < spec.num_requests; ++i) {
    arrival_s += gap_s(arrival_random);
    LengthDistribution::Lengths drawn = lengths->Draw(length_random);
    requests.push_back({.arrival_s = arrival_s,
                        .input_tokens = drawn.input_tokens,
                        .output_tokens = drawn.output_tokens});
  }
  return requests;
}

std::vector<Request> WithRate(const std::vector<Request>& requests, double rate_per_s) {
  std::vector<Request> scaled = requests;
  if (requests.empty() || !(rate_per_s > 0)) return scaled;
  // The trace's own mean rate is its request count over its span (the first request arrives one
  // gap after the start, as Generate's do).
  const double span_s = requests.back().arrival_s;
  if (!(span_s > 0)) return scaled;
  const double current_rate_per_s = static_cast<double>(requests.size()) / span_s;
  const double factor = current_rate_per_s / rate_per_s;
  for (Request& request : scaled) request.arrival_s *= factor;
  return scaled;
}

namespace {

// ParseTraceLine reads one trace line's request; errors say what is wrong with the line (the
// caller adds the file and line number).
absl::StatusOr<Request> ParseTraceLine(const std::string& text) {
  nlohmann::json line = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (line.is_discarded()) return absl::InvalidArgumentError("not valid JSON");
  if (!line.is_object()) return absl::InvalidArgumentError("not a JSON object");
  Request request;
  auto arrival = line.find("arrival_s");
  if (arrival == line.end() || !arrival->is_number()) {
    return absl::InvalidArgumentError("\"arrival_s\" is missing or not a number");
  }
  request.arrival_s = arrival->get<double>();
  if (!(request.arrival_s >= 0) || !std::isfinite(request.arrival_s)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"arrival_s\" is ", request.arrival_s, ": it must be >= 0"));
  }
  for (auto [name, field] : {std::pair{"input_tokens", &request.input_tokens},
                             std::pair{"output_tokens", &request.output_tokens}}) {
    auto value = line.find(name);
    if (value == line.end() || !value->is_number_integer()) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", name, "\" is missing or not an integer"));
    }
    const int64_t tokens = value->get<int64_t>();
    if (tokens < 1 || tokens > std::numeric_limits<int>::max()) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", name, "\" is ", tokens, ": it must be at least 1"));
    }
    *field = static_cast<int>(tokens);
  }
  return request;
}

}  // namespace

absl::StatusOr<std::vector<Request>> ReadTrace(const std::string& path) {
  std::ifstream file(path);
  if (!file) {
    return absl::NotFoundError(
        absl::StrCat("cannot open trace ", path, ": check the path (a JSON Lines file)"));
  }
  constexpr const char* kExpected =
      "; each line must be {\"arrival_s\": seconds >= 0, \"input_tokens\": n >= 1, "
      "\"output_tokens\": n >= 1}, arrivals in non-decreasing order";
  std::vector<Request> requests;
  std::string text;
  for (int line_number = 1; std::getline(file, text); ++line_number) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    absl::StatusOr<Request> request = ParseTraceLine(text);
    if (!request.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_number, ": ", request.status().message(), kExpected));
    }
    if (!requests.empty() && request->arrival_s < requests.back().arrival_s) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_number, ": arrival_s ", request->arrival_s,
                       " is before the previous line's ", requests.back().arrival_s,
                       ": arrivals are out of order; sort the trace by arrival_s"));
    }
    requests.push_back(*request);
  }
  return requests;
}

absl::Status WriteTrace(const std::string& path, const std::vector<Request>& requests) {
  std::ofstream file(path);
  if (!file) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot write trace ", path, ": check that its folder exists and is writable"));
  }
  for (const Request& request : requests) {
    // nlohmann writes doubles with the shortest text that reads back exactly.
    nlohmann::json line = {{"arrival_s", request.arrival_s},
                           {"input_tokens", request.input_tokens},
                           {"output_tokens", request.output_tokens}};
    file << line.dump() << '\n';
  }
  file.close();
  if (!file) {
    return absl::DataLossError(absl::StrCat("writing trace ", path, " failed: check the disk"));
  }
  return absl::OkStatus();
}

}  // namespace troupe::serving::workload
