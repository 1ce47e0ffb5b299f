#include "actors/gpu_worker.h"

#include <exception>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "actors/errors.h"
#include "actors/instrumented_actor.h"
#include "actors/messages.h"
#include "actors/runtime.h"
#include "caf/all.hpp"

namespace troupe::actors {
namespace {

struct GpuWorkerState {
  GpuWorkerOptions options;
  WorkerStats stats;
  absl::Time started = absl::Now();
  bool bound = false;
  Counter* done = nullptr;
  Counter* failed = nullptr;
  Counter* busy_ns = nullptr;
};

using GpuWorkerActor = caf::stateful_actor<GpuWorkerState, InstrumentedActor>;

// Bind makes the device current on the worker's thread. Binding is lazy, on the first message,
// because only then is the code surely running on the worker's own thread.
absl::Status Bind(GpuWorkerState& state) {
  if (state.bound) return absl::OkStatus();
  if (state.options.device >= 0) {
    if (absl::Status status = state.options.bind_device(state.options.device); !status.ok()) {
      return absl::Status(status.code(), absl::StrCat("worker \"", state.options.name,
                                                      "\" cannot bind ", state.stats.device,
                                                      ": ", status.message()));
    }
  }
  state.bound = true;
  return absl::OkStatus();
}

absl::Status RunGuarded(const WorkItem& item) {
  if (!item.run) return absl::InvalidArgumentError(absl::StrCat("work item \"", item.label,
                                                                "\" has nothing to run"));
  try {
    return item.run();
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat("work item \"", item.label, "\" threw: ", e.what()));
  } catch (...) {
    return absl::InternalError(absl::StrCat("work item \"", item.label, "\" threw"));
  }
}

caf::behavior GpuWorker(GpuWorkerActor* self, GpuWorkerOptions options) {
  GpuWorkerState& state = self->state;
  state.options = std::move(options);
  state.stats.name = state.options.name;
  state.stats.device = DeviceName(state.options.device);
  self->Instrument(state.options.name, "gpu_worker");
  if (MetricsRegistry* metrics = MetricsOf(self->home_system())) {
    Labels labels = {{"node", NodeNameOf(self->home_system())},
                     {"worker", state.options.name},
                     {"device", state.stats.device}};
    Labels ok = labels, error = labels;
    ok.emplace_back("outcome", "ok");
    error.emplace_back("outcome", "error");
    const char* items_help = "Work items run by the GPU worker.";
    state.done = metrics->AddCounter("troupe_worker_items_total", items_help, ok).value_or(nullptr);
    state.failed =
        metrics->AddCounter("troupe_worker_items_total", items_help, error).value_or(nullptr);
    state.busy_ns = metrics->AddCounter("troupe_worker_busy_nanoseconds_total",
                                        "Time the GPU worker spent running work items.", labels)
                        .value_or(nullptr);
  }
  return {
      [self](const WorkItem& item) -> caf::result<void> {
        GpuWorkerState& state = self->state;
        if (absl::Status bound = Bind(state); !bound.ok()) {
          self->quit(ToCafError(bound));
          return ToCafError(bound);
        }
        const absl::Time begin = absl::Now();
        absl::Status status = RunGuarded(item);
        const int64_t busy = absl::ToInt64Nanoseconds(absl::Now() - begin);
        state.stats.busy_ns += busy;
        if (state.busy_ns != nullptr) state.busy_ns->Increment(static_cast<uint64_t>(busy));
        if (status.ok()) {
          ++state.stats.items_done;
          if (state.done != nullptr) state.done->Increment();
          return caf::unit;
        }
        ++state.stats.items_failed;
        if (state.failed != nullptr) state.failed->Increment();
        return ToCafError(status);
      },
      [self](stats_atom) {
        WorkerStats stats = self->state.stats;
        stats.uptime_ns = absl::ToInt64Nanoseconds(absl::Now() - self->state.started);
        return stats;
      },
  };
}

}  // namespace

std::string DeviceName(int device) {
  return device < 0 ? std::string("cpu") : absl::StrCat("cuda:", device);
}

absl::StatusOr<caf::actor> SpawnGpuWorker(caf::actor_system& system, GpuWorkerOptions options) {
  if (options.device >= 0 && !options.bind_device) {
    return absl::FailedPreconditionError(absl::StrCat(
        "worker \"", options.name, "\" asks for ", DeviceName(options.device),
        " but this binary has no CUDA support; use device = \"cpu\", or run a binary built "
        "with --config=cuda"));
  }
  return system.spawn<caf::detached>(GpuWorker, std::move(options));
}

}  // namespace troupe::actors
