#include "serving/instance/prefill_instance.h"

#include <deque>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "actors/errors.h"
#include "caf/actor_cast.hpp"
#include "caf/event_based_actor.hpp"
#include "caf/stateful_actor.hpp"
#include "gpu/sampling/sampling_params.h"
#include "serving/engine/continuous_batcher.h"
#include "serving/instance/instance_metrics.h"
#include "serving/kv/block_manager.h"

namespace troupe::serving::instance {
namespace {

using actors::stats_atom;

kv::BlockManagerOptions BlockOptions(const PrefillInstanceOptions& options) {
  kv::BlockManagerOptions blocks;
  blocks.num_gpu_blocks =
      options.num_kv_blocks > 0 ? options.num_kv_blocks : options.backend->num_kv_blocks();
  blocks.watermark = 0.0;  // nothing to protect: prefill never appends
  return blocks;
}

struct Waiting {
  GenerateRequest request;
  caf::actor client;
};

struct PrefillState {
  std::unique_ptr<engine::ForwardBackend> backend;
  std::optional<kv::BlockManager> blocks;
  std::optional<engine::ContinuousBatcher> checker;  // validates requests as the decode side will
  caf::actor decode;
  int max_batch_tokens = 0;
  int max_batch_requests = 0;
  std::deque<Waiting> waiting;
  absl::flat_hash_set<int64_t> unpulled;  // requests whose KV waits for the decode instance
  // Requests whose KV a puller is copying out of this cache (a device offer), and the puller:
  // the blocks stay until it releases them or goes down.
  absl::flat_hash_map<int64_t, caf::actor_addr> held;
  transfer::KvTransports transports;
  bool step_pending = false;
  int64_t tokens_generated = 0;
  InstanceMetrics metrics;
};

using PrefillActor = caf::stateful_actor<PrefillState>;

void StepIfIdle(PrefillActor* self) {
  PrefillState& s = self->state;
  s.metrics.Update(static_cast<int64_t>(s.waiting.size()),
                   static_cast<int64_t>(s.unpulled.size() + s.held.size()),
                   s.blocks->NumGpuBlocks() - s.blocks->NumFreeGpuBlocks());
  if (s.step_pending || s.waiting.empty()) return;
  s.step_pending = true;
  self->send(self, step_atom::value);
}

// Step admits waiting prompts FCFS while the batch budget and the cache allow (the first that
// does not fit stops the batch: DistServe's rule), prefills them, and sends the first tokens.
absl::Status Step(PrefillActor* self) {
  PrefillState& s = self->state;
  std::vector<Waiting> batch;
  std::vector<engine::SequenceStep> steps;
  int64_t tokens = 0;
  while (!s.waiting.empty() && static_cast<int>(batch.size()) < s.max_batch_requests) {
    const GenerateRequest& next = s.waiting.front().request;
    const int64_t prompt = static_cast<int64_t>(next.prompt.size());
    if (!batch.empty() && tokens + prompt > s.max_batch_tokens) break;
    absl::StatusOr<kv::Admission> admission = s.blocks->CanAllocate(prompt);
    if (!admission.ok()) return admission.status();
    if (*admission != kv::Admission::kOk) break;  // full of unpulled KV: wait for pulls
    if (absl::Status a = s.blocks->Allocate(next.id, prompt); !a.ok()) return a;
    absl::StatusOr<std::vector<int32_t>> table = s.blocks->BlockTable(next.id);
    if (!table.ok()) return table.status();
    steps.push_back({next.id, next.prompt, 0, *std::move(table)});
    tokens += prompt;
    batch.push_back(std::move(s.waiting.front()));
    s.waiting.pop_front();
  }
  if (batch.empty()) return absl::OkStatus();
  std::vector<gpu::sampling::SamplingParams> params;
  for (const Waiting& w : batch) {
    const GenerateRequest& r = w.request;
    gpu::sampling::SamplingParams p;
    p.temperature = r.temperature;
    p.top_k = r.top_k;
    p.top_p = r.top_p;
    p.seed = r.seed;
    p.offset = 0;  // the first new token: draw 0, as the colocated path
    params.push_back(p);
  }
  // Sampled where the logits are (on the GPU for the CUDA backend).
  absl::StatusOr<std::vector<int32_t>> first = s.backend->ForwardAndSample(steps, params);
  if (!first.ok()) return first.status();
  for (size_t i = 0; i < batch.size(); ++i) {
    const GenerateRequest& r = batch[i].request;
    const int32_t token = (*first)[i];
    ++s.tokens_generated;
    const bool stop = r.stop_token >= 0 && token == r.stop_token;
    const bool done = stop || r.max_new_tokens == 1;
    self->send(
        batch[i].client,
        GeneratedToken{r.id, token, done,
                       done ? (stop ? kFinishedByStopToken : kFinishedByLength) : uint8_t{0}});
    if (done) {
      if (absl::Status f = s.blocks->Free(r.id); !f.ok()) return f;
      continue;
    }
    s.unpulled.insert(r.id);
    // The hand-off goes to the decode instance if one is set, else back to the requester (the
    // router, which places it).
    self->send(s.decode != nullptr ? s.decode : batch[i].client,
               DecodeRequest{r, token, caf::actor_cast<caf::actor>(self), batch[i].client});
  }
  return absl::OkStatus();
}

caf::behavior PrefillInstance(PrefillActor* self, std::shared_ptr<PrefillInstanceOptions> options) {
  PrefillState& state = self->state;
  state.blocks.emplace(*kv::BlockManager::Create(BlockOptions(*options)));
  state.backend = std::move(options->backend);
  state.checker.emplace(
      *engine::ContinuousBatcher::Create(state.backend.get(), &*state.blocks, {}));
  state.decode = options->decode;
  state.metrics = InstanceMetrics::Register(self->system(), options->name);
  state.max_batch_tokens = options->max_batch_tokens;
  state.max_batch_requests = options->max_batch_requests;
  state.transports = options->transports;
  if (state.transports.empty()) state.transports.push_back(transfer::MakeBytesKvTransport());
  // A puller that goes down mid-copy releases nothing: free what it held.
  self->set_down_handler([self](const caf::down_msg& down) {
    PrefillState& s = self->state;
    std::vector<int64_t> orphans;
    for (const auto& [id, puller] : s.held) {
      if (puller == down.source) orphans.push_back(id);
    }
    for (int64_t id : orphans) {
      (void)s.blocks->Free(id);
      s.held.erase(id);
    }
    if (!orphans.empty()) StepIfIdle(self);
  });
  return {
      [self](GenerateRequest& request) -> caf::result<void> {
        PrefillState& s = self->state;
        engine::GenerationRequest g;
        g.id = request.id;
        g.prompt = request.prompt;
        g.max_new_tokens = request.max_new_tokens;
        g.sampling.temperature = request.temperature;
        g.sampling.top_k = request.top_k;
        g.sampling.top_p = request.top_p;
        if (absl::Status valid = s.checker->Validate(g); !valid.ok()) {
          return actors::ToCafError(valid);
        }
        if (s.unpulled.contains(request.id) || s.blocks->Contains(request.id)) {
          return actors::MakeCafError(absl::StatusCode::kAlreadyExists,
                                      absl::StrCat("request ", request.id, " is already here"));
        }
        s.waiting.push_back(
            {std::move(request), caf::actor_cast<caf::actor>(self->current_sender())});
        StepIfIdle(self);
        return caf::unit;
      },
      [self](step_atom) {
        self->state.step_pending = false;
        if (absl::Status s = Step(self); !s.ok()) {
          self->quit(actors::ToCafError(s));
          return;
        }
        StepIfIdle(self);
      },
      [self](pull_atom, int64_t id,
             const transfer::KvPullSpec& spec) -> caf::result<transfer::KvOffer> {
        PrefillState& s = self->state;
        if (!s.unpulled.contains(id)) {
          return actors::MakeCafError(absl::StatusCode::kNotFound,
                                      absl::StrCat("request ", id, " has no KV waiting here"));
        }
        transfer::KvTransport* transport = transfer::ChooseTransport(s.transports, *s.backend, spec);
        if (transport == nullptr) {
          return actors::MakeCafError(
              absl::StatusCode::kFailedPrecondition,
              absl::StrCat("request ", id, ": no KV transport of this prefill instance reaches "
                           "the puller (host ", spec.host, "); allow kv_transport = \"bytes\" "
                           "there"));
        }
        absl::StatusOr<std::vector<int32_t>> table = s.blocks->BlockTable(id);
        if (!table.ok()) return actors::ToCafError(table.status());
        absl::StatusOr<transfer::KvOffer> offer = transport->Offer(*s.backend, *table, id, spec);
        if (!offer.ok()) return actors::ToCafError(offer.status());
        s.unpulled.erase(id);
        if (offer->holds_blocks()) {
          // The puller copies straight out of this cache: keep the blocks until it says done.
          const auto puller = caf::actor_cast<caf::actor>(self->current_sender());
          s.held[id] = puller.address();
          if (puller != nullptr) self->monitor(puller);
        } else {
          (void)s.blocks->Free(id);  // the bytes are a copy: the blocks are free now
          StepIfIdle(self);          // freed blocks may admit waiting prompts
        }
        return *std::move(offer);
      },
      [self](release_atom, int64_t id) {
        PrefillState& s = self->state;
        if (s.held.erase(id) == 0) return;  // unknown, or cancelled meanwhile
        (void)s.blocks->Free(id);
        StepIfIdle(self);
      },
      [self](cancel_atom, int64_t id) -> bool {
        PrefillState& s = self->state;
        for (auto it = s.waiting.begin(); it != s.waiting.end(); ++it) {
          if (it->request.id != id) continue;
          self->send(it->client, GeneratedToken{id, -1, true, kFinishedByCancel});
          s.waiting.erase(it);
          StepIfIdle(self);
          return true;
        }
        if (s.held.erase(id) > 0) {  // the puller cancels its copy too
          (void)s.blocks->Free(id);
          StepIfIdle(self);
          return true;
        }
        if (!s.unpulled.contains(id)) return false;  // unknown, or pulled already
        (void)s.blocks->Free(id);
        s.unpulled.erase(id);
        StepIfIdle(self);
        return true;
      },
      [self](stats_atom) {
        const PrefillState& s = self->state;
        return InstanceStats{static_cast<int64_t>(s.waiting.size()),
                             static_cast<int64_t>(s.unpulled.size() + s.held.size()),
                             s.blocks->NumFreeGpuBlocks(),
                             s.blocks->NumGpuBlocks(),
                             s.tokens_generated,
                             0};
      },
  };
}

}  // namespace

absl::StatusOr<caf::actor> SpawnPrefillInstance(caf::actor_system& system,
                                                PrefillInstanceOptions options) {
  const auto fail = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("instance ", options.name, ": ", what));
  };
  if (options.backend == nullptr) return fail("no forward backend");
  if (options.max_batch_tokens < 1 || options.max_batch_requests < 1) {
    return fail("max_batch_tokens and max_batch_requests must be positive");
  }
  absl::StatusOr<kv::BlockManager> blocks = kv::BlockManager::Create(BlockOptions(options));
  if (!blocks.ok()) return fail(std::string(blocks.status().message()));
  absl::StatusOr<engine::ContinuousBatcher> checker =
      engine::ContinuousBatcher::Create(options.backend.get(), &*blocks, {});
  if (!checker.ok()) return fail(std::string(checker.status().message()));
  return system.spawn<caf::detached>(PrefillInstance,
                                     std::make_shared<PrefillInstanceOptions>(std::move(options)));
}

}  // namespace troupe::serving::instance
