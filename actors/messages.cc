#include "actors/messages.h"

#include "actors/errors.h"

namespace troupe::actors {

void RegisterMessageTypes(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::troupe>();
  cfg.add_error_category(kErrorCategory, [](uint8_t code, caf::atom_value category,
                                                  const caf::message& context) {
    return RenderError(caf::error(code, category, context));
  });
}

}  // namespace troupe::actors
