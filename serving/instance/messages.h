// The serving layer's messages between clients (the router, the HTTP frontend, tests) and
// instances, and their CAF type-ID block, which follows the runtime's (actors/messages.h).
//
//   RuntimeOptions options;
//   options.register_types.push_back(RegisterServingMessageTypes);
//   self->send(instance, GenerateRequest{...});   // then GeneratedToken messages come back
#pragma once

#include <cstdint>
#include <vector>

#include "actors/messages.h"
#include "caf/actor.hpp"
#include "caf/actor_system_config.hpp"
#include "caf/meta/type_name.hpp"
#include "caf/type_id.hpp"
#include "serving/transfer/kv_transport.h"

namespace troupe::serving::instance {

// GenerateRequest asks an instance to generate from a tokenized prompt. The instance streams
// GeneratedToken messages back to the sender; a request it refuses is answered with the error
// instead (naming the request and the fix).
struct GenerateRequest {
  int64_t id = 0;
  std::vector<int32_t> prompt;
  int32_t max_new_tokens = 16;
  int32_t stop_token = -1;  // -1: none
  // Sampling (gpu/sampling/sampling_params.h): temperature 0 is greedy.
  float temperature = 0.0f;
  int32_t top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;

  friend bool operator==(const GenerateRequest& a, const GenerateRequest& b) {
    return a.id == b.id && a.prompt == b.prompt && a.max_new_tokens == b.max_new_tokens &&
           a.stop_token == b.stop_token && a.temperature == b.temperature && a.top_k == b.top_k &&
           a.top_p == b.top_p && a.seed == b.seed;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, GenerateRequest& x) {
  return f(caf::meta::type_name("GenerateRequest"), x.id, x.prompt, x.max_new_tokens, x.stop_token,
           x.temperature, x.top_k, x.top_p, x.seed);
}

// GeneratedToken is one token of a request; `finished` marks its last (the request's KV blocks
// are free by then). reason: 0 not finished, 1 length, 2 stop token, 3 cancelled (token -1).
struct GeneratedToken {
  int64_t request_id = 0;
  int32_t token = 0;
  bool finished = false;
  uint8_t reason = 0;

  friend bool operator==(const GeneratedToken& a, const GeneratedToken& b) {
    return a.request_id == b.request_id && a.token == b.token && a.finished == b.finished &&
           a.reason == b.reason;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, GeneratedToken& x) {
  return f(caf::meta::type_name("GeneratedToken"), x.request_id, x.token, x.finished, x.reason);
}

// InstanceStats is a snapshot of an instance's queue and KV cache.
// A decode instance also counts the KV it pulled: requests, bytes, and the seconds from sending
// each pull to the KV being in place (the prefill side's answer, the transfer, the import).
struct InstanceStats {
  int64_t waiting = 0;
  int64_t running = 0;
  int64_t free_kv_blocks = 0;
  int64_t total_kv_blocks = 0;
  int64_t tokens_generated = 0;
  int64_t preemptions = 0;
  int64_t kv_transfers = 0;
  int64_t kv_transfer_bytes = 0;
  double kv_transfer_seconds = 0;

  friend bool operator==(const InstanceStats& a, const InstanceStats& b) {
    return a.waiting == b.waiting && a.running == b.running &&
           a.free_kv_blocks == b.free_kv_blocks && a.total_kv_blocks == b.total_kv_blocks &&
           a.tokens_generated == b.tokens_generated && a.preemptions == b.preemptions &&
           a.kv_transfers == b.kv_transfers && a.kv_transfer_bytes == b.kv_transfer_bytes &&
           a.kv_transfer_seconds == b.kv_transfer_seconds;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, InstanceStats& x) {
  return f(caf::meta::type_name("InstanceStats"), x.waiting, x.running, x.free_kv_blocks,
           x.total_kv_blocks, x.tokens_generated, x.preemptions, x.kv_transfers,
           x.kv_transfer_bytes, x.kv_transfer_seconds);
}

inline constexpr uint8_t kFinishedByLength = 1;
inline constexpr uint8_t kFinishedByStopToken = 2;
inline constexpr uint8_t kFinishedByCancel = 3;
// An instance serving the request went down (the router's verdict): the request is lost.
inline constexpr uint8_t kFinishedByFailure = 4;

// DecodeRequest hands a prefilled request to a decode instance (DistServe's bridge): the
// prompt's KV waits in `prefill`'s cache until the decode instance pulls it
// ((pull_atom, id, transfer::KvPullSpec) -> transfer::KvOffer, then (release_atom, id) once
// copied; serving/transfer/kv_transport.h); `client` gets the rest of the tokens.
struct DecodeRequest {
  GenerateRequest request;
  int32_t first_token = 0;
  caf::actor prefill;
  caf::actor client;

