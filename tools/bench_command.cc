#include "tools/bench_command.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "serving/bench/client.h"
#include "serving/bench/summary.h"
#include "serving/bench/sweep.h"
#include "tools/common_flags.h"
#include "tools/workload_flags.h"

// Defaults are BenchClientOptions' (serving/bench/client.h), where each says where it comes from.
ABSL_FLAG(std::string, base_url, "http://127.0.0.1:8000",
          "`bench`: the server to benchmark, scheme://host:port (`troupe serve`'s default).");
ABSL_FLAG(std::string, rates, "",
          "`bench`: a rate sweep, e.g. 1,2,4 (requests/s): one run per rate, the same requests.");
ABSL_FLAG(int, max_concurrency, 0,
          "`bench`: most requests in flight; later ones wait for a slot (0: unlimited).");
ABSL_FLAG(std::string, goodput, "",
          "`bench`: SLOs as \"ttft:MS tpot:MS\": adds goodput and SLO attainment (a request "
          "must meet both, DistServe's rule).");
ABSL_FLAG(std::string, slo_scales, "",
          "`bench`: SLO attainment at these multiples of the --goodput SLOs, e.g. 0.5,1,2,4.");
ABSL_FLAG(double, attainment_target, troupe::serving::bench::kDefaultAttainmentTarget,
          "`bench`: the SLO attainment a rate must reach (DistServe: 0.9).");
ABSL_FLAG(std::string, json_out, "",
          "`bench`: write the config, every request's timings and the summaries here (JSON).");
ABSL_FLAG(std::string, plot_out, "",
          "`bench`: draw SLO attainment vs rate and vs SLO scale into this PNG "
          "(tools/plot_bench.py, matplotlib).");
ABSL_FLAG(double, connect_timeout_s, 5, "`bench`: give up connecting to the server after this.");
ABSL_FLAG(double, read_timeout_s, 90,
          "`bench`: fail a request that gets no bytes for this long (the server's own token "
          "timeout is 60 s).");
ABSL_FLAG(double, progress_every_s, 10,
          "`bench`: print a progress line to stderr this often (0: never).");

namespace troupe {
namespace {

using serving::bench::BenchClientOptions;
using serving::bench::SweepPoint;
using serving::workload::Request;

constexpr char kPlotScript[] = "tools/plot_bench.py";
// Debian's Python, which has python3-matplotlib (a python3 earlier on PATH may not).
constexpr char kPython[] = "/usr/bin/python3";
// Distinct request errors printed per run (all of them are in the JSON).
constexpr size_t kErrorsShown = 3;

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "troupe bench: error: %s\n", std::string(status.message()).c_str());
  return 1;
}

absl::StatusOr<BenchClientOptions> ClientOptionsFromFlags() {
  BenchClientOptions options;
  options.base_url = absl::GetFlag(FLAGS_base_url);
  options.api_key = absl::GetFlag(FLAGS_api_key);
  options.max_concurrency = absl::GetFlag(FLAGS_max_concurrency);
  options.seed = absl::GetFlag(FLAGS_seed);
  for (const auto& [name, seconds] :
       {std::pair{"connect_timeout_s", absl::GetFlag(FLAGS_connect_timeout_s)},
        std::pair{"read_timeout_s", absl::GetFlag(FLAGS_read_timeout_s)}}) {
    if (!(seconds > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " is ", seconds, ": give a number of seconds above 0"));
    }
  }
  options.connect_timeout = absl::Seconds(absl::GetFlag(FLAGS_connect_timeout_s));
  options.read_timeout = absl::Seconds(absl::GetFlag(FLAGS_read_timeout_s));
  if (absl::GetFlag(FLAGS_progress_every_s) > 0) {
    options.progress = &std::cerr;
    options.progress_every = absl::Seconds(absl::GetFlag(FLAGS_progress_every_s));
  }
  absl::Status valid = serving::bench::ValidateOptions(options);
  if (!valid.ok()) {
    // The options' names are the flags' names.
    return absl::InvalidArgumentError(absl::StrCat("--", valid.message()));
  }
  return options;
}

