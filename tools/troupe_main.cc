// troupe: the command-line entry point.
//
//   troupe demo                                   a one-node runtime demo (the quick start)
//   troupe node --config X.toml --node NAME       one node of a cluster; N of these make one
//   troupe check --config X.toml                  validate a cluster config and print it
//   troupe roles                                  list the roles a config can use
//   troupe ping --join HOST:PORT --target NODE/ACTOR   ping an actor of a running cluster
//
// Flags are Abseil flags (see --help); CAF sees none of them (no CAF_MAIN): the runtime builds
// CAF's config from them and from the TOML.
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "actors/ask.h"
#include "actors/cluster_config.h"
#include "actors/directory.h"
#include "actors/errors.h"
#include "actors/messages.h"
#include "actors/node.h"
#include "actors/roles.h"
#include "actors/runtime.h"
#include "actors/torch_threads.h"
#include "caf/all.hpp"
#include "serving/cluster/cpu_backends.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"
#include "tools/train_command.h"
#include "tools/bench_command.h"
#include "tools/generate_command.h"
#include "tools/model_flags.h"
#include "tools/plan_command.h"
#include "tools/profile_command.h"
#include "tools/serve_command.h"
#include "tools/simulate_command.h"

ABSL_FLAG(std::string, config, "", "Cluster config (TOML) for `node`, `serve` and `check`.");
ABSL_FLAG(std::string, node, "", "Which [[node]] of the config this process runs.");
ABSL_FLAG(std::string, join, "",
          "host:port of any cluster member to join through (default: the config's first node).");
ABSL_FLAG(int, metrics_port, -2,
          "Serve Prometheus metrics on this port (0: any free port, -1: off). Default: the "
          "config's metrics_port; for `demo`, any free port.");
ABSL_FLAG(int, scheduler_threads, 0, "CAF scheduler threads (0: the config's, or half the cores).");
ABSL_FLAG(int, torch_threads, 0, "LibTorch intra-op threads (0: the config's, or the rest).");
ABSL_FLAG(std::string, scheduler_policy, "",
          "CAF scheduler: sharing or stealing (default: the config's, or sharing).");
ABSL_FLAG(double, duration_s, 0, "Stop after this many seconds (0: run until Ctrl-C).");
ABSL_FLAG(double, report_every_s, 2, "How often `demo` prints its actors and metrics.");
ABSL_FLAG(double, join_timeout_s, 30, "How long to keep trying to join the cluster.");
ABSL_FLAG(std::string, target, "", "`ping`: the actor to ping, as NODE/ACTOR.");
ABSL_FLAG(int, count, 10, "`ping`: how many pings to send.");
ABSL_FLAG(int, payload_bytes, 0, "`ping`: bytes of payload in each ping.");
ABSL_FLAG(double, timeout_s, 5, "`ping`: how long to wait for each reply.");

namespace troupe {
namespace {

using actors::ClusterConfig;
using actors::Node;
using actors::NodeOptions;

// The demo's cluster: one node, two CPU workers, a load generator feeding them, and an echo.
constexpr char kDemoConfig[] = R"(
[cluster]
name = "demo"

[[node]]
name = "local"
host = "127.0.0.1"
port = 0

[[actor]]
name = "worker0"
role = "gpu_worker"
node = "local"
device = "cpu"

[[actor]]
name = "worker1"
role = "gpu_worker"
node = "local"
device = "cpu"

[[actor]]
name = "load"
role = "load"
node = "local"
[actor.params]
targets = "worker0,worker1"
interval_ms = 100
work_ms = 10

[[actor]]
name = "echo"
role = "echo"
node = "local"
)";

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "troupe: error: %s\n", std::string(status.message()).c_str());
  return 1;
}

