// PendingWork: inside an actor, the promise that nobody waits forever on a dead actor.
//
// An actor that hands work to another actor (a worker, possibly in another process) and owes
// someone an answer watches the worker here. When the worker goes down, every piece of work
// still waiting on it fails at once with Unavailable, naming the worker and the reason; late
// replies from a restarted worker are then ignored.
//
//   uint64_t ticket = self->state.pending.Watch(self, worker, [rp](caf::error e) mutable {
//     rp.deliver(std::move(e));
//   });
//   self->request(worker, timeout, job).then(
//       [=](Result r) mutable { if (self->state.pending.Done(ticket)) rp.deliver(r); },
//       [=](caf::error e) mutable { if (self->state.pending.Done(ticket)) rp.deliver(e); });
//   ...
//   self->set_down_handler([=](caf::down_msg& m) { self->state.pending.OnDown(m); });
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "actors/errors.h"
#include "caf/actor.hpp"
#include "caf/actor_addr.hpp"
#include "caf/system_messages.hpp"

namespace troupe::actors {

class PendingWork {
 public:
  using OnDownFn = std::function<void(caf::error)>;

  // Watch records work sent to `worker`; `on_down` runs if the worker dies before Done(ticket).
  // `self` is the watching actor (it monitors the worker once, however much work is pending).
  template <class Self>
  uint64_t Watch(Self* self, const caf::actor& worker, OnDownFn on_down) {
    const uint64_t ticket = next_ticket_++;
    caf::actor_addr addr = worker.address();
    if (monitored_.insert(addr).second) self->monitor(worker);
    waiting_[addr].emplace(ticket, std::move(on_down));
    worker_of_[ticket] = std::move(addr);
    return ticket;
  }

  // Done marks the work as answered. It returns false if the work was already failed by
  // OnDown, in which case the caller must drop the (late) reply.
  bool Done(uint64_t ticket) {
    auto it = worker_of_.find(ticket);
    if (it == worker_of_.end()) return false;
    waiting_[it->second].erase(ticket);
    worker_of_.erase(it);
    return true;
  }

  // OnDown fails every piece of work waiting on the actor that went down. Returns how many.
  size_t OnDown(const caf::down_msg& down, const std::string& worker_name = "") {
    monitored_.erase(down.source);
    auto it = waiting_.find(down.source);
    if (it == waiting_.end()) return 0;
    std::map<uint64_t, OnDownFn> failed = std::move(it->second);
    waiting_.erase(it);
    for (auto& [ticket, on_down] : failed) {
      worker_of_.erase(ticket);
      on_down(MakeCafError(
          absl::StatusCode::kUnavailable,
          absl::StrCat(worker_name.empty() ? "the worker" : worker_name,
                       " went down before finishing this work (", RenderError(down.reason),
                       "); retry it")));
    }
    return failed.size();
  }

  // size is the number of pieces of work still waiting.
  size_t size() const { return worker_of_.size(); }

 private:
  uint64_t next_ticket_ = 1;
  std::set<caf::actor_addr> monitored_;
  std::map<caf::actor_addr, std::map<uint64_t, OnDownFn>> waiting_;
  std::map<uint64_t, caf::actor_addr> worker_of_;
};

}  // namespace troupe::actors
