// InstrumentedActor: an event-based actor that exports its mailbox depth and message count.
//
// Use it as the base of a stateful actor and name it once, before it handles messages:
//
//   caf::behavior Echo(caf::stateful_actor<EchoState, InstrumentedActor>* self) {
//     self->Instrument("echo", "echo");
//     return {[](const Ping& ping) { return ping; }};
//   }
//
// The metrics land in the MetricsRegistry of the actor's system (see TroupeConfig) as
//   troupe_actor_mailbox_depth{node, actor, role}       messages waiting
//   troupe_actor_messages_total{node, actor, role}      messages handled
// Counting costs one relaxed atomic increment by the sender and one plain store by the actor,
// on separate cache lines, so that senders and the actor do not bounce a line between them.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "actors/metrics.h"
#include "caf/event_based_actor.hpp"

namespace troupe::actors {

class InstrumentedActor : public caf::event_based_actor {
 public:
  explicit InstrumentedActor(caf::actor_config& config);
  ~InstrumentedActor() override;

  // Instrument registers this actor's metrics under `name` and `role`. Call it at most once.
  void Instrument(const std::string& name, const std::string& role);

  // MailboxDepth is the number of messages enqueued but not yet handled, counting the one being
  // handled now.
  int64_t MailboxDepth() const { return counts_->Depth(); }
  // MessagesHandled is the number of messages the actor has handled.
  uint64_t MessagesHandled() const {
    return counts_->handled.load(std::memory_order_relaxed);
  }

  void enqueue(caf::mailbox_element_ptr what, caf::execution_unit* host) override;
  bool cleanup(caf::error&& reason, caf::execution_unit* host) override;

 protected:
  caf::invoke_message_result consume(caf::mailbox_element& element) override;

 private:
  struct Counts {
    alignas(64) std::atomic<uint64_t> enqueued{0};  // Written by senders.
    alignas(64) std::atomic<uint64_t> handled{0};   // Written by the actor only.
    int64_t Depth() const {
      return static_cast<int64_t>(enqueued.load(std::memory_order_relaxed) -
                                  handled.load(std::memory_order_relaxed));
    }
  };
  // Shared with the metric callbacks, which may outlive a racing export by a moment.
  std::shared_ptr<Counts> counts_;
  CallbackGauge depth_metric_;
  CallbackGauge handled_metric_;
};

}  // namespace troupe::actors
