#include "tools/workload_flags.h"

#include <cmath>
#include <cstdint>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "tools/common_flags.h"

// Defaults are WorkloadSpec's (serving/workload/workload.h): DistServe's 2048-token requests,
// Poisson arrivals, and vLLM's 1000 prompts.
ABSL_FLAG(std::string, dataset, "chatbot",
          "Workload lengths shaped like DistServe's datasets: chatbot (ShareGPT), code "
          "(HumanEval) or summarization (LongBench).");
ABSL_FLAG(std::string, trace, "",
          "Replay this JSON Lines trace ({\"arrival_s\", \"input_tokens\", \"output_tokens\"} "
          "per line) instead of --dataset.");
ABSL_FLAG(double, rate, 0,
          "Mean arrival rate (requests/s). 0: 1 for --dataset, the recorded timing for --trace.");
ABSL_FLAG(double, cv, 1.0,
          "Burstiness: the coefficient of variation of inter-arrival gaps (Gamma, shape 1/cv^2); "
          "1 is Poisson.");
ABSL_FLAG(int, num_requests, 1000, "Requests in the workload (--dataset).");
ABSL_FLAG(int, max_total_tokens, 2048,
          "Largest prompt + output of a request (--dataset); at most the server's context "
          "(512 for the tiny model).");

namespace troupe {

using serving::workload::Request;

double RateFlag() { return absl::GetFlag(FLAGS_rate); }

absl::StatusOr<std::vector<Request>> WorkloadFromFlags(std::optional<double> rate_per_s) {
  const double rate = rate_per_s.value_or(absl::GetFlag(FLAGS_rate));
  if (rate < 0 || !std::isfinite(rate)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--rate is ", rate, ": give a mean arrival rate in requests/s above 0 (or 0: unset)"));
  }
  const std::string trace = absl::GetFlag(FLAGS_trace);
  if (!trace.empty()) {
    absl::StatusOr<std::vector<Request>> requests = serving::workload::ReadTrace(trace);
    if (!requests.ok()) return requests.status();
    if (requests->empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--trace ", trace, " has no requests: give a trace with at least one line"));
    }
    return rate > 0 ? serving::workload::WithRate(*requests, rate) : *requests;
  }
  absl::StatusOr<serving::workload::Dataset> dataset =
      serving::workload::ParseDataset(absl::GetFlag(FLAGS_dataset));
  if (!dataset.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--dataset: ", dataset.status().message()));
  }
  serving::workload::WorkloadSpec spec;
  spec.dataset = *dataset;
  if (rate > 0) spec.rate_per_s = rate;
  spec.cv = absl::GetFlag(FLAGS_cv);
  spec.num_requests = absl::GetFlag(FLAGS_num_requests);
  spec.seed = absl::GetFlag(FLAGS_seed);
  spec.max_total_tokens = absl::GetFlag(FLAGS_max_total_tokens);
  absl::StatusOr<std::vector<Request>> requests = serving::workload::Generate(spec);
  if (!requests.ok()) {
    // The spec's fields are named as their flags (cv, num_requests, max_total_tokens).
    return absl::InvalidArgumentError(absl::StrCat("--", requests.status().message()));
  }
  return requests;
}

nlohmann::json WorkloadFlagsJson() {
  const std::string trace = absl::GetFlag(FLAGS_trace);
  nlohmann::json json = {{"rate", absl::GetFlag(FLAGS_rate)}, {"seed", absl::GetFlag(FLAGS_seed)}};
  if (!trace.empty()) {
    json["trace"] = trace;
  } else {
    json["dataset"] = absl::GetFlag(FLAGS_dataset);
    json["cv"] = absl::GetFlag(FLAGS_cv);
    json["num_requests"] = absl::GetFlag(FLAGS_num_requests);
    json["max_total_tokens"] = absl::GetFlag(FLAGS_max_total_tokens);
  }
  return json;
}

}  // namespace troupe
