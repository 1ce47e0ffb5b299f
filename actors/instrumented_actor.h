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
// Counting costs two relaxed atomic increments per message.
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

  // MailboxDepth is the number of messages enqueued but not yet handled.
  int64_t MailboxDepth() const { return depth_->load(std::memory_order_relaxed); }

  void enqueue(caf::mailbox_element_ptr what, caf::execution_unit* host) override;
  void on_exit() override;

 protected:
  caf::invoke_message_result consume(caf::mailbox_element& element) override;

 private:
  // Shared with the callback gauge, which may outlive a racing export by a moment.
  std::shared_ptr<std::atomic<int64_t>> depth_;
  Counter* handled_ = nullptr;
  CallbackGauge depth_gauge_;
};

}  // namespace troupe::actors
