#include "actors/runtime.h"

#include <signal.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "actors/messages.h"
#include "caf/actor_registry.hpp"
#include "caf/io/middleman.hpp"
#include "caf/send.hpp"

namespace troupe::actors {

ThreadCounts ResolveThreadCounts(int scheduler_threads, int compute_threads, int cores) {
  cores = std::max(cores, 1);
  ThreadCounts counts;
  counts.scheduler = scheduler_threads > 0 ? scheduler_threads : std::max(1, cores / 2);
  counts.compute =
      compute_threads > 0 ? compute_threads : std::max(1, cores - counts.scheduler);
  return counts;
}

TroupeConfig::TroupeConfig(std::string node_name, MetricsRegistry* metrics)
    : node_name_(std::move(node_name)), metrics_(metrics) {}

MetricsRegistry* MetricsOf(caf::actor_system& system) {
  const auto* config = dynamic_cast<const TroupeConfig*>(&system.config());
  return config == nullptr ? nullptr : config->metrics();
}

std::string NodeNameOf(caf::actor_system& system) {
  const auto* config = dynamic_cast<const TroupeConfig*>(&system.config());
  return config == nullptr ? std::string() : config->node_name();
}

std::unique_ptr<TroupeConfig> MakeConfig(const RuntimeOptions& options, int scheduler_threads,
                                         MetricsRegistry* metrics) {
  auto config = std::make_unique<TroupeConfig>(options.node_name, metrics);
  config->set("scheduler.max-threads", static_cast<size_t>(scheduler_threads));
  config->set("scheduler.policy", caf::atom_from_string(options.scheduler_policy));
  // Nodes never talk to anyone but their own cluster; name the application so a stray
  // connection from another CAF program is refused at the handshake.
  config->set("middleman.app-identifiers", std::vector<std::string>{"troupe"});
  config->set("middleman.heartbeat-interval",
              caf::timespan(absl::ToInt64Nanoseconds(options.heartbeat_interval)));
  config->set("middleman.connection-timeout",
              caf::timespan(absl::ToInt64Nanoseconds(options.connection_timeout)));
  if (options.load_middleman) config->load<caf::io::middleman>();
  RegisterMessageTypes(*config);
  for (const auto& register_types : options.register_types) register_types(*config);
  return config;
}

absl::StatusOr<std::unique_ptr<Runtime>> Runtime::Create(const RuntimeOptions& options) {
  if (options.scheduler_policy != "sharing" && options.scheduler_policy != "stealing") {
    return absl::InvalidArgumentError(absl::StrCat("scheduler policy \"", options.scheduler_policy,
                                                   "\" is unknown; use \"sharing\" or \"stealing\""));
  }
  std::unique_ptr<Runtime> runtime(new Runtime());
  runtime->threads_ =
      ResolveThreadCounts(options.scheduler_threads, options.compute_threads,
                          static_cast<int>(std::thread::hardware_concurrency()));
  if (options.set_compute_threads) {
    if (absl::Status status = options.set_compute_threads(runtime->threads_.compute);
        !status.ok()) {
      return status;
    }
  }
  runtime->metrics_ = std::make_unique<MetricsRegistry>();
  runtime->config_ =
      MakeConfig(options, runtime->threads_.scheduler, runtime->metrics_.get());
  runtime->system_ = std::make_unique<caf::actor_system>(*runtime->config_);
  const Labels labels = {{"node", options.node_name}};
  (*runtime->metrics_->AddGauge("troupe_scheduler_threads", "CAF scheduler threads.", labels))
      ->Set(runtime->threads_.scheduler);
  (*runtime->metrics_->AddGauge("troupe_compute_threads", "Compute (LibTorch) threads.",
                                labels))
      ->Set(runtime->threads_.compute);
  return runtime;
}

void Runtime::Own(const caf::actor& actor) { owned_.push_back(actor); }

void Runtime::Shutdown(absl::Duration grace) {
  if (system_ == nullptr) return;
  for (auto it = owned_.rbegin(); it != owned_.rend(); ++it) {
    caf::anon_send_exit(*it, caf::exit_reason::user_shutdown);
  }
  owned_.clear();
  const absl::Time deadline = absl::Now() + grace;
  while (system_->registry().running() > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  if (size_t running = system_->registry().running(); running > 0) {
    std::fprintf(stderr,
                 "troupe: %zu actor(s) on node \"%s\" still running %s after shutdown began; "
                 "abandoning them\n",
                 running, config_->node_name().c_str(), absl::FormatDuration(grace).c_str());
    system_->await_actors_before_shutdown(false);
  }
  // The system joins its threads and flushes mailboxes before the registry it writes to goes.
  system_.reset();
}

Runtime::~Runtime() {
  Shutdown();
  config_.reset();
  metrics_.reset();
}

namespace {

sigset_t ShutdownSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

ShutdownSignals ShutdownSignals::Block() {
  sigset_t set = ShutdownSet();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return ShutdownSignals();
}

std::optional<int> ShutdownSignals::Wait(absl::Duration timeout) {
  sigset_t set = ShutdownSet();
  int signal_number = -1;
  if (timeout == absl::InfiniteDuration()) {
    if (sigwait(&set, &signal_number) != 0) return std::nullopt;
  } else {
    timespec wait = absl::ToTimespec(timeout);
    signal_number = sigtimedwait(&set, nullptr, &wait);
    if (signal_number < 0) return std::nullopt;  // EAGAIN (timeout) or EINTR.
  }
  // From now on a second signal takes the default action (terminate) at once. Other threads
  // still block the signals, so unblock them process-wide by restoring the default action and
  // unblocking in this thread, where the kernel will deliver them.
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  return signal_number;
}

}  // namespace troupe::actors