  friend bool operator==(const DecodeRequest& a, const DecodeRequest& b) {
    return a.request == b.request && a.first_token == b.first_token && a.prefill == b.prefill &&
           a.client == b.client;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, DecodeRequest& x) {
  return f(caf::meta::type_name("DecodeRequest"), x.request, x.first_token, x.prefill, x.client);
}

// RouterStats is the router's view of the cluster: instances up, requests in flight and
// finished by outcome, and the mean time of each phase of the finished ones, in seconds: from
// arrival to the first token (queueing + prefill), from the first token to the second (the
// hand-off: decode queueing + KV transfer + one step), and from the second token to the last.
struct RouterStats {
  int64_t prefill_instances = 0;
  int64_t decode_instances = 0;
  int64_t in_flight = 0;
  int64_t finished = 0;
  int64_t cancelled = 0;
  int64_t failed = 0;
  double mean_prefill_s = 0;
  double mean_handoff_s = 0;
  double mean_decode_s = 0;

  friend bool operator==(const RouterStats& a, const RouterStats& b) {
    return a.prefill_instances == b.prefill_instances &&
           a.decode_instances == b.decode_instances && a.in_flight == b.in_flight &&
           a.finished == b.finished && a.cancelled == b.cancelled && a.failed == b.failed &&
           a.mean_prefill_s == b.mean_prefill_s && a.mean_handoff_s == b.mean_handoff_s &&
           a.mean_decode_s == b.mean_decode_s;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, RouterStats& x) {
  return f(caf::meta::type_name("RouterStats"), x.prefill_instances, x.decode_instances,
           x.in_flight, x.finished, x.cancelled, x.failed, x.mean_prefill_s, x.mean_handoff_s,
           x.mean_decode_s);
}

// RegisterServingMessageTypes adds this block to `cfg` (RuntimeOptions::register_types).
void RegisterServingMessageTypes(caf::actor_system_config& cfg);

}  // namespace troupe::serving::instance

CAF_ADD_ATOM(troupe_serving, troupe::serving::instance, cancel_atom, "cancel")
CAF_ADD_ATOM(troupe_serving, troupe::serving::instance, step_atom, "step")
CAF_ADD_ATOM(troupe_serving, troupe::serving::instance, pull_atom, "pull")
CAF_ADD_ATOM(troupe_serving, troupe::serving::instance, poll_atom, "poll")
CAF_ADD_ATOM(troupe_serving, troupe::serving::instance, router_stats_atom, "routerstat")
CAF_ADD_ATOM(troupe_serving, troupe::serving::instance, release_atom, "release")
CAF_ADD_ATOM(troupe_serving, troupe::serving::instance, copied_atom, "copied")

CAF_BEGIN_TYPE_ID_BLOCK(troupe_serving, caf::id_block::troupe::end)
CAF_ADD_TYPE_ID(troupe_serving, (troupe::serving::instance::GenerateRequest))
CAF_ADD_TYPE_ID(troupe_serving, (troupe::serving::instance::GeneratedToken))
CAF_ADD_TYPE_ID(troupe_serving, (troupe::serving::instance::InstanceStats))
CAF_ADD_TYPE_ID(troupe_serving, (troupe::serving::instance::DecodeRequest))
CAF_ADD_TYPE_ID(troupe_serving, (troupe::serving::transfer::KvPullSpec))
CAF_ADD_TYPE_ID(troupe_serving, (troupe::serving::transfer::KvOffer))
CAF_ADD_TYPE_ID(troupe_serving, (troupe::serving::instance::RouterStats))
CAF_END_TYPE_ID_BLOCK(troupe_serving)