NodeOptions OptionsFromFlags(ClusterConfig config, std::string name) {
  NodeOptions options;
  options.config = std::move(config);
  options.name = std::move(name);
  options.join = absl::GetFlag(FLAGS_join);
  options.join_timeout = absl::Seconds(absl::GetFlag(FLAGS_join_timeout_s));
  options.scheduler_threads = absl::GetFlag(FLAGS_scheduler_threads);
  options.compute_threads = absl::GetFlag(FLAGS_torch_threads);
  options.scheduler_policy = absl::GetFlag(FLAGS_scheduler_policy);
  if (int port = absl::GetFlag(FLAGS_metrics_port); port >= -1) options.metrics_port = port;
  options.set_compute_threads = actors::SetTorchThreads;
  return options;
}

// MetricsExcerpt keeps the sample lines of the families a person watching the demo cares about.
std::string MetricsExcerpt(const std::string& text) {
  const std::vector<std::string> families = {
      "troupe_actor_mailbox_depth", "troupe_worker_items_total",
      "troupe_worker_busy_nanoseconds_total", "troupe_load_items_total"};
  std::string out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    for (const std::string& family : families) {
      if (line.rfind(family, 0) == 0) absl::StrAppend(&out, "  ", line, "\n");
    }
    start = end + 1;
  }
  return out;
}

// RunUntilStopped serves until SIGINT/SIGTERM, --duration_s, or a supervisor failure.
int RunUntilStopped(actors::ShutdownSignals& signals, Node& node, bool report) {
  const absl::Time begin = absl::Now();
  const double duration_s = absl::GetFlag(FLAGS_duration_s);
  const absl::Duration every = absl::Seconds(absl::GetFlag(FLAGS_report_every_s));
  absl::Time next_report = begin + every;
  int exit_code = 0;
  while (true) {
    if (std::optional<int> signal = signals.Wait(absl::Milliseconds(200))) {
      std::printf("\nreceived %s; shutting down (Ctrl-C again to force)\n",
                  *signal == SIGINT ? "SIGINT" : "SIGTERM");
      break;
    }
    if (std::optional<std::string> failure = node.Failure()) {
      std::fprintf(stderr, "troupe: node %s failed: %s\n", node.info().name.c_str(),
                   failure->c_str());
      exit_code = 1;
      break;
    }
    if (duration_s > 0 && absl::Now() - begin >= absl::Seconds(duration_s)) {
      std::printf("ran for %.1f s (--duration_s); shutting down\n", duration_s);
      break;
    }
    if (report && absl::Now() >= next_report) {
      next_report += every;
      std::printf("\n--- %s after %.0f s ---\n%s\nmetrics:\n%s", node.info().name.c_str(),
                  absl::ToDoubleSeconds(absl::Now() - begin), node.Describe().c_str(),
                  MetricsExcerpt(node.runtime().metrics().PrometheusText()).c_str());
      std::fflush(stdout);
    }
  }
  node.Stop();
  std::printf("node %s stopped cleanly\n", node.info().name.c_str());
  return exit_code;
}

void PrintStarted(Node& node, const ClusterConfig& config) {
  std::printf("troupe node \"%s\" (cluster \"%s\") listening on %s:%d\n", node.info().name.c_str(),
              config.name.c_str(), node.info().host.c_str(), node.info().port);
  if (node.metrics_port() >= 0) {
    std::printf("metrics: http://%s:%d/metrics\n", node.info().host.c_str(), node.metrics_port());
  }
  std::printf("threads: %d scheduler, %d compute\n%s", node.runtime().threads().scheduler,
              node.runtime().threads().compute, node.Describe().c_str());
  std::printf("ready\n");
  std::fflush(stdout);
}

// AllRoles is every role this binary can start: the runtime's and serving's.
actors::RoleCatalog AllRoles() {
  NodeOptions options;
  AddServing(options);
  return options.roles;
}

