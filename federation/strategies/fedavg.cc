#include "federation/strategies/fedavg.h"

#include <cstddef>
#include <vector>

namespace troupe::federation::strategies {

absl::StatusOr<Model> FedAvgAggregate(const Model& global, absl::Span<const ClientUpdate> updates) {
  if (absl::Status status = ValidateUpdates(global, updates); !status.ok()) return status;
  double total_samples = 0;
  for (const ClientUpdate& update : updates) {
    total_samples += static_cast<double>(update.num_samples);
  }
  Model result = global;
  for (size_t t = 0; t < global.size(); ++t) {
    std::vector<double> sum(global[t].data.size(), 0.0);
    for (const ClientUpdate& update : updates) {
      const double weight = static_cast<double>(update.num_samples) / total_samples;
      const std::vector<float>& values = update.model[t].data;
      for (size_t r = 0; r < values.size(); ++r) sum[r] += weight * values[r];
    }
    for (size_t r = 0; r < sum.size(); ++r) result[t].data[r] = static_cast<float>(sum[r]);
  }
  return result;
}

}  // namespace troupe::federation::strategies
