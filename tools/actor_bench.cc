// actor_bench: Troupe's messaging cost against raw CAF, measured in the same run.
//
//   bazel run //tools:actor_bench -- --out_dir=$PWD/docs/results
//
// For each of two stacks:
//   raw CAF   a plain actor_system_config and a plain event-based echo actor; remote lookup by
//             middleman().remote_actor on the published echo.
//   Troupe    the runtime (TroupeConfig, metrics, type-ID block, heartbeats), the `echo` role
//             (an InstrumentedActor) started under a node's supervisor, found by name through
//             the node directory.
// it measures:
//   round trip   request -> reply between two actors, one at a time (p50, p99), in one process
//                and across two processes on loopback (the server is this binary, re-executed);
//   throughput   one-way messages from one sender to one receiver, until the receiver has all.
// Both stacks run under each CAF scheduler policy: "stealing" (CAF's default) and "sharing"
// (Troupe's default), so the table separates the cost of Troupe's layers (same policy) from the
// effect of its default (raw CAF stealing vs Troupe sharing). Runs alternate between the stacks
// and repeat; the table reports the median over repeats.
// Writes actors_bench_<label>.csv and .json into --out_dir; tools/plot_actor_bench.py plots them.
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "actors/cluster_config.h"
#include "actors/directory.h"
#include "actors/messages.h"
#include "actors/node.h"
#include "actors/runtime.h"
#include "caf/all.hpp"
#include "caf/io/all.hpp"
#include "tools/child_process.h"

ABSL_FLAG(int, round_trips, 20000, "Measured round trips per run.");
ABSL_FLAG(int, warmup, 2000, "Unmeasured round trips before each run.");
ABSL_FLAG(int, messages, 200000, "One-way messages per throughput run.");
ABSL_FLAG(int, repeats, 5, "Runs per stack and measurement; the median is reported.");
ABSL_FLAG(int, scheduler_threads, 1, "CAF scheduler threads, for both stacks.");
ABSL_FLAG(std::string, policies, "stealing,sharing", "CAF scheduler policies to measure.");
ABSL_FLAG(std::string, policy, "", "Internal: the policy of a --serve process.");
ABSL_FLAG(std::string, out_dir, "", "Where to write the CSV and JSON (empty: nowhere).");
ABSL_FLAG(std::string, label, "dev", "Names the machine: files are actors_bench_<label>.csv/.json.");
ABSL_FLAG(std::string, serve, "", "Internal: serve the echo of stack raw|troupe and print its port.");

namespace troupe::tools {
namespace {

using actors::Ping;
using actors::stats_atom;

enum class Stack { kRawCaf, kTroupe };
const char* StackName(Stack stack) { return stack == Stack::kRawCaf ? "raw CAF" : "Troupe"; }

// --- the two stacks' echo servers ----------------------------------------------------------

// RawEcho is what a CAF user writes without Troupe: it answers pings and counts them.
caf::behavior RawEcho(caf::stateful_actor<uint64_t>* self) {
  return {
      [self](const Ping& ping) {
        ++self->state;
        return ping;
      },
      [self](stats_atom) { return self->state; },
  };
}

std::unique_ptr<caf::actor_system_config> RawConfig(const std::string& policy) {
  auto config = std::make_unique<caf::actor_system_config>();
  config->set("scheduler.max-threads", static_cast<size_t>(absl::GetFlag(FLAGS_scheduler_threads)));
  config->set("scheduler.policy", caf::atom_from_string(policy));
  config->load<caf::io::middleman>();
  actors::RegisterMessageTypes(*config);  // Ping must be known on the wire for both stacks.
  return config;
}

constexpr char kNodeConfig[] = R"(
[[node]]
name = "bench"
host = "127.0.0.1"
port = 0
[[actor]]
name = "echo"
role = "echo"
node = "bench"
)";

actors::NodeOptions BenchNodeOptions(const std::string& policy) {
  actors::NodeOptions options;
  options.scheduler_policy = policy;
  options.config = *actors::ParseClusterConfig(kNodeConfig, "<actor_bench>");
  options.name = "bench";
  options.scheduler_threads = absl::GetFlag(FLAGS_scheduler_threads);
  return options;
}

// A stack in this process: its system and the echo to talk to (local or a remote proxy).
struct Endpoint {
  std::unique_ptr<caf::actor_system_config> raw_config;
  std::unique_ptr<caf::actor_system> raw_system;
  std::unique_ptr<actors::Node> node;          // Troupe, in-process server.
  std::unique_ptr<actors::Runtime> runtime;    // Troupe, client of a remote server.
  caf::actor echo;

