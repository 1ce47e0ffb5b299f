// InstanceMetrics: the gauges every instance keeps up to date in its actor system's registry,
// labelled with the instance's name: requests waiting, requests running (for a prefill
// instance: whose KV awaits a pull), and KV blocks in use.
#pragma once

#include <string>

#include "actors/metrics.h"
#include "actors/runtime.h"
#include "caf/actor_system.hpp"

namespace troupe::serving::instance {

class InstanceMetrics {
 public:
  // Register creates the gauges; without a registry (a plain CAF system) Update does nothing.
  static InstanceMetrics Register(caf::actor_system& system, const std::string& name) {
    InstanceMetrics m;
    actors::MetricsRegistry* registry = actors::MetricsOf(system);
    if (registry == nullptr) return m;
    const actors::Labels labels = {{"instance", name}};
    m.waiting_ = registry
                     ->AddGauge("troupe_instance_waiting_requests",
                                "Requests queued at an instance.", labels)
                     .value_or(nullptr);
    m.running_ =
        registry
            ->AddGauge("troupe_instance_running_requests",
                       "Requests running at an instance (prefill: awaiting a pull).", labels)
            .value_or(nullptr);
    m.kv_used_ = registry
                     ->AddGauge("troupe_instance_kv_blocks_used",
                                "KV cache blocks in use at an instance.", labels)
                     .value_or(nullptr);
    return m;
  }

  void Update(int64_t waiting, int64_t running, int64_t kv_blocks_used) {
    if (waiting_ != nullptr) waiting_->Set(static_cast<double>(waiting));
    if (running_ != nullptr) running_->Set(static_cast<double>(running));
    if (kv_used_ != nullptr) kv_used_->Set(static_cast<double>(kv_blocks_used));
  }

 private:
  actors::Gauge* waiting_ = nullptr;
  actors::Gauge* running_ = nullptr;
  actors::Gauge* kv_used_ = nullptr;
};

}  // namespace troupe::serving::instance
