// PrefillInstance: DistServe's prefill side as an actor. It batches prompts first come, first
// served under a token budget, runs each batch's prefill, streams every request's first token to
// its client at once, and hands the request to a decode instance (DecodeRequest), keeping the
// prompt's KV in its cache until the decode instance pulls it; only then are the blocks freed.
// Its cache is the burst buffer between the phases: when it is full of unpulled KV, admission
// stops (back-pressure) instead of swapping.
//
// Protocol (serving/instance/messages.h):
//   (GenerateRequest)          -> the first GeneratedToken to the sender (finished if that was
//                                 the last), the rest from the decode instance; or an error
//   (pull_atom, int64_t id, transfer::KvPullSpec)
//                              -> transfer::KvOffer: the request's KV by the first of the
//                                 instance's transports that reaches the puller
//                                 (serving/transfer/kv_transport.h). Bytes free the blocks at
//                                 once; a device offer keeps them until (release_atom, id)
//   (release_atom, int64_t id) -> void: the puller has copied the KV; the blocks are freed (also
//                                 when the puller goes down first)
//   (cancel_atom, int64_t id)  -> bool: whether it was queued or its KV unpulled; a queued
//                                 request's client gets GeneratedToken{id, -1, true, cancel},
//                                 an unpulled KV is freed
//   (stats_atom)               -> InstanceStats (running = requests whose KV awaits a pull or
//                                 a puller's copy)
//
//   caf::actor prefill = *SpawnPrefillInstance(system, {.backend = ..., .decode = decode});
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "caf/actor.hpp"
#include "caf/actor_system.hpp"
#include "serving/engine/forward_backend.h"
#include "serving/instance/messages.h"
#include "serving/transfer/kv_transport.h"

namespace troupe::serving::instance {

struct PrefillInstanceOptions {
  std::string name = "prefill";
  std::unique_ptr<engine::ForwardBackend> backend;  // owned by the instance
  int64_t num_kv_blocks = 0;                        // 0: all of the backend's
  // DistServe's released defaults for a prefill batch: 8192 tokens, 128 requests.
  int max_batch_tokens = 8192;
  int max_batch_requests = 128;
  // Where prefilled requests go (DecodeRequest): a decode instance, or, if null, back to each
  // request's sender (the router, which places it on a decode instance).
  caf::actor decode;
  // How pulled KV leaves, in order of preference; empty: bytes only.
  transfer::KvTransports transports;
};

absl::StatusOr<caf::actor> SpawnPrefillInstance(caf::actor_system& system,
                                                PrefillInstanceOptions options);

}  // namespace troupe::serving::instance
