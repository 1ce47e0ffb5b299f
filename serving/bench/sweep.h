// Rate sweeps and SLO-scale sweeps of `troupe bench`, as DistServe's Fig. 8 plots them: one run
// per rate (the same requests, only the arrivals move), and for each run the SLO attainment at
// several SLO scales, recomputed from the run's timings (no extra runs).
//
//   absl::StatusOr<workload::Slo> slo = ParseGoodputSpec("ttft:250 tpot:100");
//   SweepPoint point = SummarizePoint(rate, *std::move(run), slo, {0.5, 1, 2, 4});
//   std::cout << FormatSweep(points);
//
// DistServe's goodput over a sweep is the highest rate whose attainment (at scale 1) reaches the
// target (90%); MaxRateMeetingTarget takes it conservatively: every lower rate must reach it too.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"
#include "serving/bench/client.h"
#include "serving/bench/summary.h"
#include "serving/workload/slo.h"

namespace troupe::serving::bench {

// DistServe's attainment target (section 4: 90%; 99% in its Appendix C).
inline constexpr double kDefaultAttainmentTarget = 0.9;

// ParseGoodputSpec reads vLLM's --goodput value: space-separated "ttft:MS" and "tpot:MS" (either
// or both; a missing one does not constrain). InvalidArgument names the bad part and the form.
absl::StatusOr<workload::Slo> ParseGoodputSpec(std::string_view spec);

// ParsePositiveList reads a comma-separated list of numbers above 0 ("1,2,4"); errors name
// `flag`.
absl::StatusOr<std::vector<double>> ParsePositiveList(std::string_view text, std::string_view flag);

// SweepPoint is one run of a sweep and what it is summarized as.
struct SweepPoint {
  double rate_per_s = 0;  // the workload's mean arrival rate
  BenchmarkRun run;
  BenchmarkSummary summary;
  std::vector<ScaledAttainment> attainment_by_scale;  // with an SLO and scales
  std::optional<double> min_slo_scale;  // smallest scale reaching the target, with an SLO
};

SweepPoint SummarizePoint(double rate_per_s, BenchmarkRun run, std::optional<workload::Slo> slo,
                          const std::vector<double>& slo_scales,
                          double target = kDefaultAttainmentTarget);

// MaxRateMeetingTarget is the highest rate at which it and every lower rate of the sweep reach
// the target attainment (at SLO scale 1); nullopt without an SLO or when the lowest misses.
std::optional<double> MaxRateMeetingTarget(const std::vector<SweepPoint>& points,
                                           double target = kDefaultAttainmentTarget);

// FormatSweep is a table: one row per rate with throughput, goodput and the attainment at each
// scale, then the highest rate reaching the target.
std::string FormatSweep(const std::vector<SweepPoint>& points,
                        double target = kDefaultAttainmentTarget);

// SweepJson is the file `troupe bench --json_out` writes: `config`, then every run with its
// summary, attainment by scale and every request's timings (tools/plot_bench.py reads it).
nlohmann::json SweepJson(const nlohmann::json& config, const std::vector<SweepPoint>& points,
                         double target = kDefaultAttainmentTarget);

}  // namespace troupe::serving::bench
