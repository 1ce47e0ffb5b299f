#include "serving/workload/slo.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace troupe::serving::workload {
namespace {

// RequiredScale is the smallest SLO scale at which `timing` is attained: the larger of its two
// latencies relative to their SLOs; infinite for a failed request.
double RequiredScale(const RequestTiming& timing, const Slo& slo) {
  if (timing.failed) return std::numeric_limits<double>::infinity();
  return std::max(timing.ttft_s / slo.ttft_s, timing.tpot_s / slo.tpot_s);
}

}  // namespace

bool Attained(const RequestTiming& timing, const Slo& slo, double scale) {
  return !timing.failed && timing.ttft_s <= slo.ttft_s * scale &&
         timing.tpot_s <= slo.tpot_s * scale;
}

double Attainment(const std::vector<RequestTiming>& timings, const Slo& slo, double scale) {
  if (timings.empty()) return 0;
  const auto attained = std::count_if(timings.begin(), timings.end(), [&](const RequestTiming& t) {
    return Attained(t, slo, scale);
  });
  return static_cast<double>(attained) / static_cast<double>(timings.size());
}

absl::StatusOr<double> MinSloScale(const std::vector<RequestTiming>& timings, const Slo& slo,
                                   double target, double max_scale, double precision) {
  if (!(slo.ttft_s > 0) || !(slo.tpot_s > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("the SLO (ttft_s ", slo.ttft_s, ", tpot_s ",
                                                   slo.tpot_s, ") must be above 0 in both"));
  }
  if (!(target > 0 && target <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("target attainment is ", target, ": it must be in (0, 1]"));
  }
  if (!(max_scale > 0) || !(precision > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("max_scale (", max_scale, ") and precision (",
                                                   precision, ") must be above 0"));
  }
  if (timings.empty()) {
    return absl::NotFoundError("no requests: the SLO attainment is 0 at every scale");
  }
  // Attainment only grows with the scale, and it reaches the target exactly when the
  // ceil(target * n)-th smallest required scale is covered: no search needed.
  std::vector<double> required;
  required.reserve(timings.size());
  for (const RequestTiming& timing : timings) required.push_back(RequiredScale(timing, slo));
  std::sort(required.begin(), required.end());
  // The small slack keeps 0.9 * 10 from rounding up to 10 requests.
  const size_t needed = std::max<size_t>(
      1, static_cast<size_t>(std::ceil(target * static_cast<double>(timings.size()) - 1e-9)));
  const double exact_scale = required[needed - 1];
  const auto not_found = [&] {
    return absl::NotFoundError(absl::StrCat(
        "the SLO attainment stays under ", target, " up to the largest scale searched (", max_scale,
        "): the requests are too slow (or failed) for this SLO"));
  };
  if (!std::isfinite(exact_scale) || exact_scale > max_scale) return not_found();
  // Round up to a multiple of precision; step once more where floating point rounded it down.
  double steps = std::max(1.0, std::ceil(exact_scale / precision - 1e-9));
  if (Attainment(timings, slo, steps * precision) < target - 1e-12) steps += 1;
  // exact_scale <= max_scale, so max_scale itself attains the target where rounding passed it.
  return std::min(steps * precision, max_scale);
}

}  // namespace troupe::serving::workload
