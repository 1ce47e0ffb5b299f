// ColocatedInstance: one model copy that runs prefill and decode together (vLLM-style
// continuous batching, optionally with Sarathi-style chunked prefill), as an actor. It is the
// baseline DistServe's disaggregated instances are measured against, on the same code path
// (ForwardBackend, KV block manager, ContinuousBatcher).
//
// Protocol (serving/instance/messages.h):
//   (GenerateRequest)           -> GeneratedToken messages to the sender, the last `finished`;
//                                  or, if refused, an error reply naming the request
//   (cancel_atom, int64_t id)   -> (bool): whether it was queued or running; a cancelled
//                                  request's sender gets GeneratedToken{id, -1, true, cancel}
//   (stats_atom)                -> InstanceStats
//   (DecodeRequest)             -> as a DistServe decode instance: the request waits until its
//                                  prompt fits the cache, its KV is pulled from the prefill
//                                  instance ((pull_atom, id, KvPullSpec) -> KvOffer) into blocks
//                                  of this cache by the offer's transport (bytes, or a device
//                                  copy on the backend's transfer stream that overlaps the
//                                  steps; then (release_atom, id) to the prefill instance), and
//                                  it decodes; the client gets the tokens after the first
//                                  (which came from the prefill instance)
// The instance runs one batch per internal step message, so requests and cancellations that
// arrive during generation join or leave at the next step. It runs on a thread of its own
// (a forward pass must not occupy a scheduler thread), and frees a request's KV blocks when it
// finishes, is cancelled, or its sender goes down.
//
//   caf::actor instance = *SpawnColocatedInstance(system, std::move(options));
//   self->send(instance, GenerateRequest{1, prompt, 32});
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "caf/actor.hpp"
#include "caf/actor_system.hpp"
#include "serving/engine/continuous_batcher.h"
#include "serving/engine/forward_backend.h"
#include "serving/instance/messages.h"
#include "serving/transfer/kv_transport.h"

namespace troupe::serving::instance {

struct ColocatedInstanceOptions {
  std::string name = "colocated";
  std::unique_ptr<engine::ForwardBackend> backend;  // owned by the instance
  // KV blocks the instance may use (at most the backend's), and the admission watermark.
  int64_t num_kv_blocks = 0;  // 0: all of the backend's
  double watermark = 0.01;    // vLLM's default
  // Host-memory KV blocks for requests swapped out under memory pressure (with
  // batcher.preemption = kSwap; DistServe's decode instance swaps). 0: no swapping.
  int64_t num_cpu_blocks = 0;
  engine::BatcherOptions batcher;
  // Decode role: prefilled requests are admitted FCFS only while the prompts whose KV is being
  // pulled hold less than this share of the cache (DistServe's decode scheduler: 5%), and the
  // next prompt fits.
  double decode_pull_share = 0.05;
  // Decode role: how KV may arrive (serving/transfer/kv_transport.h), and which kinds this
  // instance accepts (KvTransportMask: "auto" allows every kind). Empty: bytes only.
  transfer::KvTransports transports;
  uint32_t kv_transport_mask = ~0u;
};

absl::StatusOr<caf::actor> SpawnColocatedInstance(caf::actor_system& system,
                                                  ColocatedInstanceOptions options);

}  // namespace troupe::serving::instance
