#include "serving/instance/router.h"

#include <chrono>
#include <deque>
#include <cstdint>
#include <limits>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "actors/directory.h"
#include "actors/errors.h"
#include "actors/messages.h"
#include "actors/metrics.h"
#include "actors/runtime.h"
#include "caf/all.hpp"
#include "serving/instance/messages.h"

namespace troupe::serving::instance {
namespace {

using actors::stats_atom;
using Clock = std::chrono::steady_clock;

enum class Phase { kPrefill, kDecode };

struct Member {
  Member(caf::actor a, std::string n = "") : actor(std::move(a)), name(std::move(n)) {}

  caf::actor actor;
  std::string name;      // "node/name" if resolved through the directory, else empty
  int64_t in_flight = 0;  // requests placed here and not finished
  InstanceStats last;     // at the last poll
};

// Track is one request in flight: who asked, where it is, and when each phase began.
struct Track {
  caf::actor client;
  caf::actor prefill;
  caf::actor decode;  // null until the hand-off
  Phase phase = Phase::kPrefill;
  int tokens = 0;
  Clock::time_point arrived, first_token, second_token;
};

// Parked is a request that arrived while the instances were still being looked up.
struct Parked {
  GenerateRequest request;
  caf::actor client;
  caf::response_promise promise;
};

struct RouterState {
  std::vector<Member> prefill;
  std::vector<Member> decode;
  absl::flat_hash_map<int64_t, Track> tracks;
  RouterStats stats;  // in_flight and instance counts are filled in when asked
  double prefill_s = 0, handoff_s = 0, decode_s = 0;
  int64_t with_handoff = 0;  // finished requests that had a second token
  caf::actor directory;
  caf::timespan lookup_timeout{};
  absl::flat_hash_set<caf::actor_addr> dead;  // instances that went down
  bool expects_decode = false;  // decode instances were given (else prefill ones are colocated)
  // The system's metrics registry (null without one), and the phase times of finished requests.
  actors::MetricsRegistry* metrics = nullptr;
  actors::Histogram* prefill_seconds = nullptr;
  actors::Histogram* handoff_seconds = nullptr;
  actors::Histogram* decode_seconds = nullptr;
  int pending_lookups = 0;      // directory lookups under way
  std::deque<Parked> parked;    // requests that came before their instances were found
  std::chrono::milliseconds poll_interval{100};
};

using RouterActor = caf::stateful_actor<RouterState>;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Least picks the member with the fewest requests in flight (ties: the first), or nullptr.
Member* Least(std::vector<Member>& members) {
  Member* best = nullptr;
  for (Member& m : members) {
    if (best == nullptr || m.in_flight < best->in_flight) best = &m;
  }
  return best;
}

Member* Find(std::vector<Member>& members, const caf::actor& actor) {
  for (Member& m : members) {
    if (m.actor == actor) return &m;
  }
  return nullptr;
}

void Release(RouterActor* self, const Track& track) {
  if (Member* m = Find(self->state.prefill, track.prefill); m != nullptr && m->in_flight > 0) {
    --m->in_flight;
  }
  if (track.decode == nullptr) return;
  if (Member* m = Find(self->state.decode, track.decode); m != nullptr && m->in_flight > 0) {
    --m->in_flight;
  }
}

// End finishes request `id`: releases its instances, counts its outcome and its phase times,
// and, unless `token` is null, sends it to the client as the request's last message.
void End(RouterActor* self, int64_t id, std::optional<GeneratedToken> token) {
  RouterState& s = self->state;
  auto it = s.tracks.find(id);
  if (it == s.tracks.end()) return;
  Track track = std::move(it->second);
  s.tracks.erase(it);
  Release(self, track);
  if (token.has_value() && track.client != nullptr) self->send(track.client, *token);
  const uint8_t reason = token.has_value() ? token->reason : kFinishedByCancel;
  if (reason == kFinishedByCancel) {
    ++s.stats.cancelled;
  } else if (reason == kFinishedByFailure) {
    ++s.stats.failed;
  } else {
    ++s.stats.finished;
    const Clock::time_point now = Clock::now();
    const double prefill = Seconds(track.first_token - track.arrived);
    s.prefill_s += prefill;
    if (s.prefill_seconds != nullptr) s.prefill_seconds->Observe(prefill);
    if (track.tokens > 1) {
      ++s.with_handoff;
      const double handoff = Seconds(track.second_token - track.first_token);
      const double decode = Seconds(now - track.second_token);
      s.handoff_s += handoff;
      s.decode_s += decode;
      if (s.handoff_seconds != nullptr) s.handoff_seconds->Observe(handoff);
      if (s.decode_seconds != nullptr) s.decode_seconds->Observe(decode);
    }
  }
}

void CancelOn(RouterActor* self, const caf::actor& instance, int64_t id) {
  if (instance != nullptr) self->send(instance, cancel_atom::value, id);
}

void Unpark(RouterActor* self);

// Resolve looks `name` ("node/name") up through the directory and adds it to its pool when
// found; it gives up (with a log line) after the lookup timeout. A retry continues a lookup
// already counted in pending_lookups.
void Resolve(RouterActor* self, std::string name, bool prefill, bool retry = false) {
  if (!retry) ++self->state.pending_lookups;
  std::vector<std::string> parts = absl::StrSplit(name, absl::MaxSplits('/', 1));
  self->request(self->state.directory, caf::infinite, actors::lookup_atom::value, parts[0],
                parts[1], self->state.lookup_timeout)
      .then(
          [self, name, prefill](const caf::actor& instance) {
            if (self->state.dead.contains(instance.address())) {
              // The directory still lists the instance that went down: ask again later, by
              // when its supervisor has restarted it (or its node has been declared down).
              self->delayed_send(self, std::chrono::milliseconds(200), actors::retry_atom::value,
                                 name, prefill);
              return;
            }
            --self->state.pending_lookups;
            std::vector<Member>& pool = prefill ? self->state.prefill : self->state.decode;
            if (Find(pool, instance) == nullptr) {
              pool.emplace_back(instance, name);
              self->monitor(instance);
            }
            Unpark(self);
          },
          [self, name](const caf::error& e) {
            --self->state.pending_lookups;
            aout(self) << "router: instance " << name << " is not reachable: "
                       << actors::ToStatus(e).message() << "\n";
            Unpark(self);
          });
}

// Drop removes a downed instance and ends every request it held.
void Drop(RouterActor* self, const caf::down_msg& down) {
  RouterState& s = self->state;
  const caf::actor_addr& source = down.source;
  s.dead.insert(source);
  for (std::vector<Member>* pool : {&s.prefill, &s.decode}) {
    for (auto it = pool->begin(); it != pool->end();) {
      if (it->actor.address() != source) {
        ++it;
        continue;
      }
      // An instance stopped on purpose (its node is shutting down) is neither news nor coming
      // back; one that failed is reported and looked up again, as its supervisor may restart it.
      if (down.reason != caf::exit_reason::user_shutdown) {
        aout(self) << "router: " << (pool == &s.prefill ? "prefill" : "decode") << " instance "
                   << (it->name.empty() ? caf::to_string(source) : it->name)
                   << " went down: " << caf::to_string(down.reason) << "\n";
        if (!it->name.empty()) Resolve(self, it->name, pool == &s.prefill);
      }
      it = pool->erase(it);
    }
  }
  std::vector<int64_t> lost;
  for (const auto& [id, track] : s.tracks) {
    const bool on_prefill = track.phase == Phase::kPrefill && track.prefill.address() == source;
    const bool on_decode = track.decode != nullptr && track.decode.address() == source;
    if (on_prefill || on_decode) lost.push_back(id);
  }
  for (int64_t id : lost) {
    const Track& track = s.tracks[id];
    // The other phase's instance drops it too: a prefill instance frees the unpulled KV.
    CancelOn(self, track.prefill.address() == source ? track.decode : track.prefill, id);
    End(self, id, GeneratedToken{id, -1, true, kFinishedByFailure});
  }
}

bool CanPlace(RouterActor* self) {
  const RouterState& s = self->state;
  return !s.prefill.empty() && !(s.expects_decode && s.decode.empty());
}

// Place sends `request` to the prefill instance with the fewest requests in flight, or answers
// `promise` with Unavailable if there is none (or no decode instance to hand it to).
void Place(RouterActor* self, GenerateRequest request, caf::actor client,
           caf::response_promise promise) {
  RouterState& s = self->state;
  const int64_t id = request.id;
  if (!CanPlace(self)) {
    promise.deliver(actors::MakeCafError(
        absl::StatusCode::kUnavailable,
        absl::StrCat("request ", id, ": no ", s.prefill.empty() ? "prefill" : "decode",
                     " instance is up; start one or wait for it to rejoin")));
    return;
  }
  Member* prefill = Least(s.prefill);
  Track track;
  track.client = std::move(client);
  track.prefill = prefill->actor;
  track.arrived = Clock::now();
  if (track.client != nullptr) self->monitor(track.client);
  ++prefill->in_flight;
  s.tracks.emplace(id, std::move(track));
  self->request(prefill->actor, caf::infinite, std::move(request))
      .then([promise]() mutable { promise.deliver(caf::unit); },
            [self, promise, id](caf::error& e) mutable {
              auto it = self->state.tracks.find(id);
              if (it != self->state.tracks.end()) {  // refused: nothing to count
                Release(self, it->second);
                self->state.tracks.erase(it);
              }
              promise.deliver(std::move(e));
            });
}

// Unpark places the requests that waited for instances, once there are instances for them or
// no lookup is left that could bring them (then they are refused).
void Unpark(RouterActor* self) {
  RouterState& s = self->state;
  if (!CanPlace(self) && s.pending_lookups > 0) return;
  std::deque<Parked> parked = std::move(s.parked);
  s.parked.clear();
  for (Parked& p : parked) Place(self, std::move(p.request), std::move(p.client), p.promise);
}

// Export publishes a named instance's last stats as gauges of this process's registry, so the
// server's /metrics shows every instance's queues and cache, wherever the instance runs.
void Export(RouterActor* self, const Member& m) {
  actors::MetricsRegistry* metrics = self->state.metrics;
  if (metrics == nullptr || m.name.empty()) return;
  const auto set = [&](const std::string& name, const std::string& help, double value) {
    if (absl::StatusOr<actors::Gauge*> g = metrics->AddGauge(name, help, {{"instance", m.name}});
        g.ok()) {
      (*g)->Set(value);
    }
  };
  set("troupe_router_instance_waiting_requests", "Requests queued at an instance (polled).",
      static_cast<double>(m.last.waiting));
  set("troupe_router_instance_running_requests",
      "Requests running at an instance (polled; prefill: awaiting a pull).",
      static_cast<double>(m.last.running));
  set("troupe_router_instance_kv_blocks_used", "KV cache blocks in use at an instance (polled).",
      static_cast<double>(m.last.total_kv_blocks - m.last.free_kv_blocks));
  set("troupe_router_instance_kv_transfers",
      "Requests whose KV a decode instance has pulled (polled, cumulative).",
      static_cast<double>(m.last.kv_transfers));
  set("troupe_router_instance_kv_transfer_bytes",
      "Bytes of KV a decode instance has pulled (polled, cumulative).",
      static_cast<double>(m.last.kv_transfer_bytes));
  set("troupe_router_instance_kv_transfer_seconds",
      "Seconds from each pull's request to its KV in place, summed (polled, cumulative).",
      m.last.kv_transfer_seconds);
  set("troupe_router_instance_in_flight_requests",
      "Requests the router has placed on an instance and not seen finish.",
      static_cast<double>(m.in_flight));
}

void Poll(RouterActor* self) {
  for (std::vector<Member>* pool : {&self->state.prefill, &self->state.decode}) {
    for (const Member& m : *pool) {
      caf::actor target = m.actor;
      self->request(target, caf::infinite, stats_atom::value)
          .then(
              [self, target](const InstanceStats& stats) {
                for (std::vector<Member>* p : {&self->state.prefill, &self->state.decode}) {
                  if (Member* member = Find(*p, target); member != nullptr) {
                    member->last = stats;
                    Export(self, *member);
                  }
                }
              },
              [](const caf::error&) {});  // a dead instance is dropped by its down message
    }
  }
  self->delayed_send(self, self->state.poll_interval, poll_atom::value);
}

caf::behavior Router(RouterActor* self, RouterOptions options) {
  RouterState& state = self->state;
  state.directory = options.directory;
  state.expects_decode = !options.decode.empty() || !options.decode_names.empty();
  state.metrics = actors::MetricsOf(self->system());
  if (actors::MetricsRegistry* metrics = state.metrics) {
    const std::vector<double> bounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                        0.25,  0.5,    1,     2.5,  5,     10,   30};
    const auto histogram = [&](const std::string& phase, const std::string& help) {
      return metrics
          ->AddHistogram("troupe_router_phase_seconds",
                         "Phases of finished requests: arrival to first token (prefill), first "
                         "to second token (handoff: decode queueing and the KV transfer), "
                         "second to last token (decode). " + help,
                         bounds, {{"phase", phase}})
          .value_or(nullptr);
    };
    state.prefill_seconds = histogram("prefill", "");
    state.handoff_seconds = histogram("handoff", "");
    state.decode_seconds = histogram("decode", "");
  }
  state.lookup_timeout = actors::ToTimespan(options.lookup_timeout);
  state.poll_interval = std::chrono::milliseconds(
      std::max<int64_t>(1, absl::ToInt64Milliseconds(options.poll_interval)));
  for (const caf::actor& a : options.prefill) {
    state.prefill.emplace_back(a);
    self->monitor(a);
  }
  for (const caf::actor& a : options.decode) {
    state.decode.emplace_back(a);
    self->monitor(a);
  }
  for (const std::string& name : options.prefill_names) Resolve(self, name, true);
  for (const std::string& name : options.decode_names) Resolve(self, name, false);
  self->set_down_handler([self](const caf::down_msg& down) {
    RouterState& s = self->state;
    std::vector<int64_t> orphans;  // requests of a client that went away
    for (const auto& [id, track] : s.tracks) {
      if (track.client.address() == down.source) orphans.push_back(id);
    }
    for (int64_t id : orphans) {
      CancelOn(self, s.tracks[id].prefill, id);
      CancelOn(self, s.tracks[id].decode, id);
      End(self, id, std::nullopt);
    }
    Drop(self, down);
  });
  Poll(self);
  return {
      [self](GenerateRequest& request) -> caf::result<void> {
        RouterState& s = self->state;
        const int64_t id = request.id;
        if (s.tracks.contains(id)) {
          return actors::MakeCafError(absl::StatusCode::kAlreadyExists,
                                      absl::StrCat("request ", id, " is already in flight"));
        }
        // The sender first: making the promise takes the request's sender over.
        auto client = caf::actor_cast<caf::actor>(self->current_sender());
        caf::response_promise promise = self->make_response_promise();
        if (CanPlace(self) || s.pending_lookups == 0) {
          Place(self, std::move(request), std::move(client), promise);
        } else {  // instances are still being looked up: wait for them
          s.parked.push_back({std::move(request), std::move(client), promise});
        }
        return promise;
      },
      [self](GeneratedToken& token) {
        RouterState& s = self->state;
        auto it = s.tracks.find(token.request_id);
        if (it == s.tracks.end()) return;  // cancelled or lost already
        Track& track = it->second;
        if (token.token >= 0) {
          const Clock::time_point now = Clock::now();
          if (++track.tokens == 1) track.first_token = now;
          if (track.tokens == 2) track.second_token = now;
        }
        if (token.finished) {
          End(self, token.request_id, token);
        } else if (track.client != nullptr) {
          self->send(track.client, token);
        }
      },
      [](bool) {},  // the instances' answers to the cancellations the router sends
      [self](DecodeRequest& request) {
        RouterState& s = self->state;
        const int64_t id = request.request.id;
        auto it = s.tracks.find(id);
        if (it == s.tracks.end()) {  // cancelled meanwhile: free the KV
          CancelOn(self, request.prefill, id);
          return;
        }
        Member* decode = Least(s.decode);
        if (decode == nullptr) {
          CancelOn(self, request.prefill, id);
          End(self, id, GeneratedToken{id, -1, true, kFinishedByFailure});
          return;
        }
        it->second.phase = Phase::kDecode;
        it->second.decode = decode->actor;
        ++decode->in_flight;
        request.client = caf::actor_cast<caf::actor>(self);
        self->request(decode->actor, caf::infinite, std::move(request))
            .then([]() {},
                  [self, id](const caf::error&) {  // refused or gone: the request is lost
                    auto found = self->state.tracks.find(id);
                    if (found == self->state.tracks.end()) return;
                    CancelOn(self, found->second.prefill, id);
                    End(self, id, GeneratedToken{id, -1, true, kFinishedByFailure});
                  });
      },
      [self](cancel_atom, int64_t id) -> bool {
        auto it = self->state.tracks.find(id);
        if (it == self->state.tracks.end()) return false;
        CancelOn(self, it->second.prefill, id);
        CancelOn(self, it->second.decode, id);
        End(self, id, GeneratedToken{id, -1, true, kFinishedByCancel});
        return true;
      },
      [self](stats_atom) {
        InstanceStats total;
        for (std::vector<Member>* pool : {&self->state.prefill, &self->state.decode}) {
          for (const Member& m : *pool) {
            total.waiting += m.last.waiting;
            total.running += m.last.running;
            total.free_kv_blocks += m.last.free_kv_blocks;
            total.total_kv_blocks += m.last.total_kv_blocks;
            total.tokens_generated += m.last.tokens_generated;
            total.preemptions += m.last.preemptions;
            total.kv_transfers += m.last.kv_transfers;
            total.kv_transfer_bytes += m.last.kv_transfer_bytes;
            total.kv_transfer_seconds += m.last.kv_transfer_seconds;
          }
        }
        return total;
      },
      [self](router_stats_atom) {
        const RouterState& s = self->state;
        RouterStats stats = s.stats;
        stats.prefill_instances = static_cast<int64_t>(s.prefill.size());
        stats.decode_instances = static_cast<int64_t>(s.decode.size());
        stats.in_flight = static_cast<int64_t>(s.tracks.size());
        if (s.stats.finished > 0) stats.mean_prefill_s = s.prefill_s / s.stats.finished;
        if (s.with_handoff > 0) {
          stats.mean_handoff_s = s.handoff_s / s.with_handoff;
          stats.mean_decode_s = s.decode_s / s.with_handoff;
        }
        return stats;
      },
      [self](poll_atom) { Poll(self); },
      [self](actors::retry_atom, std::string& name, bool prefill) {
        Resolve(self, std::move(name), prefill, /*retry=*/true);
      },
  };
}

}  // namespace

absl::StatusOr<caf::actor> SpawnRouter(caf::actor_system& system, RouterOptions options) {
  if (options.prefill.empty() && options.prefill_names.empty()) {
    return absl::InvalidArgumentError(
        "router: no prefill (or colocated) instance; give at least one");
  }
  for (const std::vector<std::string>* names : {&options.prefill_names, &options.decode_names}) {
    for (const std::string& name : *names) {
      std::vector<std::string> parts = absl::StrSplit(name, '/');
      if (parts.size() != 2 || parts[0].empty() || parts[1].empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "router: instance \"", name, "\" is not of the form \"node/name\" (e.g. \"n1/decode0\")"));
      }
    }
  }
  if ((!options.prefill_names.empty() || !options.decode_names.empty()) &&
      options.directory == nullptr) {
    return absl::InvalidArgumentError("router: instances given by name need a directory");
  }
  return system.spawn(Router, std::move(options));
}

}  // namespace troupe::serving::instance