  caf::actor_system& system() {
    if (raw_system) return *raw_system;
    return node ? node->system() : runtime->system();
  }
};

std::unique_ptr<Endpoint> LocalEndpoint(Stack stack, const std::string& policy) {
  auto endpoint = std::make_unique<Endpoint>();
  if (stack == Stack::kRawCaf) {
    endpoint->raw_config = RawConfig(policy);
    endpoint->raw_system = std::make_unique<caf::actor_system>(*endpoint->raw_config);
    endpoint->echo = endpoint->raw_system->spawn(RawEcho);
  } else {
    endpoint->node = std::move(*actors::Node::Start(BenchNodeOptions(policy)));
    endpoint->echo = *actors::LookupActor(endpoint->system(), endpoint->node->directory(),
                                          "bench", "echo", absl::Seconds(10));
  }
  return endpoint;
}

std::unique_ptr<Endpoint> RemoteEndpoint(Stack stack, const std::string& policy,
                                         uint16_t port) {
  auto endpoint = std::make_unique<Endpoint>();
  if (stack == Stack::kRawCaf) {
    endpoint->raw_config = RawConfig(policy);
    endpoint->raw_system = std::make_unique<caf::actor_system>(*endpoint->raw_config);
    endpoint->echo = *endpoint->raw_system->middleman().remote_actor("127.0.0.1", port);
  } else {
    actors::RuntimeOptions options;
    options.node_name = "bench-client";
    options.scheduler_threads = absl::GetFlag(FLAGS_scheduler_threads);
    options.scheduler_policy = policy;
    endpoint->runtime = std::move(*actors::Runtime::Create(options));
    caf::actor directory = *actors::ConnectDirectory(endpoint->system(), "127.0.0.1", port);
    endpoint->echo = *actors::LookupActor(endpoint->system(), directory, "bench", "echo",
                                          absl::Seconds(10));
  }
  return endpoint;
}

void Shutdown(std::unique_ptr<Endpoint>& endpoint) {
  if (endpoint->raw_system) caf::anon_send_exit(endpoint->echo, caf::exit_reason::user_shutdown);
  endpoint->echo = nullptr;
  endpoint.reset();
}

// Serve runs one stack's echo server for the cross-process runs: prints "port N", then waits
// for SIGTERM.
int Serve(const std::string& which, actors::ShutdownSignals& signals) {
  const std::string policy = absl::GetFlag(FLAGS_policy);
  if (which == "raw") {
    auto config = RawConfig(policy);
    caf::actor_system system(*config);
    caf::actor echo = system.spawn(RawEcho);
    uint16_t port = *system.middleman().publish(echo, 0, "127.0.0.1");
    std::printf("port %d\n", port);
    std::fflush(stdout);
    signals.Wait(absl::InfiniteDuration());
    caf::anon_send_exit(echo, caf::exit_reason::user_shutdown);
    return 0;
  }
  std::unique_ptr<actors::Node> node = std::move(*actors::Node::Start(BenchNodeOptions(policy)));
  std::printf("port %d\n", node->info().port);
  std::fflush(stdout);
  signals.Wait(absl::InfiniteDuration());
  node->Stop();
  return 0;
}

// --- measurements -----------------------------------------------------------------------------

// Driver sends one request at a time and records each round trip in nanoseconds.
caf::behavior Driver(caf::event_based_actor* self, caf::actor target, int warmup, int count,
                     std::shared_ptr<std::vector<int64_t>> rtts,
                     std::shared_ptr<std::promise<void>> done) {
  auto next = std::make_shared<std::function<void(int)>>();
  *next = [=](int i) {
    const absl::Time sent = absl::Now();
    self->request(target, caf::infinite, Ping{static_cast<uint64_t>(i), ""})
        .then([=](const Ping&) {
          if (i >= warmup) rtts->push_back(absl::ToInt64Nanoseconds(absl::Now() - sent));
          if (i + 1 < warmup + count) {
            (*next)(i + 1);
          } else {
            done->set_value();
            self->quit();
          }
        });
  };
  (*next)(0);
  return {};
}

struct Percentiles {
  double p50_us = 0;
  double p99_us = 0;
};

Percentiles RoundTrips(Endpoint& endpoint) {
  auto rtts = std::make_shared<std::vector<int64_t>>();
  auto done = std::make_shared<std::promise<void>>();
  rtts->reserve(absl::GetFlag(FLAGS_round_trips));
  endpoint.system().spawn(Driver, endpoint.echo, absl::GetFlag(FLAGS_warmup),
                          absl::GetFlag(FLAGS_round_trips), rtts, done);
  done->get_future().wait();
  std::sort(rtts->begin(), rtts->end());
  auto at = [&](double q) { return (*rtts)[static_cast<size_t>(q * (rtts->size() - 1))] / 1e3; };
  return {at(0.50), at(0.99)};
}

// Throughput sends --messages one-way pings, then asks the echo how many it has; messages from
// one sender arrive in order, so the reply comes after the last ping.
double Throughput(Endpoint& endpoint) {
  caf::scoped_actor self{endpoint.system()};
  uint64_t before = 0;
  self->request(endpoint.echo, caf::infinite, stats_atom::value).receive(
      [&](uint64_t n) { before = n; }, [](caf::error&) {});
  const int messages = absl::GetFlag(FLAGS_messages);
  const absl::Time start = absl::Now();
  for (int i = 0; i < messages; ++i) {
    caf::anon_send(endpoint.echo, Ping{static_cast<uint64_t>(i), ""});
  }
  uint64_t after = 0;
  self->request(endpoint.echo, caf::infinite, stats_atom::value).receive(
      [&](uint64_t n) { after = n; }, [](caf::error&) {});
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (after - before != static_cast<uint64_t>(messages)) {
    std::fprintf(stderr, "actor_bench: %s lost messages: %llu of %d arrived\n",
                 "throughput run", static_cast<unsigned long long>(after - before), messages);
  }
  return messages / seconds;
}

struct Row {
  std::string measurement;  // e.g. "round trip p50, in-process"
  std::string unit;
  std::string policy;
  std::vector<double> raw, troupe;
};

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

uint16_t StartServer(Stack stack, const std::string& policy,
                     std::unique_ptr<ChildProcess>* server) {
  char self_path[4096];
  ssize_t n = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
  self_path[n > 0 ? n : 0] = '\0';
  *server = std::move(*ChildProcess::Start(
      {self_path, absl::StrCat("--serve=", stack == Stack::kRawCaf ? "raw" : "troupe"),
       absl::StrCat("--scheduler_threads=", absl::GetFlag(FLAGS_scheduler_threads)),
       absl::StrCat("--policy=", policy)}));
  std::string line = *(*server)->WaitForLine("port ", absl::Seconds(60));
  int port = 0;
  absl::SimpleAtoi(line.substr(line.find(' ') + 1), &port);
  return static_cast<uint16_t>(port);
}

// MeasurePolicy fills six rows (latency and throughput, in-process and across processes) for
// both stacks under one scheduler policy.
std::vector<Row> MeasurePolicy(const std::string& policy) {
  std::vector<Row> rows = {{"round trip p50, in-process", "us", policy, {}, {}},
                           {"round trip p99, in-process", "us", policy, {}, {}},
                           {"one-way throughput, in-process", "msg/s", policy, {}, {}},
                           {"round trip p50, 2 processes", "us", policy, {}, {}},
                           {"round trip p99, 2 processes", "us", policy, {}, {}},
                           {"one-way throughput, 2 processes", "msg/s", policy, {}, {}}};
  const int repeats = absl::GetFlag(FLAGS_repeats);
  for (int repeat = 0; repeat < repeats; ++repeat) {
    // Alternate the order so neither stack always runs on a warmer machine.
    std::vector<Stack> order = repeat % 2 == 0 ? std::vector<Stack>{Stack::kRawCaf, Stack::kTroupe}
                                               : std::vector<Stack>{Stack::kTroupe, Stack::kRawCaf};
    for (Stack stack : order) {
      auto add = [&](size_t row, double value) {
        (stack == Stack::kRawCaf ? rows[row].raw : rows[row].troupe).push_back(value);
      };
      std::unique_ptr<Endpoint> local = LocalEndpoint(stack, policy);
      Percentiles p = RoundTrips(*local);
      add(0, p.p50_us);
      add(1, p.p99_us);
      add(2, Throughput(*local));
      Shutdown(local);

      std::unique_ptr<ChildProcess> server;
      uint16_t port = StartServer(stack, policy, &server);
      std::unique_ptr<Endpoint> remote = RemoteEndpoint(stack, policy, port);
      p = RoundTrips(*remote);
      add(3, p.p50_us);
      add(4, p.p99_us);
      add(5, Throughput(*remote));
      Shutdown(remote);
      server->Signal(SIGTERM);
      server->Wait(absl::Seconds(30)).IgnoreError();
      std::fprintf(stderr, "actor_bench: %s, repeat %d/%d, %s done\n", policy.c_str(),
                   repeat + 1, repeats, StackName(stack));
    }
  }
  return rows;
}

int Bench() {
  std::vector<Row> rows;
  for (absl::string_view policy : absl::StrSplit(absl::GetFlag(FLAGS_policies), ',')) {
    std::vector<Row> measured = MeasurePolicy(std::string(policy));
    rows.insert(rows.end(), measured.begin(), measured.end());
  }
  std::printf("\n%-34s %-9s %12s %12s %10s\n", "measurement (median of runs)", "policy",
              "raw CAF", "Troupe", "Troupe/raw");
  std::string csv = "measurement,unit,policy,stack,run,value\n";
  std::string json = "{\n  \"rows\": [\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& row = rows[i];
    const double raw = Median(row.raw), troupe = Median(row.troupe);
    const char* unit = row.unit == "us" ? "us" : "";
    std::printf("%-34s %-9s %9.1f %-2s %9.1f %-2s %9.3f\n", row.measurement.c_str(),
                row.policy.c_str(), raw, unit, troupe, unit, troupe / raw);
    for (size_t r = 0; r < row.raw.size(); ++r) {
      absl::StrAppend(&csv, "\"", row.measurement, "\",", row.unit, ",", row.policy,
                      ",raw CAF,", r, ",", row.raw[r], "\n");
      absl::StrAppend(&csv, "\"", row.measurement, "\",", row.unit, ",", row.policy,
                      ",Troupe,", r, ",", row.troupe[r], "\n");
    }
    absl::StrAppend(&json, absl::StrFormat("    {\"measurement\": \"%s\", \"unit\": \"%s\", "
                                           "\"policy\": \"%s\", \"raw_caf\": %.3f, "
                                           "\"troupe\": %.3f, \"ratio\": %.4f}%s\n",
                                           row.measurement, row.unit, row.policy, raw, troupe,
                                           troupe / raw, i + 1 < rows.size() ? "," : ""));
  }
  absl::StrAppend(&json, absl::StrFormat(
                             "  ],\n  \"label\": \"%s\",\n  \"round_trips\": %d,\n  "
                             "\"messages\": %d,\n  \"repeats\": %d,\n  "
                             "\"scheduler_threads\": %d,\n  \"cores\": %d\n}\n",
                             absl::GetFlag(FLAGS_label), absl::GetFlag(FLAGS_round_trips),
                             absl::GetFlag(FLAGS_messages), absl::GetFlag(FLAGS_repeats),
                             absl::GetFlag(FLAGS_scheduler_threads),
                             static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN))));
  const std::string out_dir = absl::GetFlag(FLAGS_out_dir);
  if (!out_dir.empty()) {
    const std::string stem = absl::StrCat(out_dir, "/actors_bench_", absl::GetFlag(FLAGS_label));
    std::ofstream(stem + ".csv") << csv;
    std::ofstream(stem + ".json") << json;
    std::printf("\nwrote %s.csv and .json\n", stem.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace troupe::tools

int main(int argc, char** argv) {
  troupe::actors::ShutdownSignals signals = troupe::actors::ShutdownSignals::Block();
  absl::ParseCommandLine(argc, argv);
  const std::string serve = absl::GetFlag(FLAGS_serve);
  if (!serve.empty()) return troupe::tools::Serve(serve, signals);
  return troupe::tools::Bench();
}
