#include "serving/instance/colocated_instance.h"

#include <cstdio>
#include <deque>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "actors/errors.h"
#include "caf/actor_cast.hpp"
#include "caf/event_based_actor.hpp"
#include "caf/stateful_actor.hpp"
#include "serving/instance/instance_metrics.h"
#include "serving/kv/block_manager.h"

namespace troupe::serving::instance {
namespace {

using actors::stats_atom;

engine::GenerationRequest ToGenerationRequest(const GenerateRequest& r) {
  engine::GenerationRequest request;
  request.id = r.id;
  request.prompt = r.prompt;
  request.max_new_tokens = r.max_new_tokens;
  if (r.stop_token >= 0) request.stop_token = r.stop_token;
  request.sampling.temperature = r.temperature;
  request.sampling.top_k = r.top_k;
  request.sampling.top_p = r.top_p;
  request.sampling.seed = r.seed;
  return request;
}

kv::BlockManagerOptions BlockOptions(const ColocatedInstanceOptions& options) {
  kv::BlockManagerOptions blocks;
  blocks.num_gpu_blocks =
      options.num_kv_blocks > 0 ? options.num_kv_blocks : options.backend->num_kv_blocks();
  blocks.num_cpu_blocks = options.num_cpu_blocks;
  blocks.watermark = options.watermark;
  return blocks;
}

struct InstanceState {
  std::unique_ptr<engine::ForwardBackend> backend;
  std::optional<kv::BlockManager> blocks;
  std::optional<engine::ContinuousBatcher> batcher;  // points into backend and blocks
  absl::flat_hash_map<int64_t, caf::actor> clients;  // request id -> who gets its tokens
  bool step_pending = false;
  int64_t tokens_generated = 0;
  std::deque<DecodeRequest> to_admit;  // prefilled requests waiting for blocks (decode role)
  // Admitted, KV on its way (decode role): who gets the tokens, and when the pull was sent.
  struct Pulling {
    caf::actor client;
    absl::Time started;
  };
  absl::flat_hash_map<int64_t, Pulling> pulling;
  double pull_share = 0.05;  // ColocatedInstanceOptions::decode_pull_share
  InstanceMetrics metrics;
  transfer::KvTransports transports;  // decode role: how KV arrives
  transfer::KvPullSpec pull_spec;     // sent with every pull
  // Offers accepted whose copy is still running (device transports), polled between steps.
  // Declared after `backend`: destroyed first, waiting for their copies.
  struct Copying {
    DecodeRequest request;
    std::unique_ptr<engine::PendingKvCopy> copy;
    bool release = false;    // the prefill side holds its blocks until (release_atom, id)
    bool cancelled = false;  // the client was told; the blocks go when the copy is done
    int64_t bytes = 0;       // of KV moved
    absl::Time started;      // when the pull was sent
  };
  absl::flat_hash_map<int64_t, Copying> copying;
  bool copy_poll_pending = false;
  // The finished pulls (InstanceStats).
  absl::flat_hash_set<int32_t> kinds_seen;  // transports that have brought KV here
  std::string name;
  int64_t kv_transfers = 0;
  int64_t kv_transfer_bytes = 0;
  double kv_transfer_seconds = 0;
};

// How often an idle decode instance looks at its running KV copies. A busy one looks after every
// step; 200 us is well under one decode step and a small share of any real transfer.
constexpr auto kCopyPollInterval = std::chrono::microseconds(200);

using InstanceActor = caf::stateful_actor<InstanceState>;

void UpdateGauges(InstanceActor* self) {
  InstanceState& s = self->state;
  s.metrics.Update(s.batcher->num_waiting() + static_cast<int64_t>(s.to_admit.size()),
                   s.batcher->num_running(),
                   s.blocks->NumGpuBlocks() - s.blocks->NumFreeGpuBlocks());
}

// StepIfIdle queues the next batch unless one is queued or there is nothing to do; it also
// refreshes the instance's gauges, as every handler that changes the queues ends with it.
void StepIfIdle(InstanceActor* self) {
  InstanceState& s = self->state;
  UpdateGauges(self);
  if (s.step_pending || !s.batcher->HasWork()) return;
  s.step_pending = true;
  self->send(self, step_atom::value);
}

void TryAdmit(InstanceActor* self);
void AcceptOffer(InstanceActor* self, const DecodeRequest& request, transfer::KvOffer& offer);

// CancelRequest drops request `id` wherever it is (queued for admission, pulling its KV, in the
// batcher), frees its blocks and tells its client; false if the request is not here.
bool CancelRequest(InstanceActor* self, int64_t id) {
  InstanceState& s = self->state;
  for (auto it = s.to_admit.begin(); it != s.to_admit.end(); ++it) {
    if (it->request.id != id) continue;
    self->send(it->client, GeneratedToken{id, -1, true, kFinishedByCancel});
    s.to_admit.erase(it);
    return true;
  }
  if (auto it = s.pulling.find(id); it != s.pulling.end()) {  // the pull's answer is dropped
    (void)s.blocks->Free(id);
    self->send(it->second.client, GeneratedToken{id, -1, true, kFinishedByCancel});
    s.pulling.erase(it);
    TryAdmit(self);
    return true;
  }
  if (auto it = s.copying.find(id); it != s.copying.end()) {
    if (it->second.cancelled) return false;
    // The copy still writes into the blocks: they are freed when it is done (PollCopies).
    it->second.cancelled = true;
    self->send(it->second.request.client, GeneratedToken{id, -1, true, kFinishedByCancel});
    return true;
  }
  if (!s.batcher->Cancel(id).ok()) return false;
  if (auto it = s.clients.find(id); it != s.clients.end()) {
    self->send(it->second, GeneratedToken{id, -1, true, kFinishedByCancel});
    s.clients.erase(it);
  }
  return true;
}

// TryAdmit gives queued prefilled requests blocks, in arrival order while the cache allows
// (DistServe: the prompt fits above the watermark), and pulls each one's KV from its prefill
// instance; the request decodes once the KV has arrived.
void TryAdmit(InstanceActor* self) {
  InstanceState& s = self->state;
  if (s.batcher->num_swapped() > 0) return;  // swapped requests get the blocks back first
  while (!s.to_admit.empty()) {
    // DistServe's decode admission: FCFS, only while the prompts already admitted and not yet
    // decoding (here: whose KV is being pulled) hold less than a share of the cache (5%), and
    // the next prompt fits.
    int64_t pulling_blocks = 0;
    const auto count = [&](int64_t id) {
      absl::StatusOr<std::vector<int32_t>> table = s.blocks->BlockTable(id);
      if (table.ok()) pulling_blocks += static_cast<int64_t>(table->size());
    };
    for (const auto& [id, pull] : s.pulling) count(id);
    for (const auto& [id, copy] : s.copying) count(id);
    if (static_cast<double>(pulling_blocks) >=
        s.pull_share * static_cast<double>(s.blocks->NumGpuBlocks())) {
      return;  // the pulls' answers call TryAdmit again
    }
    const DecodeRequest& next = s.to_admit.front();
    const int64_t prompt = static_cast<int64_t>(next.request.prompt.size());
    absl::StatusOr<kv::Admission> admission = s.blocks->CanAllocate(prompt);
    if (!admission.ok() || *admission != kv::Admission::kOk) return;
    DecodeRequest request = std::move(s.to_admit.front());
    s.to_admit.pop_front();
    const int64_t id = request.request.id;
    if (!s.blocks->Allocate(id, prompt).ok()) return;
    s.pulling[id] = {request.client, absl::Now()};
    self->request(request.prefill, caf::infinite, pull_atom::value, id, s.pull_spec)
        .then([self, request](transfer::KvOffer& offer) { AcceptOffer(self, request, offer); },
              [self, request](caf::error&) {  // the prefill instance is gone: give up the request
                const int64_t id = request.request.id;
                if (self->state.pulling.erase(id) == 0) return;  // cancelled while pulling
                (void)self->state.blocks->Free(id);
                self->send(request.client, GeneratedToken{id, -1, true, kFinishedByFailure});
                TryAdmit(self);
              });
  }
}

// FailPulled ends a request whose KV could not be brought here: its blocks are freed, the
// client is told, the next request may take its place.
void FailPulled(InstanceActor* self, const DecodeRequest& request) {
  const int64_t id = request.request.id;
  (void)self->state.blocks->Free(id);
  self->send(request.client, GeneratedToken{id, -1, true, kFinishedByFailure});
  TryAdmit(self);
}

// StartDecoding hands a request whose KV has arrived to the batcher.
void StartDecoding(InstanceActor* self, const DecodeRequest& request) {
  InstanceState& st = self->state;
  const int64_t id = request.request.id;
  if (absl::Status added =
          st.batcher->AddPrefilled(ToGenerationRequest(request.request), request.first_token);
      !added.ok()) {
    FailPulled(self, request);
    return;
  }
  if (request.client != nullptr) self->monitor(request.client);
  st.clients[id] = request.client;
}

// PollCopies finishes the requests whose KV copies are done, and looks again later while any
// runs.
void PollCopies(InstanceActor* self) {
  InstanceState& st = self->state;
  std::vector<std::pair<int64_t, absl::Status>> finished;
  for (auto& [id, c] : st.copying) {
    absl::StatusOr<bool> done = c.copy->Done();
    if (!done.ok()) {
      finished.emplace_back(id, done.status());
    } else if (*done) {
      finished.emplace_back(id, absl::OkStatus());
    }
  }
  for (auto& [id, status] : finished) {
    auto node = st.copying.extract(id);
    InstanceState::Copying& c = node.mapped();
    if (status.ok()) {
      ++st.kv_transfers;
      st.kv_transfer_bytes += c.bytes;
      st.kv_transfer_seconds += absl::ToDoubleSeconds(absl::Now() - c.started);
    }
    if (c.release) self->send(c.request.prefill, release_atom::value, id);
    if (c.cancelled) {
      (void)st.blocks->Free(id);
    } else if (!status.ok()) {
      FailPulled(self, c.request);
    } else {
      StartDecoding(self, c.request);
    }
  }
  if (!finished.empty()) {
    TryAdmit(self);
    StepIfIdle(self);
  }
  if (!st.copying.empty() && !st.copy_poll_pending) {
    st.copy_poll_pending = true;
    self->delayed_send(self, kCopyPollInterval, copied_atom::value);
  }
}

// AcceptOffer starts moving an offered KV into the request's blocks here.
void AcceptOffer(InstanceActor* self, const DecodeRequest& request, transfer::KvOffer& offer) {
  InstanceState& st = self->state;
  const int64_t id = request.request.id;
  const bool release = offer.holds_blocks();
  auto pull = st.pulling.extract(id);
  if (pull.empty()) {  // cancelled while pulling (its blocks are free already)
    if (transfer::KvTransport* t = transfer::FindTransport(st.transports, offer.kind)) {
      t->Drain(*st.backend, offer);
    }
    if (release) self->send(request.prefill, release_atom::value, id);
    return;
  }
  absl::StatusOr<std::unique_ptr<engine::PendingKvCopy>> copy =
      [&]() -> absl::StatusOr<std::unique_ptr<engine::PendingKvCopy>> {
    absl::StatusOr<std::vector<int32_t>> table = st.blocks->BlockTable(id);
    if (!table.ok()) return table.status();
    transfer::KvTransport* transport = transfer::FindTransport(st.transports, offer.kind);
    if (transport == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "request ", id, ": a KV offer by ",
          transfer::KvTransportName(static_cast<transfer::KvTransportKind>(offer.kind)),
          ", which this instance cannot receive"));
    }
    return transport->Accept(*st.backend, offer, *table);
  }();
  if (!copy.ok()) {  // the KV did not fit this cache: the request is lost
    if (release) self->send(request.prefill, release_atom::value, id);
    FailPulled(self, request);
    return;
  }
  const int64_t bytes =
      offer.kind == static_cast<int32_t>(transfer::KvTransportKind::kBytes)
          ? static_cast<int64_t>(offer.bytes.size())
          : engine::KvBytes(st.backend->config(), st.backend->kv_dtype(),
                            static_cast<int64_t>(offer.blocks.size()),
                            *engine::KvRangeOf({}, st.backend->config()));
  if (st.kinds_seen.insert(offer.kind).second) {  // say once how KV arrives, for the logs
    std::printf("%s: KV arrives by %s (first pull: request %lld, %lld bytes)\n", st.name.c_str(),
                transfer::KvTransportName(static_cast<transfer::KvTransportKind>(offer.kind)),
                static_cast<long long>(id), static_cast<long long>(bytes));
    std::fflush(stdout);
  }
  st.copying.emplace(id, InstanceState::Copying{request, *std::move(copy), release, false, bytes,
                                                pull.mapped().started});
  PollCopies(self);
}

