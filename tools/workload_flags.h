// The workload flags of `troupe bench` (and of any command that replays a workload): a dataset
// shaped like one of DistServe's (serving/workload) at a rate, or a JSON Lines trace.
//
//   --dataset=chatbot|code|summarization --rate=R --cv=C --num_requests=N --max_total_tokens=T
//   --trace=FILE.jsonl [--rate=R]
//   --seed=S   (shared with the model flags: one seed per command line)
#pragma once

#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"
#include "serving/workload/workload.h"

namespace troupe {

// WorkloadFromFlags is the workload the flags describe, with its mean rate set to `rate_per_s`
// when given (a sweep), else to --rate. A dataset at rate 0 (unset) runs at 1 request/s; a
// trace at rate 0 keeps its recorded timing. Errors name the flag and the fix.
absl::StatusOr<std::vector<serving::workload::Request>> WorkloadFromFlags(
    std::optional<double> rate_per_s = std::nullopt);

// RateFlag is --rate (0: unset).
double RateFlag();

// WorkloadFlagsJson is the workload flags as a JSON object, for a results file's config.
nlohmann::json WorkloadFlagsJson();

}  // namespace troupe
