#include "tools/plan_command.h"

#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "serving/model/config.h"
#include "serving/placement/cluster_toml.h"
#include "serving/placement/latency_model.h"
#include "serving/placement/profile.h"
#include "serving/placement/search.h"
#include "serving/workload/workload.h"
#include "tools/common_flags.h"
#include "tools/model_flags.h"

ABSL_FLAG(double, ttft_s, 0,
          "`plan`: the TTFT SLO in seconds (0: DistServe's for the model and dataset).");
ABSL_FLAG(double, tpot_s, 0,
          "`plan`: the TPOT SLO in seconds (0: DistServe's for the model and dataset).");
ABSL_FLAG(int, nodes, 4, "`plan`: nodes of the cluster (DistServe's testbed: 4).");
ABSL_FLAG(int, gpus_per_node, 8, "`plan`: GPUs per node (DistServe's testbed: 8).");
ABSL_FLAG(
    std::string, gpu, "a100-80gb",
    "`plan`: the GPU: a100-80gb (DistServe's), h100-sxm or h200. Its datasheet rates make the "
    "roofline step times; its memory and NVLink bandwidth are used with --profile too.");
ABSL_FLAG(std::string, profile, "",
          "`plan`: fit DistServe's latency model to this `troupe profile` JSON instead of the "
          "roofline of --gpu.");
ABSL_FLAG(std::string, affinity, "low",
          "`plan`: low (slow links between nodes, DistServe's 25 Gbps testbed: Algorithm 2, the "
          "two phases' stages share nodes) or high (fast links: Algorithm 1, each phase alone).");
ABSL_FLAG(double, cross_node_gbps, 25,
          "`plan`: bandwidth between nodes in Gbit/s (DistServe's testbed: 25); KV transfers of "
          "--affinity=high cross it.");
ABSL_FLAG(int, nodes_per_instance, 0,
          "`plan`: the most nodes one instance may span (DistServe's N; 0: all). troupe runs an "
          "instance in one process, so only plans with 1 can be written as a TOML.");
ABSL_FLAG(std::string, out, "", "`plan`: write the plan's cluster TOML here.");
ABSL_FLAG(std::string, hosts, "",
          "`plan`: the nodes' addresses for the TOML, comma-separated (default 127.0.0.1 each).");
ABSL_FLAG(bool, compare_colocated, true,
          "`plan`: also search colocated (vLLM-style) instances and report the best, for "
          "comparison (--chunked_prefill: with Sarathi-style chunks).");
ABSL_FLAG(int, prefill_batch_tokens, 8192,
          "`plan`: the prefill instances' token budget per batch, simulated and written to the "
          "TOML (the engine's and DistServe's released default 8192; the paper batches up to "
          "L_m, the length that saturates the GPU, ~512 for OPT-13B on an A100).");
ABSL_FLAG(int, plan_threads, 0, "`plan`: threads of the search (0: every core).");
ABSL_FLAG(int, top, 5, "`plan`: how many of the best configurations to list.");

ABSL_DECLARE_FLAG(std::string, model);         // tools/model_flags.cc
ABSL_DECLARE_FLAG(std::string, dataset);       // tools/workload_flags.cc
ABSL_DECLARE_FLAG(double, rate);               // tools/workload_flags.cc
ABSL_DECLARE_FLAG(double, cv);                 // tools/workload_flags.cc
ABSL_DECLARE_FLAG(int, num_requests);          // tools/workload_flags.cc
ABSL_DECLARE_FLAG(int, max_total_tokens);      // tools/workload_flags.cc
ABSL_DECLARE_FLAG(double, attainment_target);  // tools/bench_command.cc
ABSL_DECLARE_FLAG(std::string, json_out);      // tools/bench_command.cc

namespace troupe {
namespace {

using serving::placement::Affinity;
using serving::placement::Candidate;
using serving::placement::ClusterSpec;
using serving::placement::Plan;
using serving::placement::SearchOptions;
using serving::placement::StepTimeModels;
using Json = nlohmann::json;

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "troupe plan: error: %s\n", std::string(status.message()).c_str());
  return 1;
}

