// The GPU worker actor: one device (or the CPU), one thread, work items in order.
//
// A GPU worker binds its device on its own thread (not one of CAF's scheduler threads, so a
// long kernel launch or a blocking synchronize never stalls other actors) and runs the work
// items it receives one after another, in arrival order. It reports how long it was busy.
//
//   caf::actor worker = *SpawnGpuWorker(system, {.name = "w0", .device = -1});
//   absl::Status s = AskDone(system, worker, absl::Seconds(5),
//                            WorkItem{"matmul", [] { return RunMatmul(); }});
//   WorkerStats stats = *Ask<WorkerStats>(system, worker, absl::Seconds(5), stats_atom::value);
//
// Protocol:
//   (WorkItem)     -> void, or the item's error      (local only: a WorkItem holds code)
//   (stats_atom)   -> WorkerStats
//
// Metrics: troupe_worker_items_total{worker,device,outcome}, troupe_worker_busy_nanoseconds_total.
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "caf/actor.hpp"
#include "caf/actor_system.hpp"
#include "caf/allowed_unsafe_message_type.hpp"

namespace troupe::actors {

// WorkItem is a unit of work for a GPU worker. It runs on the worker's thread with the device
// bound. It never crosses a process.
struct WorkItem {
  std::string label;
  std::function<absl::Status()> run;
};

// DeviceBinder makes `device` current on the calling thread (cudaSetDevice for CUDA).
using DeviceBinder = std::function<absl::Status(int device)>;

struct GpuWorkerOptions {
  std::string name = "gpu_worker";
  int device = -1;  // -1: the CPU; N: CUDA device N.
  // Required when device >= 0. The gpu/ layer provides one; CPU-only binaries have none.
  DeviceBinder bind_device;
};

// SpawnGpuWorker starts a worker on a thread of its own. It fails at once if a CUDA device is
// asked for without a binder; a binder that fails makes the worker exit with that error.
absl::StatusOr<caf::actor> SpawnGpuWorker(caf::actor_system& system, GpuWorkerOptions options);

// DeviceName renders a device index: -1 is "cpu", N is "cuda:N".
std::string DeviceName(int device);

}  // namespace troupe::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::actors::WorkItem)