// Quoted is `text` as one single-quoted shell word.
std::string Quoted(const std::string& text) {
  return absl::StrCat("'", absl::StrReplaceAll(text, {{"'", "'\\''"}}), "'");
}

// PlotScript is tools/plot_bench.py in the working directory, or in the workspace under
// `bazel run`.
std::string PlotScript() {
  if (std::filesystem::exists(kPlotScript)) return kPlotScript;
  if (const char* workspace = std::getenv("BUILD_WORKSPACE_DIRECTORY")) {
    return absl::StrCat(workspace, "/", kPlotScript);
  }
  return kPlotScript;
}

absl::Status WriteJson(const std::string& path, const nlohmann::json& json) {
  std::ofstream file(path);
  file << json.dump(1) << "\n";
  file.close();
  if (!file) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot write the results to ", path, ": check that its folder exists and is writable"));
  }
  return absl::OkStatus();
}

void PrintScaledAttainment(const SweepPoint& point, double target) {
  if (point.attainment_by_scale.empty()) return;
  std::string line = "SLO attainment by SLO scale:";
  for (const serving::bench::ScaledAttainment& scale : point.attainment_by_scale) {
    absl::StrAppendFormat(&line, "  x%g %.1f%%", scale.scale, scale.attainment * 100);
  }
  std::cout << line << "\n"
            << absl::StrFormat("Min SLO scale for %.0f%% attainment: %s\n", target * 100,
                               point.min_slo_scale ? absl::StrFormat("%.2f", *point.min_slo_scale)
                                                   : std::string("above 100 (not reached)"));
}

}  // namespace