// RunServe starts a serving node: the embedded default cluster, or a node of --config.
int RunServe(actors::ShutdownSignals& signals) {
  const std::string path = absl::GetFlag(FLAGS_config);
  std::string name = absl::GetFlag(FLAGS_node);
  absl::StatusOr<ClusterConfig> config;
  if (path.empty()) {
    absl::StatusOr<std::string> embedded = EmbeddedServeConfig();
    if (!embedded.ok()) return Fail(embedded.status());
    config = actors::ParseClusterConfig(*embedded, "<the embedded serve config>");
    name = "local";
  } else {
    config = actors::LoadClusterConfig(path);
  }
  if (!config.ok()) return Fail(config.status());
  if (name.empty()) {
    if (config->nodes.size() != 1) {
      std::vector<std::string> names;
      for (const actors::NodeSpec& node : config->nodes) names.push_back(node.info.name);
      return Fail(absl::InvalidArgumentError(
          absl::StrCat(path, " has ", config->nodes.size(), " nodes; say which one this process ",
                       "runs with --node (one of ", absl::StrJoin(names, ", "), ")")));
    }
    name = config->nodes[0].info.name;
  }
  NodeOptions options = OptionsFromFlags(*config, name);
  AddServing(options);
  absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(std::move(options));
  if (!node.ok()) return Fail(node.status());
  if (path.empty()) {
    const bool colocated = std::any_of(config->actors.begin(), config->actors.end(),
                                       [](const auto& a) { return a.role == "colocated"; });
    std::printf("  engine: %s, on the CPU\n",
                colocated ? "one colocated instance (continuous batching)"
                          : "one prefill and one decode instance (KV moves as bytes between them)");
  } else {
    PrintStarted(**node, *config);
  }
  std::printf("  Ctrl-C stops it.\n");
  std::fflush(stdout);
  return RunUntilStopped(signals, **node, /*report=*/false);
}

int RunNode(actors::ShutdownSignals& signals) {
  const std::string path = absl::GetFlag(FLAGS_config);
  const std::string name = absl::GetFlag(FLAGS_node);
  if (path.empty() || name.empty()) {
    return Fail(absl::InvalidArgumentError(
        "`troupe node` needs --config FILE.toml and --node NAME (a [[node]] of that file)"));
  }
  absl::StatusOr<ClusterConfig> config = actors::LoadClusterConfig(path);
  if (!config.ok()) return Fail(config.status());
  ClusterConfig copy = *config;
  NodeOptions options = OptionsFromFlags(copy, name);
  AddServing(options);
  absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(std::move(options));
  if (!node.ok()) return Fail(node.status());
  PrintStarted(**node, *config);
  return RunUntilStopped(signals, **node, /*report=*/false);
}

int RunDemo(actors::ShutdownSignals& signals) {
  absl::StatusOr<ClusterConfig> config = actors::ParseClusterConfig(kDemoConfig, "<demo>");
  if (!config.ok()) return Fail(config.status());
  NodeOptions options = OptionsFromFlags(*config, "local");
  if (!options.metrics_port) options.metrics_port = 0;
  absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(std::move(options));
  if (!node.ok()) return Fail(node.status());
  std::printf("Troupe runtime demo: one node, two CPU workers fed by a load generator.\n");
  PrintStarted(**node, *config);
  std::printf("Press Ctrl-C to stop.\n");
  std::fflush(stdout);
  return RunUntilStopped(signals, **node, /*report=*/true);
}

int RunCheck() {
  absl::StatusOr<ClusterConfig> config = actors::LoadClusterConfig(absl::GetFlag(FLAGS_config));
  if (!config.ok()) return Fail(config.status());
  if (absl::Status roles = AllRoles().Check(*config); !roles.ok()) return Fail(roles);
  std::printf("%s: cluster \"%s\", %zu node(s), %zu actor(s)\n", config->source.c_str(),
              config->name.c_str(), config->nodes.size(), config->actors.size());
  for (const actors::NodeSpec& node : config->nodes) {
    std::printf("  node %s at %s:%d\n", node.info.name.c_str(), node.info.host.c_str(),
                node.info.port);
    for (const actors::ActorSpec* actor : config->ActorsOn(node.info.name)) {
      std::printf("    %-16s %-12s %s\n", actor->name.c_str(), actor->role.c_str(),
                  actor->device.c_str());
    }
  }
  return 0;
}