Json ConfigJson(const serving::placement::InstanceConfig& config) {
  return {{"tensor_parallel", config.tensor_parallel},
          {"pipeline_stages", config.pipeline_stages},
          {"name", config.Name()}};
}

// KvBlocksFor is what an instance's KV capacity would be (search.h: KvCapacityBlocks).
using KvBlocksFor = std::function<int64_t(const serving::placement::InstanceConfig&)>;

Json CandidateJson(const Candidate& c, const KvBlocksFor& kv_blocks) {
  Json j = {{"name", c.Name()},
            {"gpus", c.gpus},
            {"goodput", c.goodput},
            {"goodput_per_gpu", c.goodput_per_gpu}};
  if (c.kind != Candidate::Kind::kDecode) {
    j["prefill"] = ConfigJson(c.prefill);
    j["prefill"]["kv_blocks"] = kv_blocks(c.prefill);
  }
  if (c.kind == Candidate::Kind::kDecode || c.kind == Candidate::Kind::kPair) {
    j["decode"] = ConfigJson(c.decode);
    j["decode"]["kv_blocks"] = kv_blocks(c.decode);
  }
  if (c.kind == Candidate::Kind::kPair) j["inter_op_nodes"] = c.inter_op_nodes;
  return j;
}

Json PhaseJson(const serving::placement::PhasePlan& phase) {
  Json j = ConfigJson(phase.config);
  j["instances"] = phase.instances;
  j["kv_blocks"] = phase.kv_blocks;
  j["goodput_per_instance"] = phase.goodput;
  return j;
}

absl::Status WriteText(const std::string& path, const std::string& text, const char* flag) {
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) {
    return absl::PermissionDeniedError(
        absl::StrCat("--", flag, "=", path,
                     ": cannot write it; check that the directory exists and is "
                     "writable"));
  }
  return absl::OkStatus();
}

// CommandLine is this plan's flags as a command, for the TOML's header and the JSON.
std::string CommandLine(const std::string& model, const std::string& dataset,
                        const serving::workload::Slo& slo, double rate) {
  std::string line = absl::StrFormat(
      "troupe plan --model=%s --dataset=%s --ttft_s=%g --tpot_s=%g --attainment_target=%g "
      "--rate=%g --nodes=%d --gpus_per_node=%d --affinity=%s --nodes_per_instance=%d "
      "--cross_node_gbps=%g --prefill_batch_tokens=%d --num_requests=%d --seed=%d",
      model, dataset, slo.ttft_s, slo.tpot_s, absl::GetFlag(FLAGS_attainment_target), rate,
      absl::GetFlag(FLAGS_nodes), absl::GetFlag(FLAGS_gpus_per_node), absl::GetFlag(FLAGS_affinity),
      absl::GetFlag(FLAGS_nodes_per_instance), absl::GetFlag(FLAGS_cross_node_gbps),
      absl::GetFlag(FLAGS_prefill_batch_tokens), absl::GetFlag(FLAGS_num_requests),
      absl::GetFlag(FLAGS_seed));
  const std::string profile = absl::GetFlag(FLAGS_profile);
  absl::StrAppend(&line, profile.empty() ? absl::StrCat(" --gpu=", absl::GetFlag(FLAGS_gpu))
                                         : absl::StrCat(" --gpu=", absl::GetFlag(FLAGS_gpu),
                                                        " --profile=", profile));
  return line;
}

}  // namespace

