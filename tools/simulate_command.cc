#include "tools/simulate_command.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gpu/dtype.h"
#include "nlohmann/json.hpp"
#include "serving/bench/sweep.h"
#include "serving/model/config.h"
#include "serving/placement/latency_model.h"
#include "serving/placement/profile.h"
#include "serving/placement/simulator.h"
#include "serving/workload/slo.h"
#include "serving/workload/workload.h"

ABSL_FLAG(std::string, measured, "",
          "`simulate`: a `troupe bench --json_out` file whose runs are replayed.");
ABSL_FLAG(std::string, mode, "disaggregated",
          "`simulate`: the measured server's instances: disaggregated (one prefill and one decode "
          "instance, `troupe serve`'s default), colocated or chunked (`troupe serve --colocated`, "
          "with --chunked_prefill).");
ABSL_FLAG(int, prefill_kv_blocks, 256,
          "`simulate`: KV blocks of the prefill (or colocated) instance, as the server had them.");
ABSL_FLAG(int, decode_kv_blocks, 256, "`simulate`: KV blocks of the decode instance.");
ABSL_FLAG(double, kv_gbps, 0,
          "`simulate`: bandwidth of the KV hand-off in GB/s (0: instant, as within one process).");

ABSL_DECLARE_FLAG(std::string, profile);     // tools/plan_command.cc
ABSL_DECLARE_FLAG(double, ttft_s);           // tools/plan_command.cc
ABSL_DECLARE_FLAG(double, tpot_s);           // tools/plan_command.cc
ABSL_DECLARE_FLAG(std::string, json_out);    // tools/bench_command.cc
ABSL_DECLARE_FLAG(std::string, slo_scales);  // tools/bench_command.cc

namespace troupe {
namespace {

using Json = nlohmann::json;
using serving::placement::SimulationMode;
using serving::workload::Request;
using serving::workload::RequestTiming;

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "troupe simulate: error: %s\n", std::string(status.message()).c_str());
  return 1;
}

// MeasuredRun is one run of a bench JSON: its requests as sent and their measured timings.
struct MeasuredRun {
  double rate_per_s = 0;
  std::vector<Request> requests;
  std::vector<RequestTiming> timings;
};

struct Measured {
  std::vector<MeasuredRun> runs;
  serving::workload::Slo slo;  // the run's --goodput, if it had one
  bool has_slo = false;
};

absl::StatusOr<Measured> ReadMeasured(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(
        "--measured=", path, ": cannot open it; write one with `troupe bench --json_out`"));
  }
  std::stringstream text;
  text << in.rdbuf();
  const Json j = Json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  const auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat("--measured=", path, ": ", what, "; give a `troupe bench --json_out` file"));
  };
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  if (!j.contains("runs") || !j["runs"].is_array() || j["runs"].empty()) {
    return bad("no \"runs\" array");
  }
  Measured measured;
  for (size_t r = 0; r < j["runs"].size(); ++r) {
    const Json& run = j["runs"][r];
    if (!run.is_object() || !run.contains("requests") || !run["requests"].is_array()) {
      return bad(absl::StrCat("runs[", r, "] has no \"requests\" array"));
    }
    MeasuredRun m;
    m.rate_per_s = run.value("rate_per_s", 0.0);
    for (size_t i = 0; i < run["requests"].size(); ++i) {
      const Json& q = run["requests"][i];
      if (!q.is_object() || !q.contains("arrival_s") || !q.contains("input_tokens") ||
          !q.contains("output_tokens") || !q.contains("ttft_s") || !q.contains("tpot_s") ||
          !q.contains("success")) {
        return bad(absl::StrCat("runs[", r, "].requests[", i,
                                "] lacks one of arrival_s, input_tokens, output_tokens, ttft_s, "
                                "tpot_s, success"));
      }
      m.requests.push_back({q["arrival_s"].get<double>(), q["input_tokens"].get<int>(),
                            q["output_tokens"].get<int>()});
      m.timings.push_back(
          {q["ttft_s"].get<double>(), q["tpot_s"].get<double>(), !q["success"].get<bool>()});
    }
    if (m.requests.empty()) return bad(absl::StrCat("runs[", r, "] has no requests"));
    if (!measured.has_slo && run.contains("summary") && run["summary"].contains("slo")) {
      measured.slo.ttft_s = run["summary"]["slo"].value("ttft_s", 0.0);
      measured.slo.tpot_s = run["summary"]["slo"].value("tpot_s", 0.0);
      measured.has_slo = measured.slo.ttft_s > 0 && measured.slo.tpot_s > 0;
    }
    measured.runs.push_back(std::move(m));
  }
  return measured;
}