// RunPing connects to any member, resolves NODE/ACTOR through it, and pings that actor.
int RunPing() {
  absl::StatusOr<std::pair<std::string, uint16_t>> seed =
      actors::ParseHostPort(absl::GetFlag(FLAGS_join));
  if (!seed.ok())
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "`troupe ping` needs --join HOST:PORT of a cluster member: ", seed.status().message())));
  const std::string target = absl::GetFlag(FLAGS_target);
  const size_t slash = target.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == target.size()) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--target \"", target, "\" is not NODE/ACTOR, e.g. --target n0/echo")));
  }
  const int count = absl::GetFlag(FLAGS_count);
  const absl::Duration timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout_s));
  actors::RuntimeOptions options;
  options.node_name = absl::StrCat("ping-", getpid());
  options.scheduler_threads = 1;
  absl::StatusOr<std::unique_ptr<actors::Runtime>> runtime = actors::Runtime::Create(options);
  if (!runtime.ok()) return Fail(runtime.status());
  caf::actor_system& system = (*runtime)->system();
  absl::StatusOr<caf::actor> directory =
      actors::ConnectDirectory(system, seed->first, seed->second);
  if (!directory.ok()) return Fail(directory.status());
  absl::StatusOr<caf::actor> actor = actors::LookupActor(
      system, *directory, target.substr(0, slash), target.substr(slash + 1), timeout);
  if (!actor.ok()) return Fail(actor.status());
  std::vector<double> rtt_us;
  std::string last_error;
  const std::string payload(static_cast<size_t>(std::max(0, absl::GetFlag(FLAGS_payload_bytes))),
                            'x');
  caf::scoped_actor self{system};
  for (int i = 0; i < count; ++i) {
    const absl::Time sent = absl::Now();
    self->request(*actor, actors::ToCafDuration(timeout), actors::Ping{uint64_t(i), payload})
        .receive(
            [&](const actors::Ping& pong) {
              if (pong.seq == uint64_t(i)) {
                rtt_us.push_back(absl::ToDoubleMicroseconds(absl::Now() - sent));
              }
            },
            [&](caf::error& error) { last_error = actors::RenderError(error); });
  }
  std::sort(rtt_us.begin(), rtt_us.end());
  auto percentile = [&](double q) {
    return rtt_us.empty() ? 0.0 : rtt_us[std::min(rtt_us.size() - 1, size_t(q * rtt_us.size()))];
  };
  std::printf("ping %s via %s:%d: %zu/%d replies, rtt p50 %.0f us, p99 %.0f us\n", target.c_str(),
              seed->first.c_str(), seed->second, rtt_us.size(), count, percentile(0.5),
              percentile(0.99));
  if (static_cast<int>(rtt_us.size()) != count) {
    return Fail(absl::UnavailableError(
        absl::StrCat(count - rtt_us.size(), " ping(s) got no reply; last error: ", last_error)));
  }
  return 0;
}

// RunCpuProfile: `troupe profile`, the model of --model measured on the CPU backend.
int RunCpuProfile() {
  absl::StatusOr<LoadedModel> model = LoadModelFromFlags();
  if (!model.ok()) return Fail(model.status());
  // LibTorch gets the threads a serving node would give it (--torch_threads, or the cores the
  // CAF scheduler leaves), so that the profile times the steps `troupe serve` runs.
  const int threads =
      actors::ResolveThreadCounts(absl::GetFlag(FLAGS_scheduler_threads),
                                  absl::GetFlag(FLAGS_torch_threads),
                                  static_cast<int>(std::thread::hardware_concurrency()))
          .compute;
  if (absl::Status set = actors::SetTorchThreads(threads); !set.ok()) return Fail(set);
  ProfileCommand command;
  command.binary = "troupe";
  command.make_backend = serving::cluster::CpuBackends();
  command.describe_device = [threads](const std::string& device) {
    return device == "cpu" ? absl::StrCat("cpu (", threads, " LibTorch threads of ",
                                          std::thread::hardware_concurrency(), " cores)")
                           : device;
  };
  return RunProfile(command, model->config, *model->weights, KvBlocksFlag());
}

