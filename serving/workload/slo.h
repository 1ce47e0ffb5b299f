// SLOs, attainment and goodput, with DistServe's definitions (docs/placement.md):
//   TTFT     arrival to first token, queueing included;
//   TPOT     (time of the last token - time of the first) / (output tokens - 1); 0 for one token;
//   attained a request meets BOTH SLOs (the paper's joint rule, not the released code's separate
//            P90 checks);
//   goodput  the highest rate whose attainment is at least the target (default 90%).
// The simulator and the benchmark client both summarize with these functions.
#pragma once

#include <vector>

#include "absl/status/statusor.h"

namespace troupe::serving::workload {

struct Slo {
  double ttft_s = 0.25;  // DistServe's chatbot SLO for OPT-13B
  double tpot_s = 0.1;
};

// RequestTiming is what a finished request took; a request that failed (an error, a refusal)
// counts as missing the SLO.
struct RequestTiming {
  double ttft_s = 0;
  double tpot_s = 0;
  bool failed = false;
};

// Attained is whether one request met both SLOs, each multiplied by `scale` (the SLO scale).
bool Attained(const RequestTiming& timing, const Slo& slo, double scale = 1.0);

// Attainment is the fraction of `timings` that attained the (scaled) SLO; 0 for none.
double Attainment(const std::vector<RequestTiming>& timings, const Slo& slo, double scale = 1.0);

// MinSloScale is the smallest scale s (to `precision`, searched in (0, max_scale]) at which the
// attainment reaches `target`; NotFound if even max_scale does not.
absl::StatusOr<double> MinSloScale(const std::vector<RequestTiming>& timings, const Slo& slo,
                                   double target = 0.9, double max_scale = 100.0,
                                   double precision = 0.01);

}  // namespace troupe::serving::workload