absl::StatusOr<SimulationMode> ParseMode(const std::string& mode, bool* chunked) {
  *chunked = false;
  if (mode == "disaggregated") return SimulationMode::kDisaggregated;
  if (mode == "colocated") return SimulationMode::kColocated;
  if (mode == "chunked") {
    *chunked = true;
    return SimulationMode::kColocated;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--mode=", mode, " is not one of disaggregated, colocated, chunked"));
}

double Mean(const std::vector<RequestTiming>& timings, double RequestTiming::*field) {
  double sum = 0;
  int n = 0;
  for (const RequestTiming& t : timings) {
    if (t.failed) continue;
    sum += t.*field;
    ++n;
  }
  return n == 0 ? 0 : sum / n;
}

}  // namespace

int RunSimulate() {
  const std::string measured_path = absl::GetFlag(FLAGS_measured);
  const std::string profile_path = absl::GetFlag(FLAGS_profile);
  if (measured_path.empty() || profile_path.empty()) {
    return Fail(absl::InvalidArgumentError(
        "`troupe simulate` needs --measured (a `troupe bench --json_out` file) and --profile (a "
        "`troupe profile` of the same backend)"));
  }
  absl::StatusOr<Measured> measured = ReadMeasured(measured_path);
  if (!measured.ok()) return Fail(measured.status());
  absl::StatusOr<serving::placement::Profile> profile =
      serving::placement::ReadProfile(profile_path);
  if (!profile.ok()) return Fail(profile.status());
  absl::StatusOr<serving::model::ModelConfig> config = serving::model::ModelPreset(profile->model);
  if (!config.ok()) return Fail(config.status());
  absl::StatusOr<serving::placement::FittedLatencyModel> fitted =
      serving::placement::FittedLatencyModel::Fit(*profile, *config);
  if (!fitted.ok()) return Fail(fitted.status());
  absl::StatusOr<std::unique_ptr<serving::placement::StepTimeModel>> times = fitted->For(1, 1);
  if (!times.ok()) return Fail(times.status());
  std::printf("%s\n", fitted->Report().c_str());

  // The measured runs' SLO (their --goodput), or none: Slo's own defaults are not the user's.
  serving::workload::Slo slo = measured->has_slo ? measured->slo : serving::workload::Slo{0, 0};
  if (absl::GetFlag(FLAGS_ttft_s) > 0) slo.ttft_s = absl::GetFlag(FLAGS_ttft_s);
  if (absl::GetFlag(FLAGS_tpot_s) > 0) slo.tpot_s = absl::GetFlag(FLAGS_tpot_s);
  if (!(slo.ttft_s > 0 && slo.tpot_s > 0)) {
    return Fail(absl::InvalidArgumentError(
        "no SLO: the measured runs had no --goodput; give --ttft_s and --tpot_s"));
  }

  bool chunked = false;
  absl::StatusOr<SimulationMode> mode = ParseMode(absl::GetFlag(FLAGS_mode), &chunked);
  if (!mode.ok()) return Fail(mode.status());
  serving::placement::SimulatedCluster cluster;
  cluster.mode = *mode;
  cluster.prefill = {1, {1, 1}, times->get(), absl::GetFlag(FLAGS_prefill_kv_blocks)};
  cluster.decode = {1, {1, 1}, times->get(), absl::GetFlag(FLAGS_decode_kv_blocks)};
  absl::StatusOr<gpu::DType> dtype = gpu::DType::kFloat32;
  for (gpu::DType d : {gpu::DType::kFloat32, gpu::DType::kFloat16, gpu::DType::kBFloat16}) {
    if (profile->dtype == gpu::DTypeName(d)) dtype = d;
  }
  cluster.kv_bytes_per_token =
      static_cast<double>(serving::model::KvBytesPerToken(*config, *dtype));
  cluster.kv_transfer_bytes_per_s = absl::GetFlag(FLAGS_kv_gbps) * 1e9;
  serving::placement::SimulatorOptions options;
  options.chunked_prefill = chunked;
  absl::StatusOr<serving::placement::Simulator> simulator =
      serving::placement::Simulator::Create(cluster, options);
  if (!simulator.ok()) return Fail(simulator.status());

  // The SLO scales compared besides 1: a sweep whose attainments are all 100% (or 0%) at the
  // SLO itself says little, at tighter scales the attainments move.
  std::vector<double> scales = {1.0};
  if (const std::string text = absl::GetFlag(FLAGS_slo_scales); !text.empty()) {
    absl::StatusOr<std::vector<double>> parsed =
        serving::bench::ParsePositiveList(text, "--slo_scales");
    if (!parsed.ok()) return Fail(parsed.status());
    scales = *parsed;
  }
  std::printf("SLO: TTFT %.0f ms, TPOT %.0f ms; %s, %s\n", slo.ttft_s * 1e3, slo.tpot_s * 1e3,
              absl::GetFlag(FLAGS_mode).c_str(), fitted->Describe().c_str());
  std::printf("%10s %9s %7s %12s %12s %8s %14s %14s %14s %14s\n", "rate/s", "requests", "scale",
              "measured %", "simulated %", "diff pp", "TTFT meas ms", "TTFT sim ms", "TPOT meas ms",
              "TPOT sim ms");
  Json rows = Json::array();
  double worst = 0;
  for (const MeasuredRun& run : measured->runs) {
    absl::StatusOr<const std::vector<RequestTiming>*> simulated = simulator->Run(run.requests);
    if (!simulated.ok()) return Fail(simulated.status());
    const double ttft_real = Mean(run.timings, &RequestTiming::ttft_s);
    const double ttft_sim = Mean(**simulated, &RequestTiming::ttft_s);
    const double tpot_real = Mean(run.timings, &RequestTiming::tpot_s);
    const double tpot_sim = Mean(**simulated, &RequestTiming::tpot_s);
    Json by_scale = Json::array();
    for (double scale : scales) {
      const double real = serving::workload::Attainment(run.timings, slo, scale);
      const double sim = serving::workload::Attainment(**simulated, slo, scale);
      const double diff = (sim - real) * 100;
      worst = std::max(worst, std::abs(diff));
      std::printf("%10.2f %9zu %7.2f %12.1f %12.1f %+8.1f %14.1f %14.1f %14.1f %14.1f\n",
                  run.rate_per_s, run.requests.size(), scale, real * 100, sim * 100, diff,
                  ttft_real * 1e3, ttft_sim * 1e3, tpot_real * 1e3, tpot_sim * 1e3);
      by_scale.push_back(
          {{"scale", scale}, {"measured_attainment", real}, {"simulated_attainment", sim}});
    }
    rows.push_back({{"rate_per_s", run.rate_per_s},
                    {"requests", run.requests.size()},
                    {"attainment_by_scale", by_scale},
                    {"mean_ttft_s", {{"measured", ttft_real}, {"simulated", ttft_sim}}},
                    {"mean_tpot_s", {{"measured", tpot_real}, {"simulated", tpot_sim}}}});
  }
  std::printf("largest |simulated - measured| attainment: %.1f percentage points\n", worst);
  if (const std::string out = absl::GetFlag(FLAGS_json_out); !out.empty()) {
    const Json j = {{"measured", measured_path},
                    {"profile", profile_path},
                    {"mode", absl::GetFlag(FLAGS_mode)},
                    {"slo", {{"ttft_s", slo.ttft_s}, {"tpot_s", slo.tpot_s}}},
                    {"fit", fitted->Describe()},
                    {"max_abs_diff_pp", worst},
                    {"runs", rows}};
    std::ofstream(out) << j.dump(1) << "\n";
  }
  return 0;
}

}  // namespace troupe