int RunPlan() {
  const std::string model_name = absl::GetFlag(FLAGS_model);
  const std::string profile_path = absl::GetFlag(FLAGS_profile);
  if (model_name == "tiny" && profile_path.empty()) {
    return Fail(absl::InvalidArgumentError(
        "--model is the test model tiny; plan a real one, e.g. --model=opt-13b (or give a "
        "--profile of tiny)"));
  }
  absl::StatusOr<serving::model::ModelConfig> model = serving::model::ModelPreset(model_name);
  if (!model.ok())
    return Fail(absl::InvalidArgumentError(absl::StrCat("--model: ", model.status().message())));
  absl::StatusOr<serving::workload::Dataset> dataset =
      serving::workload::ParseDataset(absl::GetFlag(FLAGS_dataset));
  if (!dataset.ok()) {
    return Fail(
        absl::InvalidArgumentError(absl::StrCat("--dataset: ", dataset.status().message())));
  }
  // The SLO: the flags, or the paper's where a flag is 0.
  serving::workload::Slo slo{absl::GetFlag(FLAGS_ttft_s), absl::GetFlag(FLAGS_tpot_s)};
  std::string slo_source = "--ttft_s, --tpot_s";
  if (slo.ttft_s == 0 || slo.tpot_s == 0) {
    absl::StatusOr<serving::workload::Slo> paper =
        serving::placement::PaperSlo(model_name, *dataset);
    if (!paper.ok()) return Fail(paper.status());
    if (slo.ttft_s == 0) slo.ttft_s = paper->ttft_s;
    if (slo.tpot_s == 0) slo.tpot_s = paper->tpot_s;
    slo_source = "DistServe's SLO for this model and dataset";
  }
  absl::StatusOr<serving::placement::GpuSpec> gpu =
      serving::placement::GpuPreset(absl::GetFlag(FLAGS_gpu));
  if (!gpu.ok())
    return Fail(absl::InvalidArgumentError(absl::StrCat("--gpu: ", gpu.status().message())));
  absl::StatusOr<Affinity> affinity =
      serving::placement::ParseAffinity(absl::GetFlag(FLAGS_affinity));
  if (!affinity.ok()) {
    return Fail(
        absl::InvalidArgumentError(absl::StrCat("--affinity: ", affinity.status().message())));
  }
  const double rate = absl::GetFlag(FLAGS_rate);

  // Step times: a profile's fit, or the GPU's roofline.
  std::unique_ptr<StepTimeModels> times;
  if (!profile_path.empty()) {
    absl::StatusOr<serving::placement::Profile> profile =
        serving::placement::ReadProfile(profile_path);
    if (!profile.ok()) return Fail(profile.status());
    absl::StatusOr<serving::placement::FittedLatencyModel> fitted =
        serving::placement::FittedLatencyModel::Fit(*profile, *model);
    if (!fitted.ok()) return Fail(fitted.status());
    std::printf("latency model fitted to %s:\n%s\n", profile_path.c_str(),
                fitted->Report().c_str());
    times = std::make_unique<serving::placement::FittedLatencyModel>(*std::move(fitted));
  } else {
    times = std::make_unique<serving::placement::RooflineModel>(*model, *gpu);
  }

  ClusterSpec cluster;
  cluster.nodes = absl::GetFlag(FLAGS_nodes);
  cluster.gpus_per_node = absl::GetFlag(FLAGS_gpus_per_node);
  cluster.gpu = *gpu;
  cluster.cross_node_bytes_per_s = absl::GetFlag(FLAGS_cross_node_gbps) * 1e9 / 8;
  cluster.max_nodes_per_instance = absl::GetFlag(FLAGS_nodes_per_instance);

  SearchOptions options;
  options.dataset = *dataset;
  options.slo = slo;
  options.attainment_target = absl::GetFlag(FLAGS_attainment_target);
  options.num_requests = absl::GetFlag(FLAGS_num_requests);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.arrival_cv = absl::GetFlag(FLAGS_cv);
  options.max_total_tokens = absl::GetFlag(FLAGS_max_total_tokens);
  options.threads = absl::GetFlag(FLAGS_plan_threads);
  options.simulator.chunked_prefill = ChunkedPrefillFlag();
  options.simulator.prefill_max_batch_tokens = absl::GetFlag(FLAGS_prefill_batch_tokens);
  options.progress = [](const std::string& line) {
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
  };

  std::printf("planning %s for %s: TTFT %g s, TPOT %g s (%s), %g%% attainment\n",
              model_name.c_str(), serving::workload::DatasetName(*dataset), slo.ttft_s, slo.tpot_s,
              slo_source.c_str(), 100 * options.attainment_target);
  std::printf("cluster: %d node(s) x %d %s, %g Gbps between nodes; step times: %s\n", cluster.nodes,
              cluster.gpus_per_node, gpu->name.c_str(), absl::GetFlag(FLAGS_cross_node_gbps),
              times->Describe().c_str());
  std::fflush(stdout);
  const absl::Time start = absl::Now();
  absl::StatusOr<Plan> plan =
      serving::placement::PlanPlacement(*model, *times, cluster, *affinity, rate, options);
  if (!plan.ok()) return Fail(plan.status());
  const double search_s = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf(
      "workload: %d %s requests per simulation (seed %llu), mean prompt %.0f and output "
      "%.0f tokens\n",
      options.num_requests, serving::workload::DatasetName(*dataset),
      static_cast<unsigned long long>(options.seed), plan->mean_input_tokens,
      plan->mean_output_tokens);

  std::vector<Candidate> colocated;
  if (absl::GetFlag(FLAGS_compare_colocated)) {
    SearchOptions quiet = options;
    quiet.progress = nullptr;
    absl::StatusOr<std::vector<Candidate>> searched =
        serving::placement::SearchColocated(*model, *times, cluster, quiet);
    if (searched.ok()) {
      colocated = *std::move(searched);
    } else {
      std::printf("colocated baseline: %s\n", std::string(searched.status().message()).c_str());
    }
  }
  const double total_s = absl::ToDoubleSeconds(absl::Now() - start);

  // The summary.
  std::printf("\nplan (%s affinity, Algorithm %d):\n",
              serving::placement::AffinityName(plan->affinity),
              plan->affinity == Affinity::kHigh ? 1 : 2);
  std::printf("  %-8s %-10s %9s %6s %10s %16s\n", "phase", "config", "instances", "GPUs",
              "KV blocks", "goodput/instance");
  for (const auto& [name, phase] :
       {std::pair<const char*, const serving::placement::PhasePlan*>{"prefill", &plan->prefill},
        {"decode", &plan->decode}}) {
    std::printf("  %-8s %-10s %9d %6d %10lld %11.3f req/s\n", name, phase->config.Name().c_str(),
                phase->instances, phase->instances * phase->config.gpus(),
                static_cast<long long>(phase->kv_blocks), phase->goodput);
  }
  if (plan->inter_op_nodes > 0) {
    std::printf("  each prefill/decode pair spans %d node(s), one stage group per node\n",
                plan->inter_op_nodes);
  }
  std::printf(
      "  goodput per GPU: %.3f req/s; rate %.3g req/s on %d of %d GPUs; simulated "
      "attainment at that rate: %.1f%%\n",
      plan->goodput_per_gpu, plan->rate, plan->gpus, cluster.nodes * cluster.gpus_per_node,
      100 * plan->attainment);
  for (const std::string& note : plan->notes) std::printf("  note: %s\n", note.c_str());
  const int top = absl::GetFlag(FLAGS_top);
  std::printf("best configurations (of %zu):\n", plan->candidates.size());
  for (int i = 0; i < top && i < static_cast<int>(plan->candidates.size()); ++i) {
    const Candidate& c = plan->candidates[i];
    std::printf("  %d. %-34s %2d GPUs %8.3f req/s %7.3f per GPU\n", i + 1, c.Name().c_str(), c.gpus,
                c.goodput, c.goodput_per_gpu);
  }
  if (!colocated.empty()) {
    const Candidate& best = colocated.front();
    std::printf(
        "colocated baseline (%s): best %s, %.3f req/s per GPU; disaggregated/colocated: "
        "%.2fx\n",
        options.simulator.chunked_prefill ? "chunked prefill" : "vLLM-style",
        best.prefill.Name().c_str(), best.goodput_per_gpu,
        best.goodput_per_gpu > 0 ? plan->goodput_per_gpu / best.goodput_per_gpu : 0.0);
  }
  std::printf("search: %.2f s (plan %.2f s), %d simulations\n", total_s, search_s,
              plan->simulations);

  const std::string command =
      CommandLine(model_name, serving::workload::DatasetName(*dataset), slo, rate);
  int exit_code = 0;
  const std::string out = absl::GetFlag(FLAGS_out);
  if (!out.empty()) {
    serving::placement::ClusterTomlOptions toml_options;
    toml_options.model = model_name;
    toml_options.cluster_name = absl::StrCat("plan_", model_name);
    const std::string hosts = absl::GetFlag(FLAGS_hosts);
    if (!hosts.empty()) toml_options.hosts = absl::StrSplit(hosts, ',', absl::SkipWhitespace());
    toml_options.batching = options.simulator;
    toml_options.header = {
        absl::StrFormat("%s: prefill %s x %d, decode %s x %d, %.3f req/s per GPU (simulated)",
                        model_name, plan->prefill.config.Name(), plan->prefill.instances,
                        plan->decode.config.Name(), plan->decode.instances, plan->goodput_per_gpu),
        absl::StrCat("made by: ", command),
        absl::StrCat("start one process per node (node0 first; the others join through it):"),
        absl::StrCat("  troupe_gpu serve --config=", out, " --node=node0   (and node1, ...)")};
    absl::StatusOr<std::string> toml =
        serving::placement::ClusterToml(*plan, cluster, toml_options);
    if (!toml.ok()) {
      std::fprintf(stderr, "troupe plan: not writing --out=%s: %s\n", out.c_str(),
                   std::string(toml.status().message()).c_str());
      exit_code = 1;
    } else if (absl::Status written = WriteText(out, *toml, "out"); !written.ok()) {
      return Fail(written);
    } else {
      std::printf(
          "wrote %s: start it with troupe_gpu serve --config=%s --node=node0 (and each "
          "other node)\n",
          out.c_str(), out.c_str());
    }
  }
  const std::string json_out = absl::GetFlag(FLAGS_json_out);
  if (!json_out.empty()) {
    Json j = {{"command", command},
              {"model", model_name},
              {"dataset", serving::workload::DatasetName(*dataset)},
              {"slo", {{"ttft_s", slo.ttft_s}, {"tpot_s", slo.tpot_s}}},
              {"attainment_target", options.attainment_target},
              {"cluster",
               {{"nodes", cluster.nodes},
                {"gpus_per_node", cluster.gpus_per_node},
                {"gpu", gpu->name},
                {"cross_node_gbps", absl::GetFlag(FLAGS_cross_node_gbps)},
                {"nodes_per_instance", cluster.max_nodes_per_instance}}},
              {"step_times", times->Describe()},
              {"workload",
               {{"num_requests", options.num_requests},
                {"seed", options.seed},
                {"mean_input_tokens", plan->mean_input_tokens},
                {"mean_output_tokens", plan->mean_output_tokens}}},
              {"affinity", serving::placement::AffinityName(plan->affinity)},
              {"plan",
               {{"prefill", PhaseJson(plan->prefill)},
                {"decode", PhaseJson(plan->decode)},
                {"inter_op_nodes", plan->inter_op_nodes},
                {"goodput_per_gpu", plan->goodput_per_gpu},
                {"rate", plan->rate},
                {"gpus", plan->gpus},
                {"fits_cluster", plan->fits_cluster},
                {"attainment", plan->attainment},
                {"notes", plan->notes}}},
              {"search_seconds", search_s},
              {"simulations", plan->simulations}};
    j["candidates"] = Json::array();
    const KvBlocksFor kv_blocks = [&](const serving::placement::InstanceConfig& config) {
      return serving::placement::KvCapacityBlocks(*model, config, *gpu, options);
    };
    for (const Candidate& c : plan->candidates) {
      j["candidates"].push_back(CandidateJson(c, kv_blocks));
    }
    j["colocated"] = Json::array();
    for (const Candidate& c : colocated) j["colocated"].push_back(CandidateJson(c, kv_blocks));
    if (absl::Status written = WriteText(json_out, j.dump(1) + "\n", "json_out"); !written.ok()) {
      return Fail(written);
    }
    std::printf("wrote %s\n", json_out.c_str());
  }
  return exit_code;
}

}  // namespace troupe