int RunRoles() {
  const actors::RoleCatalog catalog = AllRoles();
  for (const auto& [name, role] : catalog.roles()) {
    std::printf("%-12s %s\n", name.c_str(), role.summary.c_str());
    for (const auto& [param, help] : role.params) {
      std::printf("    params.%-12s %s\n", param.c_str(), help.c_str());
    }
  }
  return 0;
}

}  // namespace
}  // namespace troupe

int main(int argc, char** argv) {
  // Before any thread exists, so that every thread inherits the blocked signals.
  troupe::actors::ShutdownSignals signals = troupe::actors::ShutdownSignals::Block();
  absl::SetProgramUsageMessage(
      "Troupe actor runtime.\n"
      "  troupe demo                                  one-node runtime demo\n"
      "  troupe node --config X.toml --node NAME      run one node of a cluster\n"
      "  troupe check --config X.toml                 validate a cluster config\n"
      "  troupe roles                                 list the roles configs can use\n"
      "  troupe ping --join HOST:PORT --target N/A    ping an actor of a running cluster\n"
      "  troupe generate --prompt=TEXT                generate text on the CPU (tiny model)\n"
      "  troupe serve                                 OpenAI-compatible server (tiny model, CPU)\n"
      "  troupe serve --config X.toml [--node NAME]   one node of a serving cluster\n"
      "  troupe profile --profile_out=F.json          measure step times for `troupe plan`\n"
      "  troupe bench --dataset=chatbot --rate=2      benchmark a running server (vLLM-style)\n"
      "  troupe plan --model=opt-13b --out=plan.toml  DistServe's placement search (simulated)\n"
      "  troupe simulate --profile=P --measured=B     replay a bench run in the simulator\n"
      "  troupe train METHOD                          train on Fashion-MNIST: supervised, sla, "
      "dhkd\n"
      "                                               (`troupe train METHOD --help`)");
  // `train` parses its own flags, so that `troupe train sla --help` lists SLA's.
  if (argc > 1 && std::string(argv[1]) == "train") return troupe::RunTrain(argc, argv);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  spdlog::set_default_logger(spdlog::stderr_color_mt("troupe"));
  const std::string command = args.size() > 1 ? args[1] : "";
  if (args.size() > 2) {
    return troupe::Fail(absl::InvalidArgumentError(absl::StrCat(
        "unexpected argument \"", args[2], "\"; flags look like --name=value (see --help)")));
  }
  if (command == "demo") return troupe::RunDemo(signals);
  if (command == "node") return troupe::RunNode(signals);
  if (command == "check") return troupe::RunCheck();
  if (command == "roles") return troupe::RunRoles();
  if (command == "ping") return troupe::RunPing();
  if (command == "generate") return troupe::RunGenerate();
  if (command == "serve") return troupe::RunServe(signals);
  if (command == "profile") return troupe::RunCpuProfile();
  if (command == "bench") return troupe::RunBench();
  if (command == "plan") return troupe::RunPlan();
  if (command == "simulate") return troupe::RunSimulate();
  return troupe::Fail(absl::InvalidArgumentError(
      absl::StrCat(command.empty() ? std::string("no command given")
                                   : absl::StrCat("unknown command \"", command, "\""),
                   "; use one of: demo, node, check, roles, ping, generate, serve, profile, bench, "
                   "plan, simulate, train "
                   "(see --help)")));
}
