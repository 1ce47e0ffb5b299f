#include "actors/instrumented_actor.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "actors/errors.h"
#include "actors/runtime.h"
#include "caf/message_view.hpp"

namespace troupe::actors {

InstrumentedActor::InstrumentedActor(caf::actor_config& config)
    : caf::event_based_actor(config), counts_(std::make_shared<Counts>()) {}

InstrumentedActor::~InstrumentedActor() = default;

void InstrumentedActor::Instrument(const std::string& name, const std::string& role) {
  // A message the behavior does not handle is answered with an error that says which actor
  // refused what, instead of CAF's bare "unexpected_message".
  set_default_handler([name, role](caf::scheduled_actor* self,
                                   caf::message_view& view) -> caf::result<caf::message> {
    std::string content = caf::to_string(view.copy_content_to_message());
    if (content.size() > 200) content = content.substr(0, 200) + "...";
    return MakeCafError(absl::StatusCode::kInvalidArgument,
                        absl::StrCat("actor \"", name, "\" (role ", role, ") on node \"",
                                     NodeNameOf(self->home_system()),
                                     "\" does not handle the message ", content,
                                     "; check the message type and the actor's role"));
  });
  MetricsRegistry* registry = MetricsOf(home_system());
  if (registry == nullptr) return;  // A plain actor_system: nothing to export to.
  const Labels labels = {{"node", NodeNameOf(home_system())}, {"actor", name}, {"role", role}};
  std::shared_ptr<Counts> counts = counts_;
  absl::StatusOr<CallbackGauge> handled = registry->AddCounterCallback(
      "troupe_actor_messages_total", "Messages handled by the actor.", labels,
      [counts] { return static_cast<double>(counts->handled.load(std::memory_order_relaxed)); });
  if (handled.ok()) handled_metric_ = std::move(*handled);
  absl::StatusOr<CallbackGauge> depth = registry->AddGaugeCallback(
      "troupe_actor_mailbox_depth", "Messages waiting in the actor's mailbox.", labels,
      [counts] { return static_cast<double>(counts->Depth()); });
  if (depth.ok()) depth_metric_ = std::move(*depth);
}

bool InstrumentedActor::cleanup(caf::error&& reason, caf::execution_unit* host) {
  // The metrics leave before anyone monitoring the actor hears that it is gone.
  // (stateful_actor makes on_exit final; cleanup is where down messages are sent.)
  depth_metric_ = CallbackGauge();
  handled_metric_ = CallbackGauge();
  return caf::event_based_actor::cleanup(std::move(reason), host);
}

void InstrumentedActor::enqueue(caf::mailbox_element_ptr what, caf::execution_unit* host) {
  counts_->enqueued.fetch_add(1, std::memory_order_relaxed);
  caf::event_based_actor::enqueue(std::move(what), host);
}

caf::invoke_message_result InstrumentedActor::consume(caf::mailbox_element& element) {
  caf::invoke_message_result result = caf::event_based_actor::consume(element);
  // A skipped message goes back to the mailbox and will be consumed again later.
  if (result != caf::invoke_message_result::skipped) {
    // Only this actor writes `handled`: a load and a store, no locked read-modify-write.
    counts_->handled.store(counts_->handled.load(std::memory_order_relaxed) + 1,
                           std::memory_order_relaxed);
  }
  return result;
}


}  // namespace troupe::actors
