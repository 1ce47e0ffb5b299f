// Runtime bootstrap: one actor system per process, configured from flags and the cluster TOML.
//
// Troupe never uses CAF_MAIN: CAF's option parser rejects flags it does not know. Instead the
// binary parses its Abseil flags, loads the TOML, fills RuntimeOptions, and calls
// Runtime::Create. The runtime sizes CAF's scheduler and LibTorch's intra-op pool explicitly
// (never both at the core count), loads the middleman, registers Troupe's message types, and
// owns the process's MetricsRegistry.
//
//   ShutdownSignals signals = ShutdownSignals::Block();  // first thing in main()
//   absl::StatusOr<std::unique_ptr<Runtime>> runtime = Runtime::Create(options);
//   ...
//   signals.Wait(absl::InfiniteDuration());               // SIGINT or SIGTERM
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "actors/metrics.h"
#include "caf/actor.hpp"
#include "caf/actor_system.hpp"
#include "caf/actor_system_config.hpp"

namespace troupe::actors {

// ThreadCounts are the sizes of the two thread pools that compete for cores.
struct ThreadCounts {
  int scheduler = 1;  // CAF worker threads.
  int compute = 1;    // LibTorch intra-op threads.
};

// ResolveThreadCounts fills in zeros: by default the scheduler gets half the cores and compute
// the rest, so the two never both claim every core.
ThreadCounts ResolveThreadCounts(int scheduler_threads, int compute_threads, int cores);

// RuntimeOptions configure one process's actor system.
struct RuntimeOptions {
  std::string node_name = "local";
  int scheduler_threads = 0;  // 0: derive (ResolveThreadCounts).
  int compute_threads = 0;    // 0: derive.
  // CAF's scheduler: "sharing" (one queue; idle workers block and are woken at once) or
  // "stealing" (CAF's default; idle workers poll, then sleep 50 us between polls). Sharing halves
  // the cross-process round trip on the machines measured (docs/results/actors.md); stealing
  // scales better to many busy scheduler threads.
  std::string scheduler_policy = "sharing";
  bool load_middleman = true;
  // Peers exchange heartbeats this often; a peer silent for `connection_timeout` is declared
  // dead (its actors go down), which is how a cut network link is noticed.
  absl::Duration heartbeat_interval = absl::Seconds(1);
  absl::Duration connection_timeout = absl::Seconds(5);
  // Sets the compute library's thread count (e.g. SetTorchThreads). Binaries that link no
  // compute library leave it empty.
  std::function<absl::Status(int)> set_compute_threads;
  // More CAF type-ID blocks, registered after the runtime's own (e.g. the serving layer's
  // RegisterServingMessageTypes); every process of a cluster must register the same ones.
  std::vector<std::function<void(caf::actor_system_config&)>> register_types;
};

// TroupeConfig is CAF's config plus what every Troupe actor may need from its system.
class TroupeConfig : public caf::actor_system_config {
 public:
  TroupeConfig(std::string node_name, MetricsRegistry* metrics);

  const std::string& node_name() const { return node_name_; }
  MetricsRegistry* metrics() const { return metrics_; }

 private:
  std::string node_name_;
  MetricsRegistry* metrics_;
};

// MetricsOf returns the registry of a system made from a TroupeConfig, or nullptr.
MetricsRegistry* MetricsOf(caf::actor_system& system);
// NodeNameOf returns the node name of a system made from a TroupeConfig, or "".
std::string NodeNameOf(caf::actor_system& system);

// MakeConfig builds a CAF config (scheduler size, middleman, Troupe's types) from options.
std::unique_ptr<TroupeConfig> MakeConfig(const RuntimeOptions& options, int scheduler_threads,
                                         MetricsRegistry* metrics);

// Runtime owns a process's metrics registry and actor system, in that order.
class Runtime {
 public:
  static absl::StatusOr<std::unique_ptr<Runtime>> Create(const RuntimeOptions& options);
  ~Runtime();  // Calls Shutdown().

  // Own makes `actor` part of the runtime's lifetime: Shutdown stops it.
  void Own(const caf::actor& actor);

  // Shutdown stops every owned actor (last owned first) and waits up to `grace` for all actors
  // of the system to finish. Actors still alive then (idle, but kept alive by a reference) are
  // abandoned with a warning on stderr rather than waited for; no handle to them may be used
  // after this. Safe to call more than once.
  void Shutdown(absl::Duration grace = absl::Seconds(5));

  caf::actor_system& system() { return *system_; }
  MetricsRegistry& metrics() { return *metrics_; }
  const ThreadCounts& threads() const { return threads_; }
  const std::string& node_name() const { return config_->node_name(); }

 private:
  Runtime() = default;
  std::unique_ptr<MetricsRegistry> metrics_;
  std::unique_ptr<TroupeConfig> config_;
  std::unique_ptr<caf::actor_system> system_;
  std::vector<caf::actor> owned_;
  ThreadCounts threads_;
};

// ShutdownSignals turns SIGINT and SIGTERM into an orderly shutdown.
//
// Block() must run before any thread starts (so every thread inherits the blocked mask); the
// signals then wait, undelivered, until Wait() takes one. After the first, the default action is
// restored, so a second Ctrl-C ends a stuck shutdown at once.
class ShutdownSignals {
 public:
  static ShutdownSignals Block();

  // Wait returns the signal number, or nullopt when `timeout` passes first.
  std::optional<int> Wait(absl::Duration timeout);

 private:
  ShutdownSignals() = default;
};

}  // namespace troupe::actors