int RunBench() {
  absl::StatusOr<BenchClientOptions> options = ClientOptionsFromFlags();
  if (!options.ok()) return Fail(options.status());

  std::optional<serving::workload::Slo> slo;
  if (const std::string goodput = absl::GetFlag(FLAGS_goodput); !goodput.empty()) {
    absl::StatusOr<serving::workload::Slo> parsed = serving::bench::ParseGoodputSpec(goodput);
    if (!parsed.ok()) return Fail(parsed.status());
    slo = *parsed;
  }
  std::vector<double> scales;
  if (const std::string text = absl::GetFlag(FLAGS_slo_scales); !text.empty()) {
    if (!slo) {
      return Fail(absl::InvalidArgumentError(
          "--slo_scales scales the SLOs of --goodput, which is missing: add e.g. "
          "--goodput=\"ttft:250 tpot:100\""));
    }
    absl::StatusOr<std::vector<double>> parsed =
        serving::bench::ParsePositiveList(text, "slo_scales");
    if (!parsed.ok()) return Fail(parsed.status());
    scales = *parsed;
  } else if (slo) {
    scales = {1.0};
  }
  const double target = absl::GetFlag(FLAGS_attainment_target);
  if (!(target > 0 && target <= 1)) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--attainment_target is ", target, ": give a fraction in (0, 1], e.g. 0.9")));
  }

  // The workloads: one per rate of --rates, or the one --rate (or the trace) describes.
  std::vector<std::optional<double>> rates = {std::nullopt};
  if (const std::string text = absl::GetFlag(FLAGS_rates); !text.empty()) {
    if (RateFlag() != 0) {
      return Fail(absl::InvalidArgumentError(
          "--rate and --rates are both given: use --rate for one run or --rates for a sweep"));
    }
    absl::StatusOr<std::vector<double>> parsed = serving::bench::ParsePositiveList(text, "rates");
    if (!parsed.ok()) return Fail(parsed.status());
    rates.assign(parsed->begin(), parsed->end());
  }
  std::vector<std::vector<Request>> workloads;
  for (const std::optional<double>& rate : rates) {
    absl::StatusOr<std::vector<Request>> requests = WorkloadFromFlags(rate);
    if (!requests.ok()) return Fail(requests.status());
    workloads.push_back(*std::move(requests));
  }

  std::string json_out = absl::GetFlag(FLAGS_json_out);
  const std::string plot_out = absl::GetFlag(FLAGS_plot_out);
  if (!plot_out.empty() && json_out.empty()) {
    json_out = absl::StrCat(absl::StripSuffix(plot_out, ".png"), ".json");
  }

  if (absl::Status up = serving::bench::CheckServer(*options); !up.ok()) return Fail(up);

  std::vector<SweepPoint> points;
  bool any_succeeded = false;
  bool context_exceeded = false;
  for (size_t i = 0; i < workloads.size(); ++i) {
    const std::vector<Request>& requests = workloads[i];
    // The mean rate as run: a trace's own when no rate was given.
    const double rate = rates[i].value_or(
        RateFlag() > 0 ? RateFlag()
                       : (requests.back().arrival_s > 0
                              ? static_cast<double>(requests.size()) / requests.back().arrival_s
                              : 0));
    std::cerr << absl::StrFormat("troupe bench: run %d/%d: %d requests at %.3f requests/s to %s\n",
                                 i + 1, workloads.size(), requests.size(), rate, options->base_url);
    absl::StatusOr<serving::bench::BenchmarkRun> run =
        serving::bench::RunBenchmark(requests, *options);
    if (!run.ok()) return Fail(run.status());
    std::vector<std::string> errors;  // a few distinct ones, to show
    for (const serving::bench::RequestResult& result : run->results) {
      any_succeeded |= result.success;
      context_exceeded |= absl::StrContains(result.error, "maximum context length");
      if (!result.error.empty() && errors.size() < kErrorsShown &&
          std::find(errors.begin(), errors.end(), result.error) == errors.end()) {
        errors.push_back(result.error);
      }
    }
    for (const std::string& error : errors) {
      std::cerr << "troupe bench: a request failed: " << error << "\n";
    }
    points.push_back(serving::bench::SummarizePoint(rate, *std::move(run), slo, scales, target));
    std::cout << absl::StrFormat("Traffic request rate: %.3f\n", rate)
              << serving::bench::FormatSummary(points.back().summary);
    PrintScaledAttainment(points.back(), target);
    std::cout << std::flush;
  }
  if (points.size() > 1 || scales.size() > 1) {
    std::cout << serving::bench::FormatSweep(points, target);
  }
  if (context_exceeded) {
    std::cerr << "troupe bench: some requests exceed the server's context: lower "
                 "--max_total_tokens to it (512 for the tiny model)\n";
  }

  if (!json_out.empty()) {
    nlohmann::json config = WorkloadFlagsJson();
    config["base_url"] = options->base_url;
    config["rates"] = absl::GetFlag(FLAGS_rates);
    config["max_concurrency"] = options->max_concurrency;
    config["goodput"] = absl::GetFlag(FLAGS_goodput);
    config["slo_scales"] = scales;
    const absl::Status written =
        WriteJson(json_out, serving::bench::SweepJson(config, points, target));
    if (!written.ok()) return Fail(written);
    std::cerr << "troupe bench: wrote " << json_out << "\n";
    const std::string plot = absl::StrCat(
        kPython, " ", Quoted(PlotScript()), " ", Quoted(json_out), " ",
        Quoted(plot_out.empty() ? absl::StrCat(absl::StripSuffix(json_out, ".json"), ".png")
                                : plot_out));
    if (plot_out.empty()) {
      std::cerr << "troupe bench: plot it with: " << plot << "\n";
    } else if (const int code = std::system(plot.c_str()); code != 0) {
      return Fail(absl::InternalError(
          absl::StrCat("plotting failed (exit status ", code, "): run `", plot,
                       "` to see why (matplotlib comes from Debian's python3-matplotlib)")));
    } else {
      std::cerr << "troupe bench: wrote " << plot_out << "\n";
    }
  }
  if (!any_succeeded) {
    return Fail(absl::UnavailableError(
        "every request failed: see the errors in the JSON (--json_out), or the server's log"));
  }
  return 0;
}

}  // namespace troupe
