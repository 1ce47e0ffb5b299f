// Helpers of the instance and router tests: deterministic prompts, what the batcher alone
// generates for a set of requests (the reference every path must reproduce), an instance's
// stats, and collecting streamed tokens.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "actors/errors.h"
#include "actors/messages.h"
#include "actors/runtime.h"
#include "caf/all.hpp"
#include "gtest/gtest.h"
#include "serving/engine/continuous_batcher.h"
#include "serving/engine/forward_backend.h"
#include "serving/instance/messages.h"
#include "serving/kv/block_manager.h"

namespace troupe::serving::instance::test_util {

// StartRuntime starts a two-thread runtime with the serving messages and no network.
inline std::unique_ptr<actors::Runtime> StartRuntime() {
  actors::RuntimeOptions options;
  options.node_name = "n0";
  options.scheduler_threads = 2;
  options.load_middleman = false;
  options.register_types.push_back(RegisterServingMessageTypes);
  return *actors::Runtime::Create(options);
}

inline std::vector<int32_t> Prompt(int n, int seed) {
  std::vector<int32_t> tokens(n);
  for (int i = 0; i < n; ++i) tokens[i] = (seed * 7919 + i * 104729) % 50257;
  return tokens;
}

// Direct runs `requests` through a ContinuousBatcher on `backend` (a fresh cache of its size).
inline std::map<int64_t, std::vector<int32_t>> Direct(engine::ForwardBackend& backend,
                                                      const std::vector<GenerateRequest>& requests) {
  kv::BlockManagerOptions block_options;
  block_options.num_gpu_blocks = backend.num_kv_blocks();
  kv::BlockManager blocks = *kv::BlockManager::Create(block_options);
  engine::ContinuousBatcher batcher = *engine::ContinuousBatcher::Create(&backend, &blocks, {});
  for (const GenerateRequest& r : requests) {
    engine::GenerationRequest g{r.id, r.prompt, r.max_new_tokens, std::nullopt};
    g.sampling.temperature = r.temperature;
    g.sampling.top_k = r.top_k;
    g.sampling.top_p = r.top_p;
    g.sampling.seed = r.seed;
    EXPECT_TRUE(batcher.Add(g).ok());
  }
  std::map<int64_t, std::vector<int32_t>> out;
  while (batcher.HasWork()) {
    absl::StatusOr<std::vector<engine::TokenEvent>> events = batcher.Step();
    EXPECT_TRUE(events.ok()) << events.status();
    if (!events.ok()) break;
    for (const engine::TokenEvent& e : *events) out[e.request_id].push_back(e.token);
  }
  return out;
}

inline InstanceStats Stats(caf::scoped_actor& self, const caf::actor& instance) {
  InstanceStats stats;
  self->request(instance, caf::infinite, actors::stats_atom::value)
      .receive([&](const InstanceStats& s) { stats = s; },
               [&](const caf::error& e) { ADD_FAILURE() << actors::RenderError(e); });
  return stats;
}

// Streams collects GeneratedToken messages: each request's tokens (the last message's token
// included unless it is -1) and how it finished.
struct Streams {
  std::map<int64_t, std::vector<int32_t>> tokens;
  std::map<int64_t, uint8_t> reasons;  // finished requests only
};

// ReceiveUntilFinished receives tokens into `streams` until `count` requests have finished; a
// 30 s silence is a test failure (returns false).
inline bool ReceiveUntilFinished(caf::scoped_actor& self, Streams& streams, size_t count) {
  while (streams.reasons.size() < count) {
    bool got = false;
    self->receive(
        [&](const GeneratedToken& t) {
          got = true;
          if (t.token >= 0) streams.tokens[t.request_id].push_back(t.token);
          if (t.finished) streams.reasons[t.request_id] = t.reason;
        },
        caf::after(std::chrono::seconds(30)) >> [] {});
    if (!got) {
      ADD_FAILURE() << "no token within 30 s; " << streams.reasons.size() << " of " << count
                    << " requests finished";
      return false;
    }
  }
  return true;
}

}  // namespace troupe::serving::instance::test_util
