#include "serving/instance/messages.h"

namespace troupe::serving::instance {

void RegisterServingMessageTypes(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::troupe_serving>();
}

}  // namespace troupe::serving::instance
