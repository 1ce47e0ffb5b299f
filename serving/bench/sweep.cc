#include "serving/bench/sweep.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace troupe::serving::bench {
namespace {

constexpr double kSPerMs = 1e-3;
constexpr char kGoodputForm[] =
    "use \"ttft:MS tpot:MS\" (either or both), e.g. \"ttft:250 tpot:100\"";

nlohmann::json OptionalJson(std::optional<double> value) {
  return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

}  // namespace

absl::StatusOr<workload::Slo> ParseGoodputSpec(std::string_view spec) {
  workload::Slo slo{.ttft_s = std::numeric_limits<double>::infinity(),
                    .tpot_s = std::numeric_limits<double>::infinity()};
  bool any = false;
  for (absl::string_view part :
       absl::StrSplit(absl::string_view(spec.data(), spec.size()), ' ', absl::SkipEmpty())) {
    const std::vector<absl::string_view> key_value = absl::StrSplit(part, ':');
    double ms = 0;
    if (key_value.size() != 2 || !absl::SimpleAtod(key_value[1], &ms) || !(ms > 0) ||
        !std::isfinite(ms)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--goodput part \"", part,
                       "\" is not NAME:MILLISECONDS with a number above 0; ", kGoodputForm));
    }
    if (key_value[0] == "ttft") {
      slo.ttft_s = ms * kSPerMs;
    } else if (key_value[0] == "tpot") {
      slo.tpot_s = ms * kSPerMs;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--goodput names \"", key_value[0],
                       "\", which is not an SLO troupe checks (ttft, tpot; "
                       "DistServe's joint rule has no e2el); ",
                       kGoodputForm));
    }
    any = true;
  }
  if (!any) return absl::InvalidArgumentError(absl::StrCat("--goodput is empty; ", kGoodputForm));
  return slo;
}

absl::StatusOr<std::vector<double>> ParsePositiveList(std::string_view text,
                                                      std::string_view flag) {
  std::vector<double> values;
  for (absl::string_view part : absl::StrSplit(absl::string_view(text.data(), text.size()), ',')) {
    double value = 0;
    if (!absl::SimpleAtod(part, &value) || !(value > 0) || !std::isfinite(value)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--", std::string(flag), " has \"", part,
          "\", which is not a number above 0; give a comma-separated list such as 1,2,4"));
    }
    values.push_back(value);
  }
  return values;
}

SweepPoint SummarizePoint(double rate_per_s, BenchmarkRun run, std::optional<workload::Slo> slo,
                          const std::vector<double>& slo_scales, double target) {
  SweepPoint point;
  point.rate_per_s = rate_per_s;
  point.summary = Summarize(run.results, run.duration_s, slo);
  if (slo) {
    point.attainment_by_scale = AttainmentByScale(run.results, *slo, slo_scales);
    absl::StatusOr<double> min_scale = workload::MinSloScale(Timings(run.results), *slo, target);
    if (min_scale.ok()) point.min_slo_scale = *min_scale;
  }
  point.run = std::move(run);
  return point;
}

std::optional<double> MaxRateMeetingTarget(const std::vector<SweepPoint>& points, double target) {
  std::vector<const SweepPoint*> by_rate;
  for (const SweepPoint& point : points) by_rate.push_back(&point);
  std::sort(by_rate.begin(), by_rate.end(),
            [](const SweepPoint* a, const SweepPoint* b) { return a->rate_per_s < b->rate_per_s; });
  std::optional<double> best;
  for (const SweepPoint* point : by_rate) {
    if (!point->summary.slo_attainment || *point->summary.slo_attainment < target) break;
    best = point->rate_per_s;
  }
  return best;
}

std::string FormatSweep(const std::vector<SweepPoint>& points, double target) {
  std::string out = "============================ Sweep =============================\n";
  out += absl::StrFormat("%12s %10s %10s %10s", "rate(req/s)", "ok", "req/s", "good/s");
  const std::vector<ScaledAttainment>& scales =
      points.empty() ? std::vector<ScaledAttainment>() : points.front().attainment_by_scale;
  for (const ScaledAttainment& scale : scales) {
    out += absl::StrFormat(" %9s", absl::StrCat("x", scale.scale, "%"));
  }
  out += absl::StrFormat(" %10s\n", "min scale");
  for (const SweepPoint& point : points) {
    const BenchmarkSummary& s = point.summary;
    out += absl::StrFormat("%12.3f %10d %10.3f %10s", point.rate_per_s, s.completed,
                           s.request_throughput,
                           s.request_goodput ? absl::StrFormat("%.3f", *s.request_goodput) : "-");
    for (const ScaledAttainment& scale : point.attainment_by_scale) {
      out += absl::StrFormat(" %9.1f", scale.attainment * 100);
    }
    out += absl::StrFormat(
        " %10s\n", point.min_slo_scale ? absl::StrFormat("%.2f", *point.min_slo_scale) : "-");
  }
  if (!points.empty() && points.front().summary.slo) {
    const std::optional<double> best = MaxRateMeetingTarget(points, target);
    out +=
        absl::StrFormat("Max rate with >= %.0f%% SLO attainment (req/s): %s\n", target * 100,
                        best ? absl::StrFormat("%.3f", *best) : "none (the lowest rate misses it)");
  }
  return out;
}

nlohmann::json SweepJson(const nlohmann::json& config, const std::vector<SweepPoint>& points,
                         double target) {
  nlohmann::json runs = nlohmann::json::array();
  for (const SweepPoint& point : points) {
    nlohmann::json by_scale = nlohmann::json::array();
    for (const ScaledAttainment& scale : point.attainment_by_scale) {
      by_scale.push_back({{"scale", scale.scale}, {"attainment", scale.attainment}});
    }
    nlohmann::json requests = nlohmann::json::array();
    for (const RequestResult& result : point.run.results) requests.push_back(RequestJson(result));
    runs.push_back({{"rate_per_s", point.rate_per_s},
                    {"summary", SummaryJson(point.summary)},
                    {"slo_attainment_by_scale", by_scale},
                    {"min_slo_scale", OptionalJson(point.min_slo_scale)},
                    {"requests", requests}});
  }
  return {{"config", config},
          {"attainment_target", target},
          {"max_rate_meeting_target", OptionalJson(MaxRateMeetingTarget(points, target))},
          {"runs", runs}};
}

}  // namespace troupe::serving::bench