caf::behavior ColocatedInstance(InstanceActor* self,
                                std::shared_ptr<ColocatedInstanceOptions> options) {
  InstanceState& state = self->state;
  state.blocks.emplace(*kv::BlockManager::Create(BlockOptions(*options)));  // checked by Spawn
  state.backend = std::move(options->backend);
  state.metrics = InstanceMetrics::Register(self->system(), options->name);
  state.pull_share = options->decode_pull_share;
  state.batcher.emplace(
      *engine::ContinuousBatcher::Create(state.backend.get(), &*state.blocks, options->batcher));
  state.name = options->name;
  state.transports = options->transports;
  if (state.transports.empty()) state.transports.push_back(transfer::MakeBytesKvTransport());
  state.pull_spec =
      transfer::PullSpecFor(state.transports, *state.backend, options->kv_transport_mask);
  // A client that goes away cancels its requests, so their blocks come back.
  self->set_down_handler([self](const caf::down_msg& down) {
    std::vector<int64_t> orphans;
    for (const auto& [id, client] : self->state.clients) {
      if (client.address() == down.source) orphans.push_back(id);
    }
    for (int64_t id : orphans) CancelRequest(self, id);
  });
  return {
      [self](GenerateRequest& request) -> caf::result<void> {
        InstanceState& s = self->state;
        if (absl::Status added = s.batcher->Add(ToGenerationRequest(request)); !added.ok()) {
          return actors::ToCafError(added);
        }
        auto client = caf::actor_cast<caf::actor>(self->current_sender());
        if (client != nullptr) self->monitor(client);
        s.clients[request.id] = std::move(client);
        StepIfIdle(self);
        return caf::unit;
      },
      [self](DecodeRequest& request) -> caf::result<void> {
        InstanceState& s = self->state;
        if (absl::Status valid = s.batcher->Validate(ToGenerationRequest(request.request));
            !valid.ok()) {
          return actors::ToCafError(valid);
        }
        s.to_admit.push_back(std::move(request));
        TryAdmit(self);
        return caf::unit;
      },
      [self](step_atom) {
        InstanceState& s = self->state;
        s.step_pending = false;
        absl::StatusOr<std::vector<engine::TokenEvent>> events = s.batcher->Step();
        if (!events.ok()) {
          self->quit(actors::ToCafError(events.status()));  // clients see the instance go down
          return;
        }
        UpdateGauges(self);  // before the tokens: a client with its last one sees its blocks freed
        for (const engine::TokenEvent& e : *events) {
          ++s.tokens_generated;
          const uint8_t reason = e.reason == engine::FinishReason::kLength ? kFinishedByLength
                                 : e.reason == engine::FinishReason::kStop ? kFinishedByStopToken
                                                                           : 0;
          auto it = s.clients.find(e.request_id);
          if (it == s.clients.end()) continue;
          if (it->second != nullptr) {
            self->send(it->second, GeneratedToken{e.request_id, e.token, e.finished, reason});
          }
          if (e.finished) s.clients.erase(it);
        }
        TryAdmit(self);  // finished requests freed blocks
        StepIfIdle(self);
        if (!s.copying.empty()) PollCopies(self);
      },
      [self](copied_atom) {
        self->state.copy_poll_pending = false;
        PollCopies(self);
      },
      [self](cancel_atom, int64_t id) -> bool { return CancelRequest(self, id); },
      [self](stats_atom) {
        const InstanceState& s = self->state;
        return InstanceStats{s.batcher->num_waiting() + static_cast<int64_t>(s.to_admit.size()),
                             s.batcher->num_running(),
                             s.blocks->NumFreeGpuBlocks(),
                             s.blocks->NumGpuBlocks(),
                             s.tokens_generated,
                             s.batcher->num_preemptions(),
                             s.kv_transfers,
                             s.kv_transfer_bytes,
                             s.kv_transfer_seconds};
      },
  };
}

}  // namespace

