// Workloads for serving benchmarks and the placement simulator: request arrivals, request
// lengths shaped like DistServe's three datasets, and trace files.
//
// One workload feeds both the simulator (serving/placement) and the HTTP benchmark client
// (`troupe bench`), so that their SLO attainments are comparable request for request.
//
//   WorkloadSpec spec{.dataset = Dataset::kChatbot, .rate_per_s = 2.0, .num_requests = 500};
//   absl::StatusOr<std::vector<Request>> requests = Generate(spec);
//
// Lengths and arrivals come from two independent random streams of the seed: the same seed at
// another rate (or burstiness) gives the same lengths in the same order, only the arrival times
// move. A rate sweep therefore compares like with like.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace troupe::serving::workload {

// Request is one request of a workload: when it arrives (seconds from the workload's start), its
// prompt length and how many tokens it generates (forced, as DistServe's client does with
// ignore_eos).
struct Request {
  double arrival_s = 0;
  int input_tokens = 0;
  int output_tokens = 0;
};

// Dataset names a length distribution shaped like one of DistServe's evaluation datasets:
//   kChatbot        ShareGPT: prompts and outputs of a few hundred tokens, long-tailed;
//   kCode           HumanEval: short prompts (~150 tokens), short outputs (~100);
//   kSummarization  LongBench: long prompts (truncated to [1900, 2048) total), short outputs.
// Every request's input + output is at most WorkloadSpec::max_total_tokens.
enum class Dataset { kChatbot, kCode, kSummarization };

// ParseDataset accepts "chatbot", "code" and "summarization" (InvalidArgument naming the value
// and the choices otherwise); DatasetName is its inverse.
absl::StatusOr<Dataset> ParseDataset(std::string_view name);
const char* DatasetName(Dataset dataset);

// LengthDistribution draws (input, output) lengths of a dataset.
class LengthDistribution {
 public:
  // For fails (InvalidArgument) when max_total_tokens leaves no room for the dataset (under 64).
  static absl::StatusOr<LengthDistribution> For(Dataset dataset, int max_total_tokens = 2048);

  struct Lengths {
    int input_tokens = 0;
    int output_tokens = 0;
  };
  // Draw returns one request's lengths: input >= 1, output >= 1, input + output <=
  // max_total_tokens.
  Lengths Draw(std::mt19937_64& random) const;

  Dataset dataset() const { return dataset_; }
  int max_total_tokens() const { return max_total_tokens_; }

 private:
  LengthDistribution(Dataset dataset, int max_total_tokens)
      : dataset_(dataset), max_total_tokens_(max_total_tokens) {}
  Dataset dataset_;
  int max_total_tokens_;
};

struct WorkloadSpec {
  Dataset dataset = Dataset::kChatbot;
  // Mean arrival rate (requests per second), > 0.
  double rate_per_s = 1.0;
  // Burstiness: inter-arrival times are Gamma(shape = 1 / cv^2, mean = 1 / rate): cv 1 is a
  // Poisson process, larger is burstier, smaller more regular. > 0.
  double cv = 1.0;
  int num_requests = 1000;  // >= 1
  uint64_t seed = 0;
  int max_total_tokens = 2048;
};

// Generate draws spec.num_requests requests, sorted by arrival (the first arrives after one
// inter-arrival gap). Bad fields are InvalidArgument naming the field and its valid range.
absl::StatusOr<std::vector<Request>> Generate(const WorkloadSpec& spec);

// WithRate returns `requests` with every arrival time scaled so that the mean rate becomes
// rate_per_s (lengths and order unchanged): a trace replayed faster or slower.
std::vector<Request> WithRate(const std::vector<Request>& requests, double rate_per_s);

// Traces are JSON Lines, one request per line:
//   {"arrival_s": 0.52, "input_tokens": 412, "output_tokens": 87}
// Blank lines are skipped; anything else that is not such an object (a missing or negative
// field, lengths under 1, arrivals out of order) is InvalidArgument naming the file, the line
// number and the fix. A missing file is NotFound.
absl::StatusOr<std::vector<Request>> ReadTrace(const std::string& path);
absl::Status WriteTrace(const std::string& path, const std::vector<Request>& requests);

}  // namespace troupe::serving::workload