absl::StatusOr<caf::actor> SpawnColocatedInstance(caf::actor_system& system,
                                                  ColocatedInstanceOptions options) {
  if (options.backend == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("instance ", options.name, ": no forward backend"));
  }
  if (!(options.decode_pull_share > 0.0 && options.decode_pull_share <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "instance ", options.name, ": decode_pull_share is ", options.decode_pull_share,
        "; it must be in (0, 1] (DistServe uses 0.05)"));
  }
  if (!options.transports.empty() &&
      transfer::PullSpecFor(options.transports, *options.backend, options.kv_transport_mask)
              .allowed == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "instance ", options.name,
        ": kv_transport allows no way this backend can receive KV (device transports need a "
        "GPU backend); use kv_transport = \"auto\" or \"bytes\""));
  }
  // Everything the actor builds is checked here, so that it cannot fail there.
  absl::StatusOr<kv::BlockManager> blocks = kv::BlockManager::Create(BlockOptions(options));
  if (!blocks.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("instance ", options.name, ": ", blocks.status().message()));
  }
  absl::StatusOr<engine::ContinuousBatcher> batcher =
      engine::ContinuousBatcher::Create(options.backend.get(), &*blocks, options.batcher);
  if (!batcher.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("instance ", options.name, ": ", batcher.status().message()));
  }
  return system.spawn<caf::detached>(
      ColocatedInstance, std::make_shared<ColocatedInstanceOptions>(std::move(options)));
}

}  // namespace troupe::serving::instance
